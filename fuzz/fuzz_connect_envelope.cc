// The E2B layer's Connect envelopes and the JSON inside them: a streaming request body from an
// SDK client (FirstEnvelope), then the translations of what the payload carries, each with the
// payload as the client's request or as a guest's answer (the guest is untrusted too): start
// requests, process selectors, signals, the guest's exec and watch events, process lists and fs
// entries, the control plane's create body and metadata filter, Basic auth. Besides not crashing:
// an envelope we write must read back as its payload.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/json_util.h"
#include "daemon/e2b/translate.h"

namespace e2b = agentbox::daemon::e2b;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto payload = e2b::FirstEnvelope(body);

  // Strings from the client's headers and query.
  const std::string text(body.substr(0, 512));
  (void)e2b::BasicUser(text);
  (void)e2b::BasicUser("Basic " + text);
  (void)e2b::ParseMetadataFilter(text);
  (void)e2b::ConnectHttpStatus(text);
  (void)e2b::ResolvePath(text, "user");

  if (!payload) {
    (void)payload.error().message;
    return 0;
  }
  // Our own envelope of that payload reads back as it.
  auto again = e2b::FirstEnvelope(e2b::Envelope(0, *payload));
  if (!again || *again != *payload) {
    __builtin_trap();
  }
  const agentbox::Json j = agentbox::Json::parse(*payload, nullptr, false);
  if (j.is_discarded()) {
    return 0;
  }
  (void)e2b::ExecStartFromStartRequest(j, "user");
  (void)e2b::GuestSelector(j);
  (void)e2b::SignalNumber(j);
  if (j.is_object()) {
    if (auto it = j.find("signal"); it != j.end()) {
      (void)e2b::SignalNumber(*it);
    }
    if (auto it = j.find("process"); it != j.end()) {
      (void)e2b::GuestSelector(*it);
    }
  }
  if (auto ev = e2b::ProcessEventFromGuest(j)) {
    (void)agentbox::DumpJson(*ev);
  }
  if (auto ev = e2b::WatchEventFromGuest(j)) {
    (void)agentbox::DumpJson(*ev);
  }
  (void)agentbox::DumpJson(e2b::ListResponseFromGuest(j));
  (void)agentbox::DumpJson(e2b::EntryInfoFromGuest(j));
  // Not here: SandboxFromNative, DetailFromNative and MetadataFromLabels translate agentboxd's
  // own sandbox JSON, not outside input.
  const std::map<std::string, std::string> templates = {{"base", ""}, {"py", "python:3"}};
  if (auto c = e2b::NativeCreateBody(j, templates, 300)) {
    (void)agentbox::DumpJson(c->native);
  }
  return 0;
}
