#include "gcp/run.h"

#include <fmt/format.h>

#include <thread>

#include "common/json_util.h"
#include "gcp/errors.h"

namespace agentbox::gcp {
namespace {

constexpr const char* kService = "Cloud Run";

std::string StrField(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// google.rpc.Code of a finished operation's error -> ErrorCode.
ErrorCode CodeFromRpc(int code) {
  switch (code) {
    case 3:   // INVALID_ARGUMENT
    case 9:   // FAILED_PRECONDITION
    case 11:  // OUT_OF_RANGE
      return ErrorCode::kInvalidArgument;
    case 4:  // DEADLINE_EXCEEDED
      return ErrorCode::kTimeout;
    case 5:
      return ErrorCode::kNotFound;
    case 6:   // ALREADY_EXISTS
    case 10:  // ABORTED
      return ErrorCode::kConflict;
    case 7:
      return ErrorCode::kForbidden;
    case 16:
      return ErrorCode::kUnauthorized;
    case 8:   // RESOURCE_EXHAUSTED
    case 14:  // UNAVAILABLE
      return ErrorCode::kUnavailable;
    default:
      return ErrorCode::kInternal;
  }
}

// Resource names are sent as paths: each segment is encoded on its own so '/' stays a separator
// and ':' (custom verbs) can follow.
std::string EncodeName(const std::string& name) {
  std::string out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    std::string_view seg(name.data() + start,
                         (slash == std::string::npos ? name.size() : slash) - start);
    out += EncodePathSegment(seg);
    if (slash == std::string::npos) {
      break;
    }
    out += '/';
    start = slash + 1;
  }
  return out;
}

}  // namespace

RunClient::RunClient(std::shared_ptr<HttpTransport> http, Endpoints endpoints)
    : http_(std::move(http)), endpoints_(std::move(endpoints)) {}

Result<Json> RunClient::Call(const std::string& method, const std::string& path, const Json* body,
                             bool idempotent) {
  HttpRequest req;
  req.method = method;
  req.url = endpoints_.run + "/v2/" + path;
  req.idempotent = idempotent;
  if (body != nullptr) {
    req.headers = {{"Content-Type", "application/json"}};
    req.body = body->dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  auto resp = http_->Send(req);
  if (!resp) {
    Error e = resp.error();
    e.message = std::string(kService) + ": " + e.message;
    return Fail(std::move(e));
  }
  if (method == "DELETE" && resp->status == 404 && resp->attempts > 1) {
    return Json::object();  // gone after a retry: the attempt whose answer was lost deleted it
  }
  if (resp->status < 200 || resp->status >= 300) {
    return Fail(ErrorFromResponse(kService, resp->status, resp->body));
  }
  if (resp->body.empty()) {
    return Json::object();
  }
  auto j = ParseUntrustedJson(resp->body);
  if (j.is_discarded()) {
    return Fail(ErrorCode::kUnavailable,
                fmt::format("{}: {} {} answered {} with a body that is not JSON", kService, method,
                            path.substr(0, path.find('?')), resp->status));
  }
  return j;
}

Result<Json> RunClient::CreateJob(const std::string& parent, const std::string& job_id,
                                  const Json& job) {
  // Retried creates are safe: the id is the caller's, so a repeat is ALREADY_EXISTS (kConflict).
  return Call("POST", EncodeName(parent) + "/jobs?jobId=" + EncodeQueryValue(job_id), &job);
}

Result<Json> RunClient::GetJob(const std::string& job_name) {
  return Call("GET", EncodeName(job_name), nullptr);
}

Result<Json> RunClient::DeleteJob(const std::string& job_name) {
  return Call("DELETE", EncodeName(job_name), nullptr);
}

Result<Json> RunClient::RunJob(const std::string& job_name, const Json& overrides) {
  Json body = Json::object();
  if (!overrides.is_null()) {
    body["overrides"] = overrides;
  }
  // Each accepted run starts an execution: never re-sent once it may have been received.
  return Call("POST", EncodeName(job_name) + ":run", &body, /*idempotent=*/false);
}

Result<Json> RunClient::GetExecution(const std::string& execution_name) {
  return Call("GET", EncodeName(execution_name), nullptr);
}

namespace {

Result<std::vector<Json>> ListAllPages(
    const std::function<Result<Json>(const std::string& token)>& page, const char* field) {
  std::vector<Json> out;
  std::string token;
  for (;;) {
    auto j = page(token);
    if (!j) {
      return Fail(j.error());
    }
    if (auto items = j->find(field); items != j->end() && items->is_array()) {
      for (auto& item : *items) {
        out.push_back(std::move(item));
      }
    }
    std::string next = StrField(*j, "nextPageToken");
    if (next.empty()) {
      return out;
    }
    if (next == token) {
      return Fail(
          ErrorCode::kUnavailable,
          fmt::format("{}: list of {} returned the same page token twice", kService, field));
    }
    token = next;
  }
}

}  // namespace

Result<std::vector<Json>> RunClient::ListExecutions(const std::string& job_name) {
  return ListAllPages(
      [&](const std::string& token) {
        std::string path = EncodeName(job_name) + "/executions?pageSize=100";
        if (!token.empty()) {
          path += "&pageToken=" + EncodeQueryValue(token);
        }
        return Call("GET", path, nullptr);
      },
      "executions");
}

Result<Json> RunClient::CancelExecution(const std::string& execution_name) {
  Json empty = Json::object();
  auto r = Call("POST", EncodeName(execution_name) + ":cancel", &empty);
  if (!r &&
      (r.error().code == ErrorCode::kInvalidArgument || r.error().code == ErrorCode::kConflict) &&
      r.error().message.find("FAILED_PRECONDITION") != std::string::npos) {
    // Already finished: nothing to cancel.
    return GetExecution(execution_name);
  }
  return r;
}

Result<Json> RunClient::DeleteExecution(const std::string& execution_name) {
  return Call("DELETE", EncodeName(execution_name), nullptr);
}

Result<std::vector<Json>> RunClient::ListTasks(const std::string& execution_name) {
  return ListAllPages(
      [&](const std::string& token) {
        std::string path = EncodeName(execution_name) + "/tasks?pageSize=100";
        if (!token.empty()) {
          path += "&pageToken=" + EncodeQueryValue(token);
        }
        return Call("GET", path, nullptr);
      },
      "tasks");
}

Result<Json> RunClient::GetOperation(const std::string& operation_name) {
  return Call("GET", EncodeName(operation_name), nullptr);
}

Result<Json> RunClient::WaitOperation(const std::string& operation_name,
                                      std::chrono::steady_clock::time_point deadline) {
  auto interval = std::chrono::milliseconds(100);
  for (;;) {
    auto op = GetOperation(operation_name);
    if (!op) {
      return op;
    }
    auto done = op->find("done");
    if (done != op->end() && done->is_boolean() && done->get<bool>()) {
      if (auto err = op->find("error"); err != op->end() && err->is_object()) {
        int code = err->value("code", 2);
        return Fail(CodeFromRpc(code),
                    fmt::format("{}: operation {} failed: {} {}", kService, operation_name, code,
                                StrField(*err, "message")));
      }
      return op;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return Fail(ErrorCode::kTimeout, fmt::format("{}: operation {} not done by the deadline",
                                                   kService, operation_name));
    }
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(interval, deadline - now));
    interval = std::min(interval * 2, std::chrono::milliseconds(2000));
  }
}

bool RunClient::ExecutionDone(const Json& execution) {
  if (!StrField(execution, "completionTime").empty()) {
    return true;
  }
  auto conds = execution.find("conditions");
  if (conds == execution.end() || !conds->is_array()) {
    return false;
  }
  for (const auto& c : *conds) {
    if (c.is_object() && StrField(c, "type") == "Completed") {
      std::string state = StrField(c, "state");
      return state == "CONDITION_SUCCEEDED" || state == "CONDITION_FAILED";
    }
  }
  return false;
}

}  // namespace agentbox::gcp
