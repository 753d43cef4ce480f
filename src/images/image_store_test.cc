// The image store: cache hits and misses, concurrent unpacks, eviction, crash leftovers, the
// image forms, and the local Docker engine (skipped with the reason when no dockerd answers).
#include "images/image_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/fs_util.h"
#include "images/engine.h"
#include "images/test_util.h"

namespace agentbox::images {
namespace {

using namespace testing;
namespace fs = std::filesystem;

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

class ImageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-image-store-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)RemoveTree(dir_); }
  std::shared_ptr<ImageStore> OpenStore(uint64_t max_bytes = 0) {
    ImageStoreOptions o;
    o.dir = dir_ + "/cache";
    o.max_bytes = max_bytes;
    auto s = ImageStore::Open(o);
    EXPECT_TRUE(s) << s.error().message;
    return s ? *s : nullptr;
  }
  // An archive of `n` layers of `bytes` each; `seed` makes the layers distinct per image.
  std::string MakeArchive(const std::string& name, int n, size_t bytes, const std::string& seed) {
    std::vector<std::string> layers;
    for (int i = 0; i < n; ++i) {
      layers.push_back(Tar({File(seed + std::to_string(i), std::string(bytes, 'a' + i))}));
    }
    const std::string path = dir_ + "/" + name;
    WriteFile(path, DockerSaveArchive(layers, {{"Env", {"SEED=" + seed}}}));
    return path;
  }
  std::string dir_;
};

TEST_F(ImageStoreTest, ClassifiesImageForms) {
  const std::string archive = MakeArchive("img.tar", 1, 10, "c");
  const std::string rootfs_tar = dir_ + "/rootfs.tar";
  WriteFile(rootfs_tar, Tar({Dir("usr"), File("usr/x", "x")}));
  fs::create_directories(dir_ + "/rootdir/usr");
  fs::create_directories(dir_ + "/layout");
  WriteFile(dir_ + "/layout/oci-layout", "{}");
  WriteFile(dir_ + "/layout/index.json", "{}");
  EXPECT_EQ(*ClassifyImage(""), ImageForm::kHost);
  EXPECT_EQ(*ClassifyImage(archive), ImageForm::kArchive);
  EXPECT_EQ(*ClassifyImage(rootfs_tar), ImageForm::kRootfsTarball);
  EXPECT_EQ(*ClassifyImage(dir_ + "/rootdir"), ImageForm::kRootfsDir);
  EXPECT_EQ(*ClassifyImage(dir_ + "/layout"), ImageForm::kLayout);
  EXPECT_EQ(*ClassifyImage("agentbox/base:latest"), ImageForm::kEngine);
  EXPECT_EQ(ClassifyImage(dir_ + "/missing").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(ClassifyImage("relative/../x").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ClassifyImage("bad image name").error().code, ErrorCode::kInvalidArgument);
}

TEST_F(ImageStoreTest, UnpacksOnceThenHits) {
  auto store = OpenStore();
  const std::string archive = MakeArchive("img.tar", 3, 1000, "u");
  auto first = store->Resolve(archive);
  ASSERT_TRUE(first) << first.error().message;
  ASSERT_EQ(first->layer_dirs.size(), 3u);
  EXPECT_TRUE(fs::exists(first->layer_dirs[0] + "/u0"));
  EXPECT_EQ(first->config.env, std::vector<std::string>{"SEED=u"});
  EXPECT_EQ(store->Stats().misses, 3u);
  auto second = store->Resolve(archive);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->layer_dirs, first->layer_dirs);
  EXPECT_EQ(store->Stats().misses, 3u);
  EXPECT_EQ(store->Stats().hits, 3u);
  // An unchanged archive is not read again: replaced by garbage of another size, it is.
  WriteFile(archive + ".other", "not an archive");
  auto third = store->Resolve(archive);
  ASSERT_TRUE(third);
  EXPECT_EQ(store->Stats().hits, 6u);
  fs::rename(archive + ".other", archive);
  auto changed = store->Resolve(archive);
  ASSERT_FALSE(changed);
  EXPECT_EQ(changed.error().code, ErrorCode::kInvalidArgument);
  WriteFile(archive, DockerSaveArchive({Tar({File("u0", std::string(1000, 'a'))}),
                                        Tar({File("u1", std::string(1000, 'b'))}),
                                        Tar({File("u2", std::string(1000, 'c'))})},
                                       {{"Env", {"SEED=u"}}}));
  ASSERT_TRUE(store->Resolve(archive));
  // A new store over the same directory finds the layers.
  auto again = OpenStore();
  EXPECT_EQ(again->Stats().layers, 3u);
  ASSERT_TRUE(again->Resolve(archive));
  EXPECT_EQ(again->Stats().misses, 0u);
}

