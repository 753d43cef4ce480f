#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "api_error.h"
#include "common/json_util.h"
#include "http/server.h"

// Faults injected at runtime by tests (PUT/GET/DELETE /emulator/v1/faults):
//
//   {"rules": [{"method": "storage.objects.insert", "status": 503, "rate": 1.0, "count": 2,
//               "latency_ms": 0, "precondition_race": false, "message": "...",
//               "retry_after_s": null}],
//    "execution_start_delay_ms": 0, "fail_executions": 0, "fail_exit_code": null}
//
// `method` is Google's method id (run.jobs.run, storage.objects.get, ...), "*" for every call or
// a prefix ending in ".*" ("storage.objects.*"). A rule fires on a matching call with
// probability `rate`, at most `count` times (absent = forever); when it fires, the call waits
// `latency_ms` and then fails with `status` (0 = no failure: latency only) in Google's error
// envelope (with a Retry-After header when `retry_after_s` is set), or, with `precondition_race`, a
// racing writer makes a new generation of the object just before the call applies its generation
// preconditions, which then fail with 412 as on the real service. The first rule that fires
// decides. `fail_executions` = how many of the next executions fail: with `fail_exit_code` their
// container exits with that code (137 = killed for memory), without it they fail before the
// container started (as an image that cannot be pulled). Thread-safe.
namespace agentbox::gcpemu {

struct FaultRule {
  std::string method;
  int status = 503;
  double rate = 1.0;
  std::optional<int64_t> count;
  int64_t latency_ms = 0;
  bool precondition_race = false;
  std::string message;
  std::optional<int64_t> retry_after_s;
  int64_t fired = 0;
};

struct FaultDecision {
  int status = 0;  // 0 = proceed
  std::string message;
  std::chrono::milliseconds latency{0};
  bool precondition_race = false;
  std::optional<int64_t> retry_after_s;
};

// The error answer of a decision whose status is not 0.
http::Response FaultResponse(const FaultDecision& d);

struct ExecutionFault {
  bool fail = false;
  std::optional<int> exit_code;  // nullopt: fails before the container starts
};

class Faults {
 public:
  // Replaces the whole configuration; 400 naming the field when the body is malformed.
  ApiResult<void> Set(const Json& body);
  Json Get() const;
  void Clear();

  // Consults (and consumes counts of) the rules for one call of `method`.
  FaultDecision Decide(const std::string& method);
  std::chrono::milliseconds ExecutionStartDelay() const;
  // Consumes one of `fail_executions`.
  ExecutionFault TakeExecutionFault();

 private:
  mutable std::mutex mu_;
  std::vector<FaultRule> rules_;
  int64_t start_delay_ms_ = 0;
  int64_t fail_executions_ = 0;
  std::optional<int> fail_exit_code_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace agentbox::gcpemu
