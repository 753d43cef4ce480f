#include "http/field_check.h"

#include "common/log.h"
#include "http/envelope.h"

namespace agentbox::http {

Respond WithHeaders(Respond respond, std::vector<std::pair<std::string, std::string>> headers) {
  if (headers.empty()) {
    return respond;
  }
  return [respond = std::move(respond), headers = std::move(headers)](Response r) {
    r.headers.insert(r.headers.end(), headers.begin(), headers.end());
    respond(std::move(r));
  };
}

bool AcceptFields(const Result<std::vector<UnknownField>>& checked, std::string_view endpoint,
                  Respond& respond) {
  if (!checked) {
    Log(LogLevel::kDebug, "request.unknown_field", "endpoint=\"{}\" field=\"{}\" action=rejected",
        endpoint, checked.error().field);
    respond(ErrorResponse(checked.error()));
    return false;
  }
  if (checked->empty()) {
    return true;
  }
  for (const UnknownField& f : *checked) {
    Log(LogLevel::kWarn, "request.unknown_field",
        "endpoint=\"{}\" field=\"{}\" suggestion=\"{}\" action=ignored", endpoint, f.Path(),
        f.suggestion);
  }
  std::vector<std::pair<std::string, std::string>> headers;
  for (auto& v : WarningHeaderValues(*checked)) {
    headers.emplace_back("Warning", std::move(v));
  }
  respond = WithHeaders(std::move(respond), std::move(headers));
  return true;
}

void RelayWarnings(const ClientResponse& from, Response& to) {
  for (const auto& [name, value] : from.headers) {
    if (name == "warning") {
      to.headers.emplace_back("Warning", value);
    }
  }
}

}  // namespace agentbox::http
