#pragma once

// The fixture the jail backend's test suites share: a JailBackend over a temporary state
// directory, skipped with the reason when jails cannot run here, and every sandbox a test left
// destroyed afterwards.

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "backends/jail/jail_backend.h"
#include "backends/jail/jail_test_util.h"
#include "backends/jail/sandbox_record.h"

namespace agentbox::jail::testing {

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
