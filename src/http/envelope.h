#pragma once

#include <string>

#include "common/error.h"
#include "common/json_util.h"
#include "http/server.h"

namespace agentbox::http {

// The JSON envelope every agentbox API answers with (guest and daemon alike):
// {"success": bool, "message": str, "data": ...}; a validation error's data is {"fields": [..]}.
Response OkResponse(Json data, const std::string& message = "ok", int status = 200);
Response ErrorResponse(const Error& e);
Response ErrorResponse(int status, const std::string& message);
// Error body only, for protocol-level failures the server reports (ServerOptions::error_body).
std::string ErrorBody(int status, const std::string& message);

}  // namespace agentbox::http

// In a handler that answers through a `respond` callback: unwraps the Result `expr` into `var`,
// or answers its error (ErrorResponse) and returns from the handler.
#define AGENTBOX_TRY_OR_RESPOND(var, expr)                     \
  auto var##_r = (expr);                                       \
  if (!var##_r) {                                              \
    respond(::agentbox::http::ErrorResponse(var##_r.error())); \
    return;                                                    \
  }                                                            \
  auto var = std::move(*var##_r)
