// limits.disk_bytes on the docker backend (issue 16): /workspace is a bind of the sandbox's own
// disk; a write past it fails with ENOSPC in that container only. Against a real dockerd; skips
// with the reason without one, or without root (loop devices).
#include <sys/stat.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "backends/disk/disk.h"
#include "backends/disk/disk_testing.h"
#include "backends/docker/docker_backend.h"

namespace agentbox::docker {
namespace {

constexpr uint64_t kLimit = 64ull << 20;

size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

// Runs `command` in session "s" of the sandbox's guest; returns {output, returncode}.
Json Exec(const SandboxInfo& info, const std::string& command) {
  CURL* c = curl_easy_init();
  std::string out;
  const std::string sock = info.guest_endpoint.substr(5);
  const std::string payload = Json{{"id", "s"}, {"command", command}, {"wait_seconds", 60}}.dump();
  curl_slist* h = curl_slist_append(nullptr, ("X-Access-Token: " + info.guest_token).c_str());
  h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock.c_str());
  curl_easy_setopt(c, CURLOPT_URL, "http://guest/api/v1/shell/exec");
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  EXPECT_EQ(rc, CURLE_OK) << curl_easy_strerror(rc);
  const Json j = Json::parse(out, nullptr, false);
  return j.is_object() && j.contains("data") ? j["data"] : Json();
}

using agentbox::disk::testing::AllocatedBytes;

class DockerDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = disk::WhyUnsupported(); !why.empty()) {
      GTEST_SKIP() << "SKIPPED: " << why;
    }
    const char* host = std::getenv("DOCKER_HOST");
    auto sock = SocketFromDockerHost(host ? host : "");
    if (!sock) {
      GTEST_SKIP() << sock.error().message;
    }
    char tmpl[] = "/tmp/agentbox-docker-disk-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    opts_.state_dir = dir_ + "/docker";
    opts_.socket_path = *sock;
    opts_.guest_binary = AGENTBOX_GUEST_BINARY;
    backend_ = std::make_unique<DockerBackend>(opts_);
    ProbeResult p = backend_->Probe();
    if (!p.usable) {
      GTEST_SKIP() << "no usable Docker engine (scripts/start-dockerd.sh and "
                      "scripts/build-base-image.sh make one): "
                   << p.reason;
    }
  }
  void TearDown() override {
    if (backend_) {
      for (const auto& id : ids_) {
        (void)backend_->Destroy(id);
      }
      backend_.reset();
    }
    if (!dir_.empty()) {
      std::filesystem::remove_all(dir_);
    }
  }
  SandboxInfo Create(const std::string& id, uint64_t disk_bytes) {
    ids_.push_back(id);
    SandboxSpec spec;
    spec.limits.disk_bytes = disk_bytes;
    auto info = backend_->Create(id, spec);
    EXPECT_TRUE(info) << info.error().message;
    return info ? *info : SandboxInfo{};
  }

  std::string dir_;
  DockerBackendOptions opts_;
  std::unique_ptr<DockerBackend> backend_;
  std::vector<std::string> ids_;
};

TEST_F(DockerDisk, FillFailsWithEnospcAndAnotherContainerKeepsWriting) {
  SandboxInfo a = Create("dk-full", kLimit);
  SandboxInfo b = Create("dk-other", kLimit);
  ASSERT_FALSE(a.id.empty());
  ASSERT_FALSE(b.id.empty());
  Json df = Exec(a, "df -B1 --output=size /workspace | tail -1");
  ASSERT_EQ(df["returncode"], 0) << df;
  const uint64_t size = std::stoull(df["output"].get<std::string>());
  EXPECT_LE(size, kLimit);
  EXPECT_GT(size, kLimit * 9 / 10);

  const uint64_t before = AllocatedBytes(dir_);
  Json fill = Exec(a, "dd if=/dev/zero of=/workspace/big bs=1M count=256 conv=fsync 2>&1");
  EXPECT_NE(fill["returncode"], 0) << fill;
  EXPECT_NE(fill["output"].get<std::string>().find("No space left on device"), std::string::npos)
      << fill;
  const uint64_t after = AllocatedBytes(dir_);
  EXPECT_LE(after > before ? after - before : 0, kLimit + (32ull << 20));

  auto got = backend_->Get("dk-full");
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_TRUE(got->disk_used_bytes);
  EXPECT_GT(*got->disk_used_bytes, kLimit * 8 / 10);
  EXPECT_EQ(got->spec.limits.disk_bytes, kLimit);
  Json ok = Exec(b, "dd if=/dev/zero of=/workspace/f bs=1M count=16 conv=fsync 2>&1");
  EXPECT_EQ(ok["returncode"], 0) << ok;

  // Destroy unmounts the disk and removes its image.
  ASSERT_TRUE(backend_->Destroy("dk-full"));
  EXPECT_FALSE(std::filesystem::exists(opts_.state_dir + "/dk-full"));
}

