#pragma once

// The fixture of the migration tests (migrate_backends_test, migrate_image_test): a daemon with
// both backends whose default is the one a suite starts its sandboxes on, skipped with the reason
// where jail and docker cannot both run, and every sandbox it lists destroyed at the end.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>

#include "migrate/migrate_common.h"

namespace migrate {

class MigrateTest : public ::testing::Test {
 protected:
  // `backend`: the daemon's default backend (--backend).
  explicit MigrateTest(std::string backend) : backend_(std::move(backend)) {}

  void SetUp() override {
    d_ = std::make_unique<Daemon>(AGENTBOXD_CRASHTEST_BIN, backend_);
    if (auto why = WhyUnusable(*d_); !why.empty()) {
      GTEST_SKIP() << "SKIPPED: " << why;
    }
  }
  void TearDown() override {
    if (d_) {
      for (const auto& id : d_->ListedIds()) {
        d_->Call("DELETE", "/v1/sandboxes/" + id);
      }
    }
  }
  // POST /v1/sandboxes/{id}/migrate to `to`, waiting up to 300 s.
  Reply Migrate(const std::string& id, const std::string& to) {
    return d_->Call("POST", "/v1/sandboxes/" + id + "/migrate", Json{{"backend", to}}.dump(), {},
                    300);
  }

  std::unique_ptr<Daemon> d_;

 private:
  std::string backend_;
};

}  // namespace migrate
