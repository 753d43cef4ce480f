// OCI images on the jail (docs/images.md): a sandbox created from an image archive with several
// layers (whiteouts, an opaque directory, Env, WorkingDir, ownership), from the local Docker
// engine's agentbox/base:latest and from a `docker save` archive of it, the errors, and the
// writable overlay root over the cache's shared layers.
#include <gtest/gtest.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "backends/jail/jail_image.h"
#include "backends/jail/jail_test_fixture.h"
#include "images/engine.h"
#include "images/test_util.h"

namespace agentbox::jail {
namespace {

using namespace agentbox::jail::testing;
namespace it = agentbox::images::testing;
namespace fs = std::filesystem;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Three layers: busybox and a few files; a layer that removes, hides and adds; a layer that
// makes a directory opaque.
std::string MakeLayeredArchive(const std::string& path) {
  std::vector<it::TarEntry> base = {it::Dir("bin"), it::Dir("etc"), it::Dir("opt"),
                                    it::Dir("opt/app"), it::Dir("data")};
  base.push_back(it::File("bin/busybox", Slurp("/usr/bin/busybox"), 0755));
  for (const char* tool : {"sh", "ls", "cat", "echo", "touch", "id", "stat", "pwd", "env"}) {
    base.push_back(it::Symlink(std::string("bin/") + tool, "busybox"));
  }
  base.push_back(it::File("etc/image-release", "layered-test\n"));
  base.push_back(it::File("etc/removed", "should be gone\n"));
  base.push_back(it::File("data/old", "old\n"));
  it::TarEntry owned = it::File("etc/owned-by-1000", "x\n");
  owned.uid = 1000;
  owned.gid = 1000;
  base.push_back(owned);
  const std::string l1 = it::Tar(base);
  const std::string l2 =
      it::Tar({it::File("etc/.wh.removed", ""), it::File("etc/added", "added\n")});
  const std::string l3 = it::Tar({it::Dir("data"), it::File("data/.wh..wh..opq", ""),
                                  it::File("data/new", "new\n")});
  std::ofstream(path, std::ios::binary) << it::DockerSaveArchive(
      {l1, l2, l3}, {{"Env", {"IMAGE_VAR=from-image", "PATH=/bin"}}, {"WorkingDir", "/opt/app"}});
  return path;
}

class JailImageTest : public JailFixture {
 protected:
  void SetUp() override {
    JailFixture::SetUp();
    if (IsSkipped()) {
      return;
    }
    expect_clean_destroy_ = true;
  }
};

TEST_F(JailImageTest, LayeredArchiveRunsOnAnOverlayOfItsLayers) {
  if (::access("/usr/bin/busybox", X_OK) != 0) {
    GTEST_SKIP() << "SKIPPED: needs /usr/bin/busybox (static)";
  }
  SandboxSpec spec;
  spec.image = MakeLayeredArchive(tmp_.path() + "/layered.tar");
  spec.env["OWN"] = "mine";
  const SandboxInfo info = CreateOrDie("layered", spec);
  EXPECT_EQ(Exec(info, "cat /etc/image-release").output, "layered-test\n");
  EXPECT_EQ(Exec(info, "cat /etc/added").output, "added\n");
  EXPECT_NE(Exec(info, "cat /etc/removed").returncode, 0);      // whiteout
  EXPECT_EQ(Exec(info, "ls /data").output, "new\n");            // opaque directory
  EXPECT_EQ(Exec(info, "echo $IMAGE_VAR $OWN").output, "from-image mine\n");  // Env
  EXPECT_EQ(Exec(info, "pwd").output, "/opt/app\n");            // WorkingDir
  EXPECT_NE(Exec(info, "ls /usr").returncode, 0);               // nothing of the host's
  EXPECT_EQ(Exec(info, "touch /etc/x && echo ok").output, "ok\n");  // a writable root
  EXPECT_EQ(Exec(info, "echo hi > /workspace/f && cat /workspace/f").output, "hi\n");
  // The image's owners, as the image has them (mapped into the sandbox's range as root).
  EXPECT_EQ(Exec(info, "stat -c %u /etc/image-release").output, "0\n");
  if (::geteuid() == 0) {
    EXPECT_EQ(Exec(info, "stat -c %u:%g /etc/owned-by-1000").output, "1000:1000\n");
  }
  // The layers are leased while the sandbox lives and released when it goes.
  auto* store = backend_->image_store();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Leases(), std::vector<std::string>{"jail.layered"});
  EXPECT_EQ(store->Stats().layers, 3u);
  // A second sandbox of the same image: every layer is a cache hit.
  const uint64_t misses = store->Stats().misses;
  const SandboxInfo second = CreateOrDie("layered2", spec);
  EXPECT_EQ(Exec(second, "cat /etc/added").output, "added\n");
  EXPECT_EQ(store->Stats().misses, misses);
  ASSERT_TRUE(backend_->Destroy("layered"));
  ASSERT_TRUE(backend_->Destroy("layered2"));
  EXPECT_TRUE(store->Leases().empty());
}

TEST_F(JailImageTest, UnknownAndCorruptImagesAreClearErrors) {
  SandboxSpec corrupt;
  corrupt.image = tmp_.path() + "/corrupt.tar";
  std::string archive = it::DockerSaveArchive({it::Tar({it::File("f", "original")})});
  archive.replace(archive.find("original"), 8, "tampered");
  std::ofstream(corrupt.image, std::ios::binary) << archive;
  auto r = backend_->Create("corrupt", corrupt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("corrupt image"), std::string::npos) << r.error().message;
  EXPECT_FALSE(fs::exists(state_dir_ + "/corrupt"));
  EXPECT_TRUE(backend_->image_store()->Leases().empty());

  SandboxSpec empty;
  empty.image = tmp_.path() + "/no-layers.tar";
  std::ofstream(empty.image, std::ios::binary) << it::DockerSaveArchive({});
  auto e = backend_->Create("empty", empty);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(e.error().message.find("no layers"), std::string::npos) << e.error().message;
  EXPECT_TRUE(backend_->image_store()->Leases().empty());

  SandboxSpec truncated;
  truncated.image = tmp_.path() + "/truncated.tar";
  const std::string good = it::DockerSaveArchive({it::Tar({it::File("f", "x")})});
  std::ofstream(truncated.image, std::ios::binary) << good.substr(0, good.size() - 1536);
  auto t = backend_->Create("truncated", truncated);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, ErrorCode::kInvalidArgument) << t.error().message;

