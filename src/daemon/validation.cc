#include "daemon/validation.h"

#include <cstdio>

#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/time_util.h"

namespace agentbox::daemon {

BackendValidations::BackendValidations(std::string path) : path_(std::move(path)) {
  if (path_.empty() || !PathExists(path_)) {
    return;
  }
  auto text = ReadSmallFile(path_, 4 << 20);
  Json j = text ? ParseUntrustedJson(*text) : Json();
  if (!j.is_object()) {
    std::rename(path_.c_str(), (path_ + ".corrupt").c_str());
    Log(LogLevel::kWarn, "validation.file_unreadable", "path={} moved_to={}.corrupt", path_, path_);
    return;
  }
  for (const auto& [backend, rec] : j.items()) {
    if (rec.is_object() && rec.contains("passed") && rec["passed"].is_boolean()) {
      last_[backend] = rec;
    }
  }
}

Result<Json> BackendValidations::Put(const std::string& backend, const Json& body) {
  if (!body.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  }
  if (!body.contains("passed") || !body["passed"].is_boolean()) {
    return Fail(FieldError("passed", "is required and must be a boolean"));
  }
  Json checks = Json::array();
  if (body.contains("checks")) {
    if (!body["checks"].is_array() || body["checks"].size() > 200) {
      return Fail(FieldError("checks", "must be an array of at most 200 objects"));
    }
    for (const auto& c : body["checks"]) {
      if (!c.is_object() || !c.contains("name") || !c["name"].is_string() ||
          !c.contains("outcome") || !c["outcome"].is_string()) {
        return Fail(FieldError("checks", "each check needs a string name and outcome"));
      }
      Json kept = {{"name", c["name"].get<std::string>().substr(0, 200)},
                   {"outcome", c["outcome"].get<std::string>().substr(0, 16)}};
      if (c.contains("ms") && c["ms"].is_number()) {
        kept["ms"] = c["ms"];
      }
      if (c.contains("detail") && c["detail"].is_string()) {
        kept["detail"] = c["detail"].get<std::string>().substr(0, 2000);
      }
      checks.push_back(std::move(kept));
    }
  }
  Json rec = {{"passed", body["passed"].get<bool>()}, {"ran_at", NowUnix()}, {"checks", checks}};
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, Json> next = last_;
  next[backend] = rec;
  if (!path_.empty()) {
    if (auto w = WriteFileAtomic(path_, Json(next).dump(2) + "\n", 0600); !w) {
      return Fail(w.error());
    }
  }
  last_ = std::move(next);
  Log(rec["passed"].get<bool>() ? LogLevel::kInfo : LogLevel::kWarn, "validation.recorded",
      "backend={} passed={} checks={}", backend, rec["passed"].get<bool>(), checks.size());
  return rec;
}

std::optional<Json> BackendValidations::Get(const std::string& backend) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = last_.find(backend);
  if (it == last_.end()) {
    return std::nullopt;
  }
  return it->second;
}

bool BackendValidations::LastFailed(const std::string& backend) const {
  auto rec = Get(backend);
  return rec && !(*rec)["passed"].get<bool>();
}

}  // namespace agentbox::daemon
