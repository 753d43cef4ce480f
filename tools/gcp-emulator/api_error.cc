#include "api_error.h"

#include <cmath>
#include <ctime>

namespace agentbox::gcpemu {

const char* StatusName(int code) {
  switch (code) {
    case 400:
      return "INVALID_ARGUMENT";
    case 401:
      return "UNAUTHENTICATED";
    case 403:
      return "PERMISSION_DENIED";
    case 404:
      return "NOT_FOUND";
    case 409:
      return "ALREADY_EXISTS";
    case 412:
      return "FAILED_PRECONDITION";
    case 413:
      return "OUT_OF_RANGE";
    case 429:
      return "RESOURCE_EXHAUSTED";
    case 499:
      return "CANCELLED";
    case 501:
      return "UNIMPLEMENTED";
    case 503:
      return "UNAVAILABLE";
    case 504:
      return "DEADLINE_EXCEEDED";
    default:
      return code >= 500 ? "INTERNAL" : "UNKNOWN";
  }
}

const char* DefaultReason(int code) {
  switch (code) {
    case 400:
      return "invalid";
    case 401:
      return "required";
    case 403:
      return "forbidden";
    case 404:
      return "notFound";
    case 409:
      return "conflict";
    case 412:
      return "conditionNotMet";
    case 413:
      return "uploadTooLarge";
    case 416:
      return "requestedRangeNotSatisfiable";
    case 429:
      return "rateLimitExceeded";
    default:
      return code >= 500 ? "backendError" : "invalid";
  }
}

std::string ErrorBody(const ApiError& e) {
  const std::string reason = e.reason.empty() ? DefaultReason(e.code) : e.reason;
  Json j = {
      {"error",
       {{"code", e.code},
        {"message", e.message},
        {"status", e.status.empty() ? StatusName(e.code) : e.status},
        {"errors",
         Json::array({{{"domain", "global"}, {"reason", reason}, {"message", e.message}}})}}}};
  return DumpJson(j);
}

http::Response ErrorResponse(const ApiError& e) {
  http::Response r;
  r.status = e.code;
  r.content_type = "application/json; charset=UTF-8";
  r.body = ErrorBody(e);
  return r;
}

http::Response JsonResponse(int status, const Json& body) {
  http::Response r;
  r.status = status;
  r.content_type = "application/json; charset=UTF-8";
  r.body = DumpJson(body);
  return r;
}

ApiError FromError(const Error& e) {
  return ApiError{HttpStatus(e.code) == 422 ? 400 : HttpStatus(e.code), e.message, ""};
}

std::string Rfc3339(double unix_seconds) {
  const auto secs = static_cast<time_t>(std::floor(unix_seconds));
  const int millis = static_cast<int>((unix_seconds - static_cast<double>(secs)) * 1000.0);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                millis < 0 ? 0 : (millis > 999 ? 999 : millis));
  return buf;
}

}  // namespace agentbox::gcpemu
