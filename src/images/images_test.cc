// Units of the image library: layer unpacking (whiteouts, opaque directories, digests, path
// escapes, corrupt streams) and image sources (docker save archives, OCI layouts).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/fs_util.h"
#include "common/unique_fd.h"
#include "images/layer_unpack.h"
#include "images/manifest.h"
#include "images/source.h"
#include "images/test_util.h"

namespace agentbox::images {
namespace {

using namespace testing;
namespace fs = std::filesystem;

archive::Source StringSource(std::string data) {
  auto s = std::make_shared<std::string>(std::move(data));
  auto pos = std::make_shared<size_t>(0);
  return [s, pos](char* buf, size_t n) -> Result<size_t> {
    const size_t k = std::min(n, s->size() - *pos);
    std::memcpy(buf, s->data() + *pos, k);
    *pos += k;
    return k;
  };
}

class ImagesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-images-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& m : mounts_) {
      ::umount2(m.c_str(), MNT_DETACH);
    }
    (void)RemoveTree(dir_);
  }
  // Unpacks `tar` into a new directory <dir_>/<name>.
  Result<LayerUnpackResult> Unpack(const std::string& name, const std::string& tar,
                                   LayerUnpackOptions o = {}) {
    const std::string d = dir_ + "/" + name;
    fs::create_directories(d);
    UniqueFd fd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return UnpackLayer(StringSource(tar), fd.Get(), o);
  }
  // A read-only overlay of the named layers (bottom first), as the jail stacks them below its
  // upper directory; empty when this process cannot mount (not root).
  std::string Stack(const std::vector<std::string>& layers) {
    if (::geteuid() != 0) {
      return "";
    }
    std::string lower;
    for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
      lower += (lower.empty() ? "" : ":") + dir_ + "/" + *it;
    }
    const std::string m = dir_ + "/merged" + std::to_string(mounts_.size());
    fs::create_directories(m);
    if (::mount("overlay", m.c_str(), "overlay", MS_RDONLY, ("lowerdir=" + lower).c_str()) != 0) {
      ADD_FAILURE() << "mount overlay: " << std::strerror(errno);
      return "";
    }
    mounts_.push_back(m);
    return m;
  }
  std::string dir_;
  std::vector<std::string> mounts_;
};