TEST_F(ImageStoreTest, ConcurrentResolvesUnpackOnce) {
  auto store = OpenStore();
  const std::string archive = MakeArchive("img.tar", 2, 1 << 20, "c");
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] { ok += store->Resolve(archive).has_value() ? 1 : 0; });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(ok.load(), 6);
  EXPECT_EQ(store->Stats().misses, 2u);
  EXPECT_EQ(store->Stats().hits, 10u);
  EXPECT_TRUE(fs::is_empty(dir_ + "/cache/tmp"));
}

TEST_F(ImageStoreTest, TwoStoresOverOneDirectoryShareLayers) {
  auto a = OpenStore();
  auto b = OpenStore();
  const std::string archive = MakeArchive("img.tar", 2, 100, "s");
  ASSERT_TRUE(a->Resolve(archive));
  auto r = b->Resolve(archive);  // b's memory has no layers: it finds them on disk
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(b->Stats().misses, 0u);
  EXPECT_EQ(b->Stats().hits, 2u);
}

TEST_F(ImageStoreTest, EvictsLeastRecentlyUsedUnleasedLayers) {
  // Each layer is ~64 KiB on disk; the bound holds about three.
  auto store = OpenStore(200 << 10);
  const std::string a = MakeArchive("a.tar", 1, 60 << 10, "a");
  const std::string b = MakeArchive("b.tar", 1, 60 << 10, "b");
  const std::string c = MakeArchive("c.tar", 1, 60 << 10, "c");
  const std::string d = MakeArchive("d.tar", 1, 60 << 10, "d");
  auto ra = store->Resolve(a, "jail.sandbox-a");  // leased: stays
  ASSERT_TRUE(ra);
  auto rb = store->Resolve(b);
  ASSERT_TRUE(rb);
  ASSERT_TRUE(store->Resolve(c));
  EXPECT_EQ(store->Stats().evictions, 0u);
  ASSERT_TRUE(store->Resolve(d));  // over the bound: b (least recent, unleased) goes
  EXPECT_EQ(store->Stats().evictions, 1u);
  EXPECT_FALSE(fs::exists(rb->layer_dirs[0]));
  EXPECT_TRUE(fs::exists(ra->layer_dirs[0]));
  EXPECT_LE(store->Stats().bytes, 200u << 10);
  EXPECT_EQ(store->Stats().leased_layers, 1u);
  // b again: unpacked again (a miss), and the lease survives a new store.
  ASSERT_TRUE(store->Resolve(b));
  auto reopened = OpenStore(1);
  EXPECT_EQ(reopened->Leases(), std::vector<std::string>{"jail.sandbox-a"});
  reopened->EvictTo(0);
  EXPECT_TRUE(fs::exists(ra->layer_dirs[0]));  // leased layers are never evicted
  EXPECT_EQ(reopened->Stats().layers, 1u);
  reopened->Release("jail.sandbox-a");
  reopened->EvictTo(0);
  EXPECT_FALSE(fs::exists(ra->layer_dirs[0]));
  EXPECT_EQ(reopened->Stats().bytes, 0u);
}