  auto engine = images::EngineImageId("/var/run/docker.sock", "agentbox/base:latest");
  if (engine || engine.error().code != ErrorCode::kUnavailable) {
    SandboxSpec unknown;
    unknown.image = "agentbox/never-built:nope";
    auto u = backend_->Create("unknown", unknown);
    ASSERT_FALSE(u);
    EXPECT_EQ(u.error().code, ErrorCode::kNotFound);
    EXPECT_NE(u.error().message.find("agentbox/never-built:nope"), std::string::npos);
  }
}

TEST_F(JailImageTest, ConcurrentCreatesUnpackOnceAndRecoveryDropsStaleLeases) {
  if (::access("/usr/bin/busybox", X_OK) != 0) {
    GTEST_SKIP() << "SKIPPED: needs /usr/bin/busybox (static)";
  }
  SandboxSpec spec;
  spec.image = MakeLayeredArchive(tmp_.path() + "/layered.tar");
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      auto info = backend_->Create("concurrent" + std::to_string(i), spec);
      if (info && Exec(*info, "cat /etc/added").output == "added\n") {
        ++ok;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(ok.load(), 3);
  auto* store = backend_->image_store();
  EXPECT_EQ(store->Stats().misses, 3u);  // three layers, unpacked once
  EXPECT_EQ(store->Stats().hits, 6u);
  EXPECT_EQ(store->Leases().size(), 3u);
  // A lease whose sandbox does not exist (a create that died before its directory did).
  ASSERT_TRUE(store->Resolve(spec.image, ImageLease("ghost")));
  EXPECT_EQ(store->Leases().size(), 4u);
  ASSERT_TRUE(backend_->Recover());
  const auto leases = store->Leases();
  EXPECT_EQ(std::count(leases.begin(), leases.end(), ImageLease("ghost")), 0);
  EXPECT_EQ(leases.size(), 3u);
}

// Every entry of the layer directories: path, type, mode, size, contents and the overlay's
// opaque marks, to tell that no sandbox wrote into the cache.
std::string Fingerprint(const std::vector<std::string>& dirs) {
  std::string out;
  for (const auto& dir : dirs) {
    std::vector<std::string> lines;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      const auto st = e.symlink_status();
      std::string line = e.path().string() + " " + std::to_string(static_cast<int>(st.type())) +
                         " " + std::to_string(static_cast<unsigned>(st.permissions()));
      if (fs::is_regular_file(st)) {
        line += " " + Slurp(e.path().string());
      }
      for (const char* key : {"user.overlay.opaque", "trusted.overlay.opaque"}) {
        char v[8];
        const ssize_t n = ::lgetxattr(e.path().c_str(), key, v, sizeof(v));
        line += std::string(" ") + key + "=" + (n > 0 ? std::string(v, n) : "-");
      }
      lines.push_back(std::move(line));
    }
    std::sort(lines.begin(), lines.end());
    for (const auto& l : lines) {
      out += l + "\n";
    }
  }
  return out;
}