bool IsWhiteout(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

TEST_F(ImagesTest, WhiteoutsHideLowerEntries) {
  ASSERT_TRUE(Unpack("l1", Tar({Dir("a"), File("a/x", "x"), File("a/y", "y"), Dir("b"),
                                File("b/z", "z"), File("top", "t")})));
  ASSERT_TRUE(Unpack("l2", Tar({File("a/.wh.x", ""), File(".wh.b", ""), File("a/new", "n")})));
  EXPECT_TRUE(IsWhiteout(dir_ + "/l2/a/x"));
  EXPECT_TRUE(IsWhiteout(dir_ + "/l2/b"));
  EXPECT_FALSE(fs::exists(dir_ + "/l2/a/.wh.x"));
  const std::string m = Stack({"l1", "l2"});
  if (m.empty()) {
    GTEST_SKIP() << "not root: the on-disk whiteouts are checked, the stacked view is not";
  }
  EXPECT_FALSE(fs::exists(m + "/a/x"));
  EXPECT_TRUE(fs::exists(m + "/a/y"));
  EXPECT_TRUE(fs::exists(m + "/a/new"));
  EXPECT_FALSE(fs::exists(m + "/b"));
  EXPECT_TRUE(fs::exists(m + "/top"));
}

TEST_F(ImagesTest, OpaqueDirectoryHidesEverythingBelow) {
  ASSERT_TRUE(Unpack("l1", Tar({Dir("d"), File("d/old1", "1"), File("d/old2", "2")})));
  ASSERT_TRUE(Unpack("l2", Tar({Dir("d"), File("d/.wh..wh..opq", ""), File("d/new", "n")})));
  char v[8] = {};
  EXPECT_EQ(::getxattr((dir_ + "/l2/d").c_str(), "user.overlay.opaque", v, sizeof(v)), 1);
  EXPECT_EQ(v[0], 'y');
  EXPECT_FALSE(fs::exists(dir_ + "/l2/d/.wh..wh..opq"));
  const std::string m = Stack({"l1", "l2"});
  if (m.empty()) {
    GTEST_SKIP() << "not root: the xattr is checked, the stacked view is not";
  }
  EXPECT_FALSE(fs::exists(m + "/d/old1"));
  EXPECT_FALSE(fs::exists(m + "/d/old2"));
  EXPECT_TRUE(fs::exists(m + "/d/new"));
}

TEST_F(ImagesTest, WhiteoutThenRecreateInOneLayer) {
  // A layer may remove a directory of the layers below and create a file of the same name.
  ASSERT_TRUE(Unpack("l1", Tar({Dir("p"), File("p/q", "q")})));
  ASSERT_TRUE(Unpack("l2", Tar({File(".wh.p", ""), File("p", "now a file")})));
  struct stat st {};
  ASSERT_EQ(::lstat((dir_ + "/l2/p").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

TEST_F(ImagesTest, DigestsAreVerified) {
  const std::string tar = Tar({File("f", "content")});
  LayerUnpackOptions o;
  o.want_diff_id = Sha256Digest(tar);
  auto ok = Unpack("good", tar, o);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->diff_id, o.want_diff_id);
  o.want_diff_id = Sha256Digest("something else");
  auto bad = Unpack("bad", tar, o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message.find("digest"), std::string::npos) << bad.error().message;
  LayerUnpackOptions b;
  b.want_blob_digest = Sha256Digest("not the blob");
  auto bad_blob = Unpack("bad_blob", tar, b);
  ASSERT_FALSE(bad_blob);
  EXPECT_NE(bad_blob.error().message.find("digest"), std::string::npos);
}

TEST_F(ImagesTest, PathEscapesAreRefused) {
  const std::vector<std::vector<TarEntry>> bad = {
      {File("../evil", "x")},
      {File("/abs", "x")},
      {Dir("a"), File("a/../../evil", "x")},
      {Symlink("l", "/etc"), File("l/passwd", "x")},
      {Symlink("l", "../../.."), File("l/evil", "x")},
      {File("f", "x"), File("f/under", "x")},
      {HardLink("h", "../outside")},
      {HardLink("h", "/etc/passwd")},
      {File(".wh...", "")},
  };
  int i = 0;
  for (const auto& entries : bad) {
    auto r = Unpack("esc" + std::to_string(i++), Tar(entries));
    ASSERT_FALSE(r) << entries.back().name;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << r.error().message;
  }
  EXPECT_FALSE(fs::exists(dir_ + "/evil"));
  EXPECT_FALSE(fs::exists("/tmp/evil"));
  // A symlink to an absolute path is an ordinary entry of a root filesystem: stored as it is.
  auto ok = Unpack("abs_link", Tar({Symlink("bin", "/usr/bin")}));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(fs::read_symlink(dir_ + "/abs_link/bin"), "/usr/bin");
}

TEST_F(ImagesTest, CorruptAndTruncatedStreamsAreRefused) {
  const std::string tar = Tar({File("f", std::string(5000, 'a')), File("g", "g")});
  for (size_t cut : {size_t{100}, size_t{700}, tar.size() - 1024 - 512}) {
    auto r = Unpack("cut" + std::to_string(cut), tar.substr(0, cut));
    ASSERT_FALSE(r) << cut;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << r.error().message;
  }
  std::string gz = "\x1f\x8b\x08\x00garbage-that-is-not-deflate";
  auto r = Unpack("gz", gz);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  auto noise = Unpack("noise", std::string(1024, 'z'));
  ASSERT_FALSE(noise);
  EXPECT_EQ(noise.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(ImagesTest, OwnershipAndModesAreKeptAsRoot) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "keeping owners needs root";
  }
  TarEntry f = File("suid", "x", 04755);
  f.uid = 1000;
  f.gid = 1001;
  LayerUnpackOptions o;
  o.keep_owner = true;
  ASSERT_TRUE(Unpack("own", Tar({f}), o));
  struct stat st {};
  ASSERT_EQ(::lstat((dir_ + "/own/suid").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  EXPECT_EQ(st.st_mode & 07777, 04755u);
}

TEST_F(ImagesTest, HardLinksAndDevicesInALayer) {
  auto r = Unpack("hl", Tar({File("a", "data"), HardLink("b", "a"), {"dev/null", '3', "", "", 0666, 0, 0}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->skipped_devices, 1u);
  struct stat a {}, b {};
  ASSERT_EQ(::stat((dir_ + "/hl/a").c_str(), &a), 0);
  ASSERT_EQ(::stat((dir_ + "/hl/b").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

TEST_F(ImagesTest, DockerSaveArchiveLoads) {
  const std::string l1 = Tar({Dir("etc"), File("etc/hostname", "x")});
  const std::string l2 = Tar({File("etc/.wh.hostname", "")});
  const std::string path = dir_ + "/image.tar";
  WriteFile(path, DockerSaveArchive({l1, l2}, {{"Env", {"A=1", "PATH=/x"}}, {"WorkingDir", "/w"},
                                               {"User", "1000:1000"}}));
  auto src = TarFileSource::OpenFile(path);
  ASSERT_TRUE(src) << src.error().message;
  auto img = LoadImage(**src, path);
  ASSERT_TRUE(img) << img.error().message;
  ASSERT_EQ(img->layers.size(), 2u);
  EXPECT_EQ(img->layers[0].diff_id, Sha256Digest(l1));
  EXPECT_EQ(img->config.config.env, (std::vector<std::string>{"A=1", "PATH=/x"}));
  EXPECT_EQ(img->config.config.working_dir, "/w");
  EXPECT_EQ(img->config.config.user, "1000:1000");
  EXPECT_EQ(img->id, Sha256Digest(img->config_json));
  auto blob = (*src)->ReadSmall(img->layers[1].blob, 1 << 20);
  ASSERT_TRUE(blob);
  EXPECT_EQ(*blob, l2);
}

TEST_F(ImagesTest, CorruptArchivesAreClearErrors) {
  const std::string good = DockerSaveArchive({Tar({File("f", "x")})});
  // Truncated anywhere: the scan or the load fails with kInvalidArgument.
  for (size_t cut : {size_t{10}, size_t{600}, good.size() / 2, good.size() - 600}) {
    const std::string path = dir_ + "/cut" + std::to_string(cut) + ".tar";
    WriteFile(path, good.substr(0, cut));
    auto src = TarFileSource::OpenFile(path);
    if (src) {
      auto img = LoadImage(**src, path);
      ASSERT_FALSE(img) << cut;
      EXPECT_EQ(img.error().code, ErrorCode::kInvalidArgument) << img.error().message;
    } else {
      EXPECT_EQ(src.error().code, ErrorCode::kInvalidArgument) << src.error().message;
    }
  }
  // A configuration that is not what the manifest says.
  const std::string forged = dir_ + "/forged.tar";
  WriteFile(forged, Tar({File(std::string(64, 'a') + ".json", R"({"rootfs":{"diff_ids":[]}})"),
                         File("manifest.json", R"([{"Config":")" + std::string(64, 'a') +
                                                   R"(.json","Layers":[]}])")}));
  auto src = TarFileSource::OpenFile(forged);
  ASSERT_TRUE(src);
  auto img = LoadImage(**src, forged);
  ASSERT_FALSE(img);
  EXPECT_NE(img.error().message.find("digest"), std::string::npos) << img.error().message;
  // Blob paths outside the archive.
  auto escape = ParseDockerSaveManifest(R"([{"Config":"../x.json","Layers":[]}])");
  ASSERT_FALSE(escape);
  EXPECT_EQ(escape.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(ImagesTest, OciLayoutLoads) {
  const std::string layer = Tar({File("hello", "world")});
  const std::string layout = dir_ + "/layout";
  fs::create_directories(layout + "/blobs/sha256");
  auto put = [&](const std::string& data) {
    const std::string d = Sha256Digest(data);
    WriteFile(layout + "/blobs/sha256/" + d.substr(7), data);
    return d;
  };
  const std::string layer_d = put(layer);
  Json cfg = {{"os", "linux"},
              {"architecture", "amd64"},
              {"config", {{"Env", {"X=y"}}}},
              {"rootfs", {{"type", "layers"}, {"diff_ids", {layer_d}}}}};
  const std::string cfg_text = cfg.dump();
  const std::string cfg_d = put(cfg_text);
  Json manifest = {
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
      {"config",
       {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", cfg_d}, {"size", 1}}},
      {"layers",
       {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"}, {"digest", layer_d}, {"size", 1}}}}};
  const std::string man_d = put(manifest.dump());
  Json index = {{"schemaVersion", 2},
                {"manifests",
                 {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"digest", man_d},
                   {"size", 1},
                   {"annotations", {{"org.opencontainers.image.ref.name", "v1"}}}}}}};
  WriteFile(layout + "/index.json", index.dump());
  WriteFile(layout + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  auto src = DirSource::OpenDir(layout);
  ASSERT_TRUE(src);
  auto img = LoadImage(**src, layout);
  ASSERT_TRUE(img) << img.error().message;
  EXPECT_EQ(img->id, cfg_d);
  ASSERT_EQ(img->layers.size(), 1u);
  EXPECT_EQ(img->layers[0].digest, layer_d);
  EXPECT_EQ(img->config.config.env, std::vector<std::string>{"X=y"});
  // A layout whose manifest does not match its digest.
  WriteFile(layout + "/blobs/sha256/" + man_d.substr(7), manifest.dump() + " ");
  auto bad = LoadImage(**src, layout);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST(ImageManifest, MalformedDocumentsAreRefused) {
  EXPECT_FALSE(ParseDockerSaveManifest("{"));
  EXPECT_FALSE(ParseDockerSaveManifest("[]"));
  EXPECT_FALSE(ParseDockerSaveManifest(R"([{"Config":5}])"));
  EXPECT_FALSE(ParseOciIndex(R"({"manifests":[{"digest":"sha256:zz"}]})"));
  EXPECT_FALSE(ParseOciManifest(R"({"config":{},"layers":[]})"));
  EXPECT_FALSE(ParseImageConfig(R"({"config":{"Env":["=x"]},"rootfs":{"diff_ids":[]}})"));
  EXPECT_FALSE(ParseImageConfig(R"({"config":{"WorkingDir":"rel"},"rootfs":{"diff_ids":[]}})"));
  EXPECT_FALSE(ParseImageConfig(R"({"rootfs":{"diff_ids":["md5:1"]}})"));
  auto ok = ParseImageConfig(R"({"os":"linux","rootfs":{"diff_ids":[]}})");
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->config.env.empty());
}

}  // namespace
}  // namespace agentbox::images
