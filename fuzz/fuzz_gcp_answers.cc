// What the Google Cloud clients read from Google's answers: error bodies (ErrorFromResponse for
// every status class, GoogleStatus), Cloud Storage object resources and the items of a listing
// (ObjectMetaFromJson: int64 fields as strings, custom metadata), Cloud Run executions
// (ExecutionDone: completionTime and conditions) and Retry-After values. Google is trusted more
// than a sandbox, but an answer of an unexpected shape must give errors, not crashes.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "gcp/errors.h"
#include "gcp/run.h"
#include "gcp/storage.h"
#include "gcp/transport.h"

namespace gcp = agentbox::gcp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (int status : {400, 401, 403, 404, 408, 409, 412, 413, 429, 500, 503, 302}) {
    (void)gcp::ErrorFromResponse("Cloud Storage", status, body).message;
  }
  (void)gcp::GoogleStatus(body);
  (void)gcp::ParseRetryAfter(body.substr(0, 64), std::chrono::system_clock::now());
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    return 0;
  }
  (void)gcp::RunClient::ExecutionDone(j);
  (void)gcp::ObjectMetaFromJson(j);
  // A listing: {"items": [...], "nextPageToken": ...}; Cloud Run lists: {"executions": [...]}.
  if (j.is_object()) {
    for (const char* key : {"items", "executions", "tasks"}) {
      if (auto it = j.find(key); it != j.end() && it->is_array()) {
        for (const auto& item : *it) {
          (void)gcp::ObjectMetaFromJson(item);
          (void)gcp::RunClient::ExecutionDone(item);
        }
      }
    }
  }
  return 0;
}
