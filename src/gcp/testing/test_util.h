#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>

#include "gcp/auth.h"
#include "gcp/transport.h"

namespace agentbox::gcp::testing {

// Records the waits the transport asks for instead of sleeping, so retry tests run instantly and
// can assert the backoff schedule.
struct RecordedSleeps {
  std::mutex mu;
  std::vector<std::chrono::milliseconds> waits;
  std::vector<std::chrono::milliseconds> Get() {
    std::lock_guard lock(mu);
    return waits;
  }
};

inline TransportOptions FastOptions(const std::shared_ptr<RecordedSleeps>& sleeps) {
  TransportOptions o;
  o.retry.initial_backoff = std::chrono::milliseconds(100);
  o.retry.max_backoff = std::chrono::milliseconds(2000);
  o.retry.total = std::chrono::seconds(30);
  o.retry.max_attempts = 6;
  o.connect_timeout = std::chrono::seconds(2);
  o.sleep = [sleeps](std::chrono::milliseconds d) {
    std::lock_guard lock(sleeps->mu);
    sleeps->waits.push_back(d);
  };
  return o;
}

inline std::shared_ptr<HttpTransport> TransportWithToken(
    const std::string& token, const std::shared_ptr<RecordedSleeps>& sleeps) {
  return std::make_shared<HttpTransport>(std::make_shared<StaticTokenSource>(token, "test token"),
                                         FastOptions(sleeps));
}

}  // namespace agentbox::gcp::testing
