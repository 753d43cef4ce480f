#include "http/envelope.h"

namespace agentbox::http {

Response OkResponse(Json data, const std::string& message, int status) {
  Response r;
  r.status = status;
  r.body = DumpJson(Json{{"success", true}, {"message", message}, {"data", std::move(data)}});
  return r;
}

Response ErrorResponse(const Error& e) {
  Response r;
  r.status = HttpStatus(e.code);
  Json data = nullptr;
  if (!e.field.empty()) {
    data = Json{{"fields", Json::array({e.field})}};
  }
  r.body = DumpJson(Json{{"success", false}, {"message", e.message}, {"data", data}});
  return r;
}

Response ErrorResponse(int status, const std::string& message) {
  Response r;
  r.status = status;
  r.body = ErrorBody(status, message);
  return r;
}

std::string ErrorBody(int /*status*/, const std::string& message) {
  return DumpJson(Json{{"success", false}, {"message", message}, {"data", nullptr}});
}

}  // namespace agentbox::http