TEST_F(ImageStoreTest, HalfUnpackedLayersAreNeverUsed) {
  auto store = OpenStore();
  const std::string archive = MakeArchive("img.tar", 1, 100, "h");
  auto r = store->Resolve(archive);
  ASSERT_TRUE(r);
  store.reset();
  // What a crash leaves: a staging directory, and (impossible by the rename, but still) a layer
  // directory without its meta.json.
  const std::string cache = dir_ + "/cache";
  fs::create_directories(cache + "/tmp/abc.123456/fs/usr");
  const std::string hex = fs::path(r->layer_dirs[0]).parent_path().filename();
  fs::remove(cache + "/layers/" + hex + "/meta.json");
  auto reopened = OpenStore();
  EXPECT_TRUE(fs::is_empty(cache + "/tmp"));
  EXPECT_EQ(reopened->Stats().layers, 0u);
  EXPECT_FALSE(fs::exists(cache + "/layers/" + hex));
  auto again = reopened->Resolve(archive);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(reopened->Stats().misses, 1u);
}

TEST_F(ImageStoreTest, CorruptLayerLeavesNothing) {
  auto store = OpenStore();
  // A layer whose bytes do not match the diff_id the configuration gives.
  std::string archive = DockerSaveArchive({Tar({File("f", "original")})});
  const size_t at = archive.find("original");
  ASSERT_NE(at, std::string::npos);
  archive.replace(at, 8, "tampered");
  const std::string path = dir_ + "/bad.tar";
  WriteFile(path, archive);
  auto r = store->Resolve(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("corrupt image"), std::string::npos) << r.error().message;
  EXPECT_EQ(store->Stats().layers, 0u);
  EXPECT_TRUE(fs::is_empty(dir_ + "/cache/layers"));
  EXPECT_TRUE(fs::is_empty(dir_ + "/cache/tmp"));
}

TEST_F(ImageStoreTest, CompressedArchive) {
  const std::string plain = MakeArchive("img.tar", 1, 100, "z");
  ASSERT_EQ(std::system(("gzip -k " + plain).c_str()), 0);
  auto store = OpenStore();
  EXPECT_EQ(*ClassifyImage(plain + ".gz"), ImageForm::kArchive);
  auto r = store->Resolve(plain + ".gz");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(fs::exists(r->layer_dirs[0] + "/z0"));
}

bool EngineAnswers() {
  auto id = EngineImageId("/var/run/docker.sock", "agentbox/base:latest");
  return id.has_value() || id.error().code != ErrorCode::kUnavailable;
}

TEST_F(ImageStoreTest, EngineImageIsExportedOnce) {
  if (!EngineAnswers()) {
    GTEST_SKIP() << "no Docker engine answers at /var/run/docker.sock "
                    "(scripts/start-dockerd.sh starts one)";
  }
  auto store = OpenStore();
  auto r = store->Resolve("agentbox/base:latest", "jail.engine-test");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->layer_dirs.empty());
  EXPECT_TRUE(fs::exists(r->layer_dirs.back() + "/../meta.json"));
  EXPECT_EQ(store->Stats().engine_exports, 1u);
  auto again = store->Resolve("agentbox/base:latest");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->id, r->id);
  EXPECT_EQ(store->Stats().engine_exports, 1u);  // the layers were there: no second export
  auto missing = store->Resolve("agentbox/no-such-image:never");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("agentbox/no-such-image:never"), std::string::npos);
}

TEST_F(ImageStoreTest, UnknownPathsAndFormsAreClearErrors) {
  auto store = OpenStore();
  auto missing = store->Resolve(dir_ + "/nope.tar");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  fs::create_directories(dir_ + "/plain");
  auto plain = store->Resolve(dir_ + "/plain");
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(ImageStoreTest, MetricsAreExported) {
  auto store = OpenStore(1 << 30);
  ASSERT_TRUE(store->Resolve(MakeArchive("m.tar", 2, 10, "m")));
  Metrics m;
  ExportImageMetrics(store->Stats(), m);
  EXPECT_EQ(m.Value("agentbox_image_cache_misses_total", {{"backend", "jail"}}), 2);
  EXPECT_EQ(m.Value("agentbox_image_cache_layers", {{"backend", "jail"}}), 2);
  EXPECT_EQ(m.Value("agentbox_image_cache_limit_bytes", {{"backend", "jail"}}), 1 << 30);
  EXPECT_NE(m.Render().find("agentbox_image_cache_bytes"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::images
