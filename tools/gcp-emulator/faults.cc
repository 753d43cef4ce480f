#include "faults.h"

namespace agentbox::gcpemu {
namespace {

bool Matches(const std::string& pattern, const std::string& method) {
  if (pattern == "*" || pattern == method) {
    return true;
  }
  return pattern.size() > 2 && pattern.ends_with(".*") &&
         method.starts_with(pattern.substr(0, pattern.size() - 1));
}

ApiResult<int64_t> IntField(const Json& j, const char* key, int64_t min, int64_t max, int64_t def) {
  if (!j.contains(key) || j[key].is_null()) {
    return def;
  }
  if (!j[key].is_number_integer() || j[key].get<int64_t>() < min || j[key].get<int64_t>() > max) {
    return ApiFail(400, std::string("faults: '") + key + "' must be an integer in [" +
                            std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return j[key].get<int64_t>();
}

}  // namespace

ApiResult<void> Faults::Set(const Json& body) {
  std::vector<FaultRule> rules;
  if (body.contains("rules")) {
    if (!body["rules"].is_array()) {
      return ApiFail(400, "faults: 'rules' must be an array");
    }
    for (const auto& r : body["rules"]) {
      if (!r.is_object() || !r.contains("method") || !r["method"].is_string() ||
          r["method"].get<std::string>().empty()) {
        return ApiFail(400,
                       "faults: every rule needs a 'method' (e.g. \"storage.objects.insert\")");
      }
      FaultRule rule;
      rule.method = r["method"].get<std::string>();
      auto status = IntField(r, "status", 0, 599, r.contains("latency_ms") ? 0 : 503);
      auto latency = IntField(r, "latency_ms", 0, 600000, 0);
      if (!status || !latency) {
        return tl::unexpected(!status ? status.error() : latency.error());
      }
      if (*status != 0 && *status < 400) {
        return ApiFail(400, "faults: 'status' must be 0 (latency only) or an error status >= 400");
      }
      rule.status = static_cast<int>(*status);
      rule.latency_ms = *latency;
      if (r.contains("count") && !r["count"].is_null()) {
        auto count = IntField(r, "count", 0, int64_t{1} << 40, 0);
        if (!count) {
          return tl::unexpected(count.error());
        }
        rule.count = *count;
      }
      if (r.contains("rate")) {
        if (!r["rate"].is_number() || r["rate"].get<double>() < 0 || r["rate"].get<double>() > 1) {
          return ApiFail(400, "faults: 'rate' must be a number in [0, 1]");
        }
        rule.rate = r["rate"].get<double>();
      }
      if (r.contains("precondition_race")) {
        if (!r["precondition_race"].is_boolean()) {
          return ApiFail(400, "faults: 'precondition_race' must be a boolean");
        }
        rule.precondition_race = r["precondition_race"].get<bool>();
        if (rule.precondition_race && !r.contains("status")) {
          rule.status = 0;
        }
      }
      if (r.contains("retry_after_s") && !r["retry_after_s"].is_null()) {
        auto ra = IntField(r, "retry_after_s", 0, 3600, 0);
        if (!ra) {
          return tl::unexpected(ra.error());
        }
        rule.retry_after_s = *ra;
      }
      if (r.contains("message") && r["message"].is_string()) {
        rule.message = r["message"].get<std::string>();
      }
      rules.push_back(std::move(rule));
    }
  }
  auto delay = IntField(body, "execution_start_delay_ms", 0, 3600000, 0);
  auto fails = IntField(body, "fail_executions", 0, int64_t{1} << 40, 0);
  if (!delay || !fails) {
    return tl::unexpected(!delay ? delay.error() : fails.error());
  }
  std::optional<int> exit_code;
  if (body.contains("fail_exit_code") && !body["fail_exit_code"].is_null()) {
    auto code = IntField(body, "fail_exit_code", 1, 255, 1);
    if (!code) {
      return tl::unexpected(code.error());
    }
    exit_code = static_cast<int>(*code);
  }
  std::lock_guard lock(mu_);
  rules_ = std::move(rules);
  start_delay_ms_ = *delay;
  fail_executions_ = *fails;
  fail_exit_code_ = exit_code;
  return {};
}

Json Faults::Get() const {
  std::lock_guard lock(mu_);
  Json rules = Json::array();
  for (const auto& r : rules_) {
    Json j{{"method", r.method},
           {"status", r.status},
           {"rate", r.rate},
           {"latency_ms", r.latency_ms},
           {"precondition_race", r.precondition_race},
           {"fired", r.fired}};
    if (r.count) {
      j["count"] = *r.count;
    }
    if (!r.message.empty()) {
      j["message"] = r.message;
    }
    if (r.retry_after_s) {
      j["retry_after_s"] = *r.retry_after_s;
    }
    rules.push_back(std::move(j));
  }
  Json j{{"rules", rules},
         {"execution_start_delay_ms", start_delay_ms_},
         {"fail_executions", fail_executions_}};
  j["fail_exit_code"] = fail_exit_code_ ? Json(*fail_exit_code_) : Json(nullptr);
  return j;
}

void Faults::Clear() {
  std::lock_guard lock(mu_);
  rules_.clear();
  start_delay_ms_ = 0;
  fail_executions_ = 0;
  fail_exit_code_.reset();
}

FaultDecision Faults::Decide(const std::string& method) {
  std::lock_guard lock(mu_);
  for (auto& r : rules_) {
    if (!Matches(r.method, method) || (r.count && *r.count <= 0)) {
      continue;
    }
    if (r.rate < 1.0 && std::uniform_real_distribution<double>(0, 1)(rng_) >= r.rate) {
      continue;
    }
    if (r.count) {
      --*r.count;
    }
    ++r.fired;
    FaultDecision d;
    d.status = r.status;
    d.latency = std::chrono::milliseconds(r.latency_ms);
    d.precondition_race = r.precondition_race;
    d.retry_after_s = r.retry_after_s;
    d.message = !r.message.empty() ? r.message
                                   : "injected fault: " + method + " answered " +
                                         std::to_string(r.status) + " by the emulator's rules";
    return d;
  }
  return {};
}

std::chrono::milliseconds Faults::ExecutionStartDelay() const {
  std::lock_guard lock(mu_);
  return std::chrono::milliseconds(start_delay_ms_);
}

ExecutionFault Faults::TakeExecutionFault() {
  std::lock_guard lock(mu_);
  if (fail_executions_ <= 0) {
    return {};
  }
  --fail_executions_;
  return ExecutionFault{true, fail_exit_code_};
}

http::Response FaultResponse(const FaultDecision& d) {
  http::Response r = ErrorResponse({d.status, d.message, ""});
  if (d.retry_after_s) {
    r.headers.push_back({"Retry-After", std::to_string(*d.retry_after_s)});
  }
  return r;
}

}  // namespace agentbox::gcpemu