// The writable root is on the sandbox's disk too (layer_disk.h): one budget for /workspace and
// everything else the container writes, `df /` shows it, a restarted guest keeps it, and destroy
// leaves no bind behind.
TEST_F(DockerDisk, WorkspaceAndRootShareOneBudget) {
  const Capabilities caps = backend_->GetCapabilities();
  if (caps.disk_limit != "workspace_and_root") {
    GTEST_SKIP() << "SKIPPED: this engine's writable layers cannot go on sandbox disks: "
                 << caps.disk_limit_note;
  }
  SandboxInfo a = Create("dk-root", kLimit);
  SandboxInfo b = Create("dk-root-other", kLimit);
  ASSERT_FALSE(a.id.empty());
  Json df = Exec(a, "df -B1 --output=size / | tail -1");
  ASSERT_EQ(df["returncode"], 0) << df;
  const uint64_t size = std::stoull(df["output"].get<std::string>());
  EXPECT_LE(size, kLimit);
  EXPECT_GT(size, kLimit * 9 / 10);

  const uint64_t before = AllocatedBytes(dir_);
  Json ws = Exec(a, "dd if=/dev/zero of=/workspace/w bs=1M count=40 conv=fsync 2>&1");
  ASSERT_EQ(ws["returncode"], 0) << ws;
  Json root = Exec(a, "dd if=/dev/zero of=/var/tmp/r bs=1M count=40 conv=fsync 2>&1");
  EXPECT_NE(root["returncode"], 0) << root;
  EXPECT_NE(root["output"].get<std::string>().find("No space left on device"), std::string::npos)
      << root;
  const uint64_t after = AllocatedBytes(dir_);
  EXPECT_LE(after > before ? after - before : 0, kLimit + (32ull << 20));
  auto got = backend_->Get("dk-root");
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_TRUE(got->disk_used_bytes);
  EXPECT_GT(*got->disk_used_bytes, kLimit * 8 / 10);
  Json other = Exec(b, "dd if=/dev/zero of=/var/tmp/f bs=1M count=16 conv=fsync 2>&1");
  EXPECT_EQ(other["returncode"], 0) << other;

  // Same container, new guest: the root's files stay.
  Json keep = Exec(a, "rm -f /workspace/w && echo kept > /etc/agentbox-kept");
  ASSERT_EQ(keep["returncode"], 0) << keep;
  ASSERT_TRUE(backend_->RestartGuest("dk-root"));
  Json kept = Exec(a, "cat /etc/agentbox-kept");
  EXPECT_EQ(kept["output"], "kept\n") << kept;

  auto inspect = backend_->engine().Call("GET", "/containers/agentbox-dk-root/json");
  ASSERT_TRUE(inspect && inspect->status == 200);
  auto layer = LayerDirsOf(Json::parse(inspect->body, nullptr, false));
  ASSERT_TRUE(layer) << layer.error().message;
  ASSERT_TRUE(backend_->Destroy("dk-root"));
  std::string mounts;
  {
    std::ifstream in("/proc/self/mountinfo");
    mounts.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_EQ(mounts.find(" " + layer->upper + " "), std::string::npos) << "a bind is left";
  EXPECT_EQ(mounts.find(" " + layer->work + " "), std::string::npos) << "a bind is left";
  EXPECT_FALSE(std::filesystem::exists(opts_.state_dir + "/dk-root"));
}

TEST_F(DockerDisk, TooSmallADiskIsRefused) {
  SandboxSpec spec;
  spec.limits.disk_bytes = 1 << 20;
  auto info = backend_->Create("dk-tiny", spec);
  ASSERT_FALSE(info);
  EXPECT_EQ(info.error().code, ErrorCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(opts_.state_dir + "/dk-tiny"));
}

}  // namespace
}  // namespace agentbox::docker