// The cache's layers are shared by every sandbox of the image: each sandbox writes only into its
// own upper directory, whiteouts and opaque directories of its own included, and the layers'
// whiteouts and opaque directories (made by the unpack) still hide what is below them.
TEST_F(JailImageTest, WritableRootOverSharedLayers) {
  if (::access("/usr/bin/busybox", X_OK) != 0) {
    GTEST_SKIP() << "SKIPPED: needs /usr/bin/busybox (static)";
  }
  SandboxSpec spec;
  spec.image = MakeLayeredArchive(tmp_.path() + "/layered.tar");
  const SandboxInfo a = CreateOrDie("writer", spec);
  auto resolved = backend_->image_store()->Resolve(spec.image);
  ASSERT_TRUE(resolved) << resolved.error().message;
  ASSERT_EQ(resolved->layer_dirs.size(), 3u);
  const std::string before = Fingerprint(resolved->layer_dirs);
  EXPECT_NE(before.find("user.overlay.opaque=y"), std::string::npos) << before;

  // A copy-up, a whiteout over a lower file, an opaque directory over the layers' opaque one, a
  // new executable run from /usr/local/bin.
  EXPECT_EQ(Exec(a, "echo changed > /etc/image-release && cat /etc/image-release").output,
            "changed\n");
  EXPECT_EQ(Exec(a, "rm /etc/added && ls /etc/added 2>/dev/null; echo $?").output, "1\n");
  EXPECT_EQ(Exec(a, "rm -r /data && mkdir /data && echo n > /data/mine && ls /data").output,
            "mine\n");
  EXPECT_EQ(Exec(a, "mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho tool\\n' > "
                    "/usr/local/bin/tool && chmod 755 /usr/local/bin/tool && /usr/local/bin/tool")
                .output,
            "tool\n");
  EXPECT_EQ(Exec(a, "cat /etc/removed 2>/dev/null; echo $?").output, "1\n");  // still hidden

  // Another sandbox of the image sees the image, not the first one's changes.
  const SandboxInfo b = CreateOrDie("reader", spec);
  EXPECT_EQ(Exec(b, "cat /etc/image-release /etc/added").output, "layered-test\nadded\n");
  EXPECT_EQ(Exec(b, "ls /data").output, "new\n");
  EXPECT_NE(Exec(b, "ls /usr/local/bin/tool").returncode, 0);
  EXPECT_EQ(Fingerprint(resolved->layer_dirs), before);  // the cache was never written

  // read_only_root over the same layers: EROFS outside the writable mounts.
  SandboxSpec ro = spec;
  ro.read_only_root = true;
  const SandboxInfo c = CreateOrDie("readonly", ro);
  const auto refused = Exec(c, "touch /etc/x 2>&1");
  EXPECT_NE(refused.returncode, 0);
  EXPECT_NE(refused.output.find("Read-only file system"), std::string::npos) << refused.output;
  EXPECT_EQ(Exec(c, "echo w > /workspace/w && cat /workspace/w").output, "w\n");
  EXPECT_EQ(Exec(c, "cat /etc/added").output, "added\n");
  ASSERT_TRUE(backend_->Destroy("writer"));
  ASSERT_TRUE(backend_->Destroy("reader"));
  ASSERT_TRUE(backend_->Destroy("readonly"));
  EXPECT_EQ(Fingerprint(resolved->layer_dirs), before);
}

bool EngineHasBase(std::string* why) {
  auto id = images::EngineImageId("/var/run/docker.sock", "agentbox/base:latest");
  if (!id) {
    *why = id.error().message;
  }
  return id.has_value();
}

TEST_F(JailImageTest, EngineImageAndItsDockerSaveArchive) {
  std::string why;
  if (!EngineHasBase(&why)) {
    GTEST_SKIP() << "SKIPPED: agentbox/base:latest is not available from the local Docker "
                    "engine: "
                 << why;
  }
  SandboxSpec spec;
  spec.image = "agentbox/base:latest";
  const SandboxInfo info = CreateOrDie("engine", spec);
  EXPECT_EQ(Exec(info, "echo hi").output, "hi\n");
  EXPECT_EQ(Exec(info, "test -x /bin/bash && stat -c %u /usr/bin && echo $LANG").output,
            "0\nC.UTF-8\n");
  EXPECT_EQ(Exec(info, "pwd").output, "/workspace\n");
  const std::string os = Exec(info, "cat /etc/os-release").output;
  EXPECT_NE(os.find("ID="), std::string::npos) << os;

  // `docker save` of the same image: the same layers, all cache hits.
  const std::string saved = tmp_.path() + "/base.tar";
  ASSERT_EQ(std::system(("docker save -o " + saved + " agentbox/base:latest").c_str()), 0);
  const uint64_t misses = backend_->image_store()->Stats().misses;
  SandboxSpec from_archive;
  from_archive.image = saved;
  const SandboxInfo a = CreateOrDie("saved", from_archive);
  EXPECT_EQ(Exec(a, "cat /etc/os-release").output, os);
  EXPECT_EQ(backend_->image_store()->Stats().misses, misses);
}

}  // namespace
}  // namespace agentbox::jail
