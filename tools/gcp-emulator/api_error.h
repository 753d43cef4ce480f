#pragma once

#include <string>
#include <tl/expected.hpp>

#include "common/json_util.h"
#include "http/server.h"

// Errors in Google's envelope. Cloud Storage and Cloud Run answer in the same shape
// ({"error":{"code","message","status","errors":[{"reason",...}]}}), so one type serves both:
// statuses that agentbox's ErrorCode lacks (412, 429, 308 logic) are why it is not common/Error.
namespace agentbox::gcpemu {

struct ApiError {
  ApiError() = default;
  ApiError(int c, std::string m, std::string r = "", std::string s = "")
      : code(c), message(std::move(m)), reason(std::move(r)), status(std::move(s)) {}

  int code = 500;
  std::string message;
  std::string reason;  // Cloud Storage's errors[].reason; derived from `code` when empty
  std::string status;  // Google's status name; derived from `code` when empty
};

template <class T>
using ApiResult = tl::expected<T, ApiError>;

inline tl::unexpected<ApiError> ApiFail(int code, std::string message, std::string reason = "") {
  return tl::unexpected<ApiError>(ApiError{code, std::move(message), std::move(reason)});
}

// Google's canonical status name for an HTTP status (404 -> NOT_FOUND).
const char* StatusName(int code);
// Cloud Storage's default reason for an HTTP status (404 -> notFound).
const char* DefaultReason(int code);

std::string ErrorBody(const ApiError& e);
http::Response ErrorResponse(const ApiError& e);
http::Response JsonResponse(int status, const Json& body);

// The error for a failed system call or common/ helper.
ApiError FromError(const Error& e);

// RFC 3339 UTC with milliseconds ("2026-01-02T03:04:05.678Z").
std::string Rfc3339(double unix_seconds);

}  // namespace agentbox::gcpemu
