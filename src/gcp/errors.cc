#include "gcp/errors.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "common/json_util.h"

namespace agentbox::gcp {
namespace {

nlohmann::json ParseError(std::string_view body) {
  auto j = ParseUntrustedJson(body);
  if (j.is_discarded() || !j.is_object()) {
    return nlohmann::json::object();
  }
  auto it = j.find("error");
  if (it == j.end()) {
    return nlohmann::json::object();
  }
  if (it->is_string()) {  // OAuth endpoints: {"error":"invalid_grant","error_description":"..."}
    nlohmann::json out = {{"status", *it}};
    if (auto d = j.find("error_description"); d != j.end() && d->is_string()) {
      out["message"] = *d;
    }
    return out;
  }
  return it->is_object() ? *it : nlohmann::json::object();
}

std::string StringField(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The permission a 403 names: google.rpc.ErrorInfo metadata.permission, else a dotted
// "service.resource.verb" word in the message ("... does not have storage.objects.create
// access", "Permission 'run.jobs.create' denied").
std::string MissingPermission(const nlohmann::json& err, const std::string& message) {
  if (auto d = err.find("details"); d != err.end() && d->is_array()) {
    for (const auto& detail : *d) {
      if (!detail.is_object()) {
        continue;
      }
      auto md = detail.find("metadata");
      if (md != detail.end() && md->is_object()) {
        std::string p = StringField(*md, "permission");
        if (!p.empty()) {
          return p;
        }
      }
    }
  }
  static const std::regex kPerm(R"(\b([a-z][a-zA-Z0-9]*\.[a-zA-Z0-9]+\.[a-zA-Z0-9]+)\b)");
  std::smatch m;
  std::string::const_iterator begin = message.begin();
  while (std::regex_search(begin, message.cend(), m, kPerm)) {
    std::string word = m[1].str();
    // Skip host names and service accounts (x@p.iam.gserviceaccount.com, *.googleapis.com).
    bool preceded_by_at = m.position(1) > 0 && *(m[1].first - 1) == '@';
    if (!preceded_by_at && word.find("googleapis") == std::string::npos &&
        word.find("gserviceaccount") == std::string::npos) {
      return word;
    }
    begin = m[1].second;
  }
  return "";
}

}  // namespace

std::string GoogleStatus(std::string_view body) {
  auto err = ParseError(body);
  std::string status = StringField(err, "status");
  if (!status.empty()) {
    return status;
  }
  if (auto errs = err.find("errors"); errs != err.end() && errs->is_array()) {
    for (const auto& e : *errs) {
      if (e.is_object()) {
        std::string reason = StringField(e, "reason");
        if (!reason.empty()) {
          return reason;
        }
      }
    }
  }
  return "";
}

Error ErrorFromResponse(std::string_view service, int http_status, std::string_view body) {
  auto err = ParseError(body);
  std::string status = GoogleStatus(body);
  std::string message = StringField(err, "message");
  if (message.empty()) {
    // Not Google's envelope (a proxy's HTML page, plain text): its start, on one line.
    message = std::string(body.substr(0, 200));
    for (char& c : message) {
      if (c == '\n' || c == '\r' || c == '\t') {
        c = ' ';
      }
    }
    if (message.empty()) {
      message = "(empty response)";
    }
  }
  std::string head = status.empty() ? fmt::format("{}: {}", service, http_status)
                                    : fmt::format("{}: {} {}", service, http_status, status);
  ErrorCode code = ErrorCode::kInternal;
  std::string extra;
  switch (http_status) {
    case 400:
      code = ErrorCode::kInvalidArgument;
      break;
    case 401:
      code = ErrorCode::kUnauthorized;
      break;
    case 403: {
      code = ErrorCode::kForbidden;
      std::string perm = MissingPermission(err, message);
      if (!perm.empty()) {
        extra = fmt::format(" (missing permission {})", perm);
      }
      break;
    }
    case 404:
      code = ErrorCode::kNotFound;
      break;
    case 408:
      code = ErrorCode::kTimeout;
      break;
    case 409:
      code = ErrorCode::kConflict;
      break;
    case 412:
      code = ErrorCode::kConflict;
      extra = " (precondition failed: the object changed)";
      break;
    case 413:
      code = ErrorCode::kTooLarge;
      break;
    case 429:
      code = ErrorCode::kUnavailable;
      break;
    default:
      code =
          http_status >= 500 && http_status < 600 ? ErrorCode::kUnavailable : ErrorCode::kInternal;
  }
  return Error{code, fmt::format("{}: {}{}", head, message, extra)};
}

}  // namespace agentbox::gcp
