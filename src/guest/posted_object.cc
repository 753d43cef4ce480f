#include "guest/posted_object.h"

#include "http/envelope.h"

namespace agentbox::guest {

std::optional<Json> PostedObject(const http::Request& req, const http::Respond& respond) {
  if (req.path == "/api/v1/health" || req.path == "/api/v1/file/download") {
    respond(http::ErrorResponse(405, "use GET for " + req.path));
    return std::nullopt;
  }
  if (req.method != "POST") {
    respond(http::ErrorResponse(req.path.starts_with("/api/v1/") ? 405 : 404,
                                "no such endpoint: " + req.method + " " + req.path));
    return std::nullopt;
  }
  auto body = ParseJsonObject(req.body);
  if (!body) {
    respond(http::ErrorResponse(body.error()));
    return std::nullopt;
  }
  return std::move(*body);
}

}  // namespace agentbox::guest
