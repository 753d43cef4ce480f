#pragma once

// The fixture the jail backend's test suites share: a JailBackend over a temporary state
// directory, skipped with the reason when jails cannot run here, and every sandbox a test left
// destroyed afterwards.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "backends/jail/jail_backend.h"
#include "backends/jail/jail_test_util.h"
#include "backends/jail/sandbox_record.h"

namespace agentbox::jail::testing {

// A TCP listener on an ephemeral port of the host's loopback, closed on destruction: reachable
// only from a sandbox that shares the host's network. port() is empty if it could not listen.
class HostLoopbackListener {
 public:
  HostLoopbackListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;
    }
    port_ = std::to_string(ntohs(addr.sin_port));
  }
  ~HostLoopbackListener() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  HostLoopbackListener(const HostLoopbackListener&) = delete;
  HostLoopbackListener& operator=(const HostLoopbackListener&) = delete;
  const std::string& port() const { return port_; }

 private:
  int fd_ = -1;
  std::string port_;
};

class JailFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!JailsAvailable(&why)) {
      GTEST_SKIP() << "SKIPPED: jail sandboxes cannot run here: " << why;
    }
    state_dir_ = tmp_.path() + "/state";
    backend_ = std::make_unique<JailBackend>(TestOptions(state_dir_));
  }

  void TearDown() override {
    if (!backend_) {
      return;
    }
    if (auto all = backend_->List()) {
      for (const auto& info : *all) {
        auto r = backend_->Destroy(info.id);
        if (expect_clean_destroy_) {
          EXPECT_TRUE(r) << info.id;
        }
      }
    }
  }

  SandboxInfo CreateOrDie(const std::string& id, const SandboxSpec& spec = {}) {
    auto info = backend_->Create(id, spec);
    EXPECT_TRUE(info) << (info ? "" : info.error().message);
    return info ? *info : SandboxInfo{};
  }

  SandboxRecord RecordOf(const std::string& id) {
    auto rec = LoadSandboxRecord(backend_->SandboxDir(id) + "/spec.json");
    EXPECT_TRUE(rec) << (rec ? "" : rec.error().message);
    return rec ? *rec : SandboxRecord{};
  }

  // Whether TearDown expects every leftover sandbox to be destroyed without error. Suites whose
  // tests break sandboxes on purpose (kill helpers, delete state) leave it false.
  bool expect_clean_destroy_ = false;
  TempDir tmp_;
  std::string state_dir_;
  std::unique_ptr<JailBackend> backend_;
};

}  // namespace agentbox::jail::testing
