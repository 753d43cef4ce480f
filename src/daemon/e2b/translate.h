#pragma once

// Pure translation between E2B's wire shapes (docs/e2b.md; the control plane's OpenAPI and
// envd's Connect-RPC protos, proto3 JSON mapping) and agentbox's native and guest shapes. No
// I/O: everything here is unit-tested in translate_test.cc.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::daemon::e2b {

// The envd version agentboxd reports: the SDK switches features on by it (stdin 0.3.0, default
// user 0.4.0, CloseStdin 0.5.2). Below 0.5.7, so uploads come as multipart/form-data.
inline constexpr const char* kEnvdVersion = "0.5.6";
inline constexpr const char* kDefaultUser = "user";
// Label keys reserved for this layer (hidden from E2B metadata).
inline constexpr const char* kTemplateLabel = "e2b.template";

// ---- Connect protocol ----------------------------------------------------------------------

// One envelope: [flags u8][length u32 big-endian][payload].
std::string Envelope(uint8_t flags, std::string_view payload);
inline constexpr uint8_t kEndStream = 0x02;
// The payload of the first envelope of a streaming request body; kInvalidArgument when the
// body is not one complete envelope (or is compressed: flag 0x01).
Result<std::string> FirstEnvelope(std::string_view body);
// Connect's error code for an HTTP status (of the guest or the daemon), and back.
std::string ConnectCode(int http_status);
int ConnectHttpStatus(std::string_view code);
// The end-of-stream envelope: `{}` or `{"error":{"code","message"}}`.
std::string EndStream(const std::optional<std::pair<std::string, std::string>>& error);

// ---- envd: processes -------------------------------------------------------------------------

// A guest exec/* event line -> a ProcessEvent wrapper ({"event":{...}}); nullopt for an event
// envd does not have.
std::optional<Json> ProcessEventFromGuest(const Json& line);
// StartRequest -> the guest's exec/start body, for `user` (`pty.size` -> `pty` {cols, rows}).
// kInvalidArgument for a malformed body.
Result<Json> ExecStartFromStartRequest(const Json& req, const std::string& user);
// A PTY message ({size: {cols, rows}}, of StartRequest and UpdateRequest) -> the guest's
// {cols, rows}; kInvalidArgument unless both are integers from 1 to 1000.
Result<Json> GuestPtySize(const Json& pty);
// A guest fs/watch line -> a WatchDirResponse ({"start":{}}, {"filesystem":{name, type}},
// {"keepalive":{}}); nullopt for lines envd does not have.
std::optional<Json> WatchEventFromGuest(const Json& line);
// ProcessSelector ({"pid":N} or {"tag":"..."}) -> the guest's {pid} / {tag}.
Result<Json> GuestSelector(const Json& req);
// Signal as an enum name ("SIGNAL_SIGKILL") or number -> a signal number; kInvalidArgument else.
Result<int> SignalNumber(const Json& v);
// The guest's exec/list data -> ListResponse.
Json ListResponseFromGuest(const Json& data);

// ---- envd: filesystem ------------------------------------------------------------------------

// A guest fs entry -> EntryInfo (type as FILE_TYPE_*, size as an int64 string, RFC 3339 time).
Json EntryInfoFromGuest(const Json& entry);
std::string Rfc3339(double unix_seconds);
// The home directory of `user` by E2B's convention (root: /root, else /home/USER).
std::string HomeOf(const std::string& user);
// `path` made absolute: relative paths are relative to the user's home, as in envd.
std::string ResolvePath(const std::string& path, const std::string& user);
// The username of `Authorization: Basic base64("user:")`; nullopt when absent or malformed.
std::optional<std::string> BasicUser(const std::string& authorization);

// ---- control plane ---------------------------------------------------------------------------

// The per-sandbox envd access token, derived from the guest's secret token (so it needs no
// storage and survives daemon restarts).
std::string EnvdAccessToken(const std::string& guest_token);
// `{"code": N, "message": "..."}`: E2B's error body on every status.
std::string ApiErrorBody(int status, const std::string& message);
// Native SandboxJson -> Sandbox (create/connect), SandboxDetail and ListedSandbox (get/list).
// `domain`: AGENTBOX_DOMAIN (null in the answer when empty: the SDK then uses its own default).
Json SandboxFromNative(const Json& native, const std::string& envd_token,
                       const std::string& domain = "");
Json DetailFromNative(const Json& native, const std::string& envd_token);
// Native GET /v1/sandboxes/{id}/metrics data -> E2B's [SandboxMetric] (one reading).
Json MetricsFromNative(const Json& native);
// E2B metadata from native labels (reserved keys dropped).
Json MetadataFromLabels(const Json& labels);
// The list's `metadata` query parameter: URL-encoded `k=v&k2=v2` (itself URL-encoded once
// more by the SDK). kInvalidArgument for a pair without '='.
Result<std::map<std::string, std::string>> ParseMetadataFilter(const std::string& value);

// Control plane create body -> native POST /v1/sandboxes body. `templates` maps template ids
// to images ("" = the default image); kNotFound for an unknown template.
struct CreateTranslation {
  Json native;
  std::string template_id;
};
Result<CreateTranslation> NativeCreateBody(const Json& body,
                                           const std::map<std::string, std::string>& templates,
                                           int64_t default_timeout_s);

// Why a sandbox of `backend` in `run_mode` (SandboxSpec::run_mode) cannot serve envd calls, or ""
// when it can: cloudrun job mode has no guest that outlives a command. Its envd calls (all but
// /health) answer 501 `unimplemented` with this, the SDK's SandboxError.
std::string EnvdUnsupported(const std::string& backend, const std::string& run_mode);

}  // namespace agentbox::daemon::e2b
