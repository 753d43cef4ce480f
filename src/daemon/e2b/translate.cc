#include "daemon/e2b/translate.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "common/base64.h"
#include "common/json_util.h"
#include "common/strings.h"
#include "daemon/auth.h"

namespace agentbox::daemon::e2b {

std::string Envelope(uint8_t flags, std::string_view payload) {
  std::string out;
  out.reserve(5 + payload.size());
  const auto n = static_cast<uint32_t>(payload.size());
  out += static_cast<char>(flags);
  out += static_cast<char>((n >> 24) & 0xff);
  out += static_cast<char>((n >> 16) & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>(n & 0xff);
  out.append(payload);
  return out;
}

Result<std::string> FirstEnvelope(std::string_view body) {
  if (body.size() < 5) {
    return Fail(ErrorCode::kInvalidArgument, "request body is not a Connect envelope");
  }
  const auto flags = static_cast<uint8_t>(body[0]);
  const uint32_t n = (static_cast<uint32_t>(static_cast<unsigned char>(body[1])) << 24) |
                     (static_cast<uint32_t>(static_cast<unsigned char>(body[2])) << 16) |
                     (static_cast<uint32_t>(static_cast<unsigned char>(body[3])) << 8) |
                     static_cast<uint32_t>(static_cast<unsigned char>(body[4]));
  if (flags & 0x01) {
    return Fail(ErrorCode::kInvalidArgument, "compressed Connect envelopes are not supported");
  }
  if (body.size() - 5 < n) {
    return Fail(ErrorCode::kInvalidArgument, "truncated Connect envelope");
  }
  return std::string(body.substr(5, n));
}

std::string ConnectCode(int s) {
  switch (s) {
    case 400:
    case 422:
      return "invalid_argument";
    case 401:
      return "unauthenticated";
    case 403:
      return "permission_denied";
    case 404:
      return "not_found";
    case 409:
      return "failed_precondition";
    case 413:
    case 429:
      return "resource_exhausted";
    case 501:
      return "unimplemented";
    case 502:
    case 503:
    case 507:
      return "unavailable";
    case 504:
      return "deadline_exceeded";
    default:
      return s >= 200 && s < 300 ? "ok" : "internal";
  }
}

int ConnectHttpStatus(std::string_view code) {
  static const std::map<std::string_view, int> kStatus = {{"canceled", 499},
                                                          {"unknown", 500},
                                                          {"invalid_argument", 400},
                                                          {"deadline_exceeded", 504},
                                                          {"not_found", 404},
                                                          {"already_exists", 409},
                                                          {"permission_denied", 403},
                                                          {"resource_exhausted", 429},
                                                          {"failed_precondition", 400},
                                                          {"aborted", 409},
                                                          {"out_of_range", 400},
                                                          {"unimplemented", 501},
                                                          {"internal", 500},
                                                          {"unavailable", 503},
                                                          {"data_loss", 500},
                                                          {"unauthenticated", 401}};
  auto it = kStatus.find(code);
  return it == kStatus.end() ? 500 : it->second;
}

std::string EndStream(const std::optional<std::pair<std::string, std::string>>& error) {
  Json j = Json::object();
  if (error) {
    j["error"] = {{"code", error->first}, {"message", error->second}};
  }
  return Envelope(kEndStream, DumpJson(j));
}

std::optional<Json> ProcessEventFromGuest(const Json& line) {
  if (!line.is_object()) {
    return std::nullopt;
  }
  const std::string ev = ValueOr(line, "event", "");
  Json inner;
  if (ev == "start") {
    inner = {{"start", {{"pid", ValueOr(line, "pid", int64_t{0})}}}};
  } else if (ev == "stdout" || ev == "stderr" || ev == "pty") {
    inner = {{"data", {{ev, ValueOr(line, "data", "")}}}};
  } else if (ev == "keepalive") {
    inner = {{"keepalive", Json::object()}};
  } else if (ev == "end") {
    Json end = {{"exitCode", ValueOr(line, "exit_code", -1)},
                {"exited", ValueOr(line, "exited", false)},
                {"status", ValueOr(line, "status", "")}};
    if (line.contains("error")) {
      end["error"] = line["error"];
    }
    inner = {{"end", std::move(end)}};
  } else {
    return std::nullopt;
  }
  return Json{{"event", std::move(inner)}};
}

namespace {

// proto3 JSON accepts lowerCamelCase and the original snake_case names.
const Json* Field(const Json& obj, const char* camel, const char* snake = nullptr) {
  if (!obj.is_object()) {
    return nullptr;
  }
  if (auto it = obj.find(camel); it != obj.end() && !it->is_null()) {
    return &*it;
  }
  if (snake) {
    if (auto it = obj.find(snake); it != obj.end() && !it->is_null()) {
      return &*it;
    }
  }
  return nullptr;
}

}  // namespace

Result<Json> ExecStartFromStartRequest(const Json& req, const std::string& user) {
  if (!req.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "StartRequest must be a JSON object");
  }
  const Json* proc = Field(req, "process");
  if (!proc || !proc->is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "StartRequest.process is required");
  }
  const Json* cmd = Field(*proc, "cmd");
  if (!cmd || !cmd->is_string() || cmd->get<std::string>().empty()) {
    return Fail(ErrorCode::kInvalidArgument, "process.cmd is required");
  }
  // The default user may lack an account where /etc is read-only (docs/e2b.md).
  Json out = {{"cmd", *cmd}, {"user", user}, {"user_fallback", user == kDefaultUser}};
  if (const Json* args = Field(*proc, "args")) {
    if (!args->is_array()) {
      return Fail(ErrorCode::kInvalidArgument, "process.args must be an array of strings");
    }
    out["args"] = *args;
  }
  if (const Json* envs = Field(*proc, "envs")) {
    if (!envs->is_object()) {
      return Fail(ErrorCode::kInvalidArgument, "process.envs must be a map of strings");
    }
    out["envs"] = *envs;
  }
  if (const Json* cwd = Field(*proc, "cwd"); cwd && cwd->is_string() && !cwd->empty()) {
    out["cwd"] = ResolvePath(cwd->get<std::string>(), user);
  }
  if (const Json* in = Field(req, "stdin"); in && in->is_boolean()) {
    out["stdin"] = *in;
  }
  if (const Json* tag = Field(req, "tag"); tag && tag->is_string()) {
    out["tag"] = *tag;
  }
  if (const Json* pty = Field(req, "pty")) {
    auto size = GuestPtySize(*pty);
    if (!size) {
      return Fail(size.error());
    }
    out["pty"] = *size;
  }
  return out;
}

Result<Json> GuestPtySize(const Json& pty) {
  const Json* size = Field(pty, "size");
  if (!size || !size->is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "pty.size {cols, rows} is required");
  }
  Json out = Json::object();
  for (const char* k : {"cols", "rows"}) {
    const Json* v = Field(*size, k);
    if (!v || !v->is_number_integer() || v->get<int64_t>() < 1 || v->get<int64_t>() > 1000) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string("pty.size.") + k + " must be an integer from 1 to 1000");
    }
    out[k] = *v;
  }
  return out;
}

std::optional<Json> WatchEventFromGuest(const Json& line) {
  if (!line.is_object()) {
    return std::nullopt;
  }
  const std::string ev = ValueOr(line, "event", "");
  if (ev == "start") {
    return Json{{"start", Json::object()}};
  }
  if (ev == "keepalive") {
    return Json{{"keepalive", Json::object()}};
  }
  if (ev != "fs") {
    return std::nullopt;
  }
  static const std::map<std::string, std::string> kTypes = {{"create", "EVENT_TYPE_CREATE"},
                                                            {"write", "EVENT_TYPE_WRITE"},
                                                            {"remove", "EVENT_TYPE_REMOVE"},
                                                            {"rename", "EVENT_TYPE_RENAME"},
                                                            {"chmod", "EVENT_TYPE_CHMOD"}};
  auto type = kTypes.find(ValueOr(line, "type", ""));
  if (type == kTypes.end()) {
    return std::nullopt;
  }
  return Json{{"filesystem", {{"name", ValueOr(line, "name", "")}, {"type", type->second}}}};
}

Result<Json> GuestSelector(const Json& req) {
  const Json* proc = Field(req, "process");
  if (!proc || !proc->is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "process selector is required");
  }
  if (const Json* pid = Field(*proc, "pid")) {
    // uint32 may come as a number or a string.
    if (pid->is_number_unsigned() || pid->is_number_integer()) {
      return Json{{"pid", pid->get<int64_t>()}};
    }
    if (pid->is_string()) {
      char* end = nullptr;
      const std::string s = pid->get<std::string>();
      const long long v = std::strtoll(s.c_str(), &end, 10);
      if (end && *end == '\0' && v > 0) {
        return Json{{"pid", v}};
      }
    }
    return Fail(ErrorCode::kInvalidArgument, "process.pid must be a number");
  }
  if (const Json* tag = Field(*proc, "tag"); tag && tag->is_string()) {
    return Json{{"tag", *tag}};
  }
  return Fail(ErrorCode::kInvalidArgument, "process selector needs a pid or a tag");
}

Result<int> SignalNumber(const Json& v) {
  if (v.is_number_integer() && (v.get<int64_t>() == 9 || v.get<int64_t>() == 15)) {
    return static_cast<int>(v.get<int64_t>());
  }
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "SIGNAL_SIGKILL" || s == "9") {
      return 9;
    }
    if (s == "SIGNAL_SIGTERM" || s == "15") {
      return 15;
    }
  }
  return Fail(ErrorCode::kInvalidArgument, "signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM");
}

std::string Rfc3339(double t) {
  // A guest's mtime is untrusted: a non-finite or out-of-range number would overflow time_t
  // (found by fuzz_connect_envelope). Times are kept within years 0001..9999, as RFC 3339 is.
  constexpr double kFirst = -62135596800.0;  // 0001-01-01T00:00:00Z
  constexpr double kLast = 253402300799.0;   // 9999-12-31T23:59:59Z
  t = std::isfinite(t) ? std::clamp(t, kFirst, kLast) : 0.0;
  const auto secs = static_cast<time_t>(std::floor(t));
  const auto nanos = static_cast<long>(std::llround((t - static_cast<double>(secs)) * 1e9));
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[64];
  // %Y would not pad years before 1000 to four digits, as RFC 3339 requires.
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  std::string out = buf;
  if (nanos > 0 && nanos < 1000000000) {
    char frac[16];
    std::snprintf(frac, sizeof(frac), ".%09ld", nanos);
    out += frac;
  }
  return out + "Z";
}

namespace {

// Fields of a guest's answer are read with ValueOr, without trusting its shape (the guest runs
// in the sandbox): a missing field, a field of another type, a number out of range or an entry
// that is not an object gives the default instead of nlohmann's type_error or an out-of-range
// cast (found by fuzz_connect_envelope).
std::string GuestString(const Json& e, const char* key) { return ValueOr(e, key, ""); }

template <class T>
T GuestNumber(const Json& e, const char* key) {
  return ValueOr<T>(e, key, T{});
}

}  // namespace

Json ListResponseFromGuest(const Json& data) {
  Json out = Json::array();
  const auto processes = data.is_object() ? data.find("processes") : data.end();
  if (processes != data.end() && processes->is_array()) {
    for (const auto& p : *processes) {
      if (!p.is_object()) {
        continue;
      }
      const auto args = p.find("args");
      const auto envs = p.find("envs");
      Json config = {{"cmd", GuestString(p, "cmd")},
                     {"args", args != p.end() && args->is_array() ? *args : Json::array()},
                     {"envs", envs != p.end() && envs->is_object() ? *envs : Json::object()}};
      if (std::string cwd = GuestString(p, "cwd"); !cwd.empty()) {
        config["cwd"] = std::move(cwd);
      }
      Json j = {{"config", std::move(config)}, {"pid", GuestNumber<int64_t>(p, "pid")}};
      if (auto tag = p.find("tag"); tag != p.end() && tag->is_string()) {
        j["tag"] = *tag;
      }
      out.push_back(std::move(j));
    }
  }
  return Json{{"processes", std::move(out)}};
}

Json EntryInfoFromGuest(const Json& e) {
  const std::string type = GuestString(e, "type");
  Json out = {{"name", GuestString(e, "name")},
              {"type", type == "file"        ? "FILE_TYPE_FILE"
                       : type == "directory" ? "FILE_TYPE_DIRECTORY"
                       : type == "symlink"   ? "FILE_TYPE_SYMLINK"
                                             : "FILE_TYPE_UNSPECIFIED"},
              {"path", GuestString(e, "path")},
              {"size", std::to_string(GuestNumber<int64_t>(e, "size"))},
              {"mode", GuestNumber<int>(e, "mode")},
              {"permissions", GuestString(e, "permissions")},
              {"owner", GuestString(e, "owner")},
              {"group", GuestString(e, "group")},
              {"modifiedTime", Rfc3339(GuestNumber<double>(e, "mtime"))}};
  if (e.is_object() && e.contains("symlink_target") && e["symlink_target"].is_string()) {
    out["symlinkTarget"] = e["symlink_target"];
  }
  return out;
}

std::string HomeOf(const std::string& user) { return user == "root" ? "/root" : "/home/" + user; }

std::string ResolvePath(const std::string& path, const std::string& user) {
  if (path.starts_with("/")) {
    return path;
  }
  if (path.empty() || path == "~") {
    return HomeOf(user);
  }
  if (path.starts_with("~/")) {
    return HomeOf(user) + path.substr(1);
  }
  return HomeOf(user) + "/" + path;
}

std::optional<std::string> BasicUser(const std::string& h) {
  if (h.size() < 6 || AsciiLower(h.substr(0, 6)) != "basic ") {
    return std::nullopt;
  }
  auto decoded = Base64Decode(h.substr(6));
  if (!decoded) {
    return std::nullopt;
  }
  const size_t colon = decoded->find(':');
  std::string user = colon == std::string::npos ? *decoded : decoded->substr(0, colon);
  if (user.empty() || user.size() > 64 ||
      user.find_first_of("/:\n\r\t \0", 0, 7) != std::string::npos) {
    return std::nullopt;
  }
  return user;
}

std::string EnvdAccessToken(const std::string& guest_token) {
  return Sha256Hex("agentbox-e2b-envd:" + guest_token).substr(0, 48);
}

std::string ApiErrorBody(int status, const std::string& message) {
  return DumpJson(Json{{"code", status}, {"message", message}});
}

Json MetadataFromLabels(const Json& labels) {
  Json out = Json::object();
  if (labels.is_object()) {
    for (const auto& [k, v] : labels.items()) {
      if (!k.starts_with("e2b.")) {
        out[k] = v;
      }
    }
  }
  return out;
}

namespace {

std::string TemplateOf(const Json& native) {
  const Json labels = ValueOr(native, "labels", Json::object());
  if (labels.is_object() && labels.contains(kTemplateLabel)) {
    return labels[kTemplateLabel].get<std::string>();
  }
  const std::string image = ValueOr(native, "image", "");
  return image.empty() ? "base" : image;
}

}  // namespace

Json SandboxFromNative(const Json& native, const std::string& envd_token,
                       const std::string& domain) {
  const std::string tmpl = TemplateOf(native);
  return Json{{"templateID", tmpl},
              {"sandboxID", ValueOr(native, "id", "")},
              {"clientID", "agentbox"},
              {"alias", tmpl},
              {"envdVersion", kEnvdVersion},
              {"envdAccessToken", envd_token},
              {"domain", domain.empty() ? Json(nullptr) : Json(domain)}};
}

Json DetailFromNative(const Json& native, const std::string& envd_token) {
  Json out = SandboxFromNative(native, envd_token);
  const Json limits = ValueOr(native, "limits", Json::object());
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  const int64_t host_mb =
      static_cast<int64_t>(::sysconf(_SC_PHYS_PAGES)) * ::sysconf(_SC_PAGE_SIZE) >> 20;
  out["startedAt"] = Rfc3339(ValueOr(native, "created_at", 0.0));
  const double expires = ValueOr(native, "expires_at", 0.0);
  out["endAt"] = Rfc3339(expires > 0 ? expires : ValueOr(native, "created_at", 0.0) + 7 * 86400);
  out["cpuCount"] = limits.contains("cpus")
                        ? static_cast<int64_t>(std::ceil(limits["cpus"].get<double>()))
                        : static_cast<int64_t>(cpus > 0 ? cpus : 1);
  out["memoryMB"] = limits.contains("memory_mb") ? limits["memory_mb"].get<int64_t>() : host_mb;
  out["diskSizeMB"] =
      limits.contains("disk_bytes") ? limits["disk_bytes"].get<int64_t>() >> 20 : int64_t{0};
  out["state"] = "running";
  out["metadata"] = MetadataFromLabels(ValueOr(native, "labels", Json::object()));
  return out;
}

Result<std::map<std::string, std::string>> ParseMetadataFilter(const std::string& value) {
  std::map<std::string, std::string> out;
  // The SDK encodes each key and value, joins them as a query string, and the query
  // serializer encodes the whole once more: decode the outer layer, split, decode each part.
  const std::string outer = PercentDecode(value, true);
  size_t pos = 0;
  while (pos < outer.size()) {
    size_t amp = outer.find('&', pos);
    if (amp == std::string::npos) {
      amp = outer.size();
    }
    const std::string pair = outer.substr(pos, amp - pos);
    pos = amp + 1;
    if (pair.empty()) {
      continue;
    }
    const size_t eq = pair.find('=');
    if (eq == std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument, "metadata filter '" + pair + "' is not key=value");
    }
    out[PercentDecode(pair.substr(0, eq), true)] = PercentDecode(pair.substr(eq + 1), true);
  }
  return out;
}

Result<CreateTranslation> NativeCreateBody(const Json& body,
                                           const std::map<std::string, std::string>& templates,
                                           int64_t default_timeout_s) {
  if (!body.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "body must be a JSON object");
  }
  CreateTranslation t;
  t.template_id = "base";
  if (const Json* tmpl = Field(body, "templateID")) {
    if (!tmpl->is_string() || tmpl->get<std::string>().empty()) {
      return Fail(ErrorCode::kInvalidArgument, "templateID must be a non-empty string");
    }
    t.template_id = tmpl->get<std::string>();
  }
  auto it = templates.find(t.template_id);
  if (it == templates.end()) {
    return Fail(ErrorCode::kNotFound,
                "template '" + t.template_id +
                    "' not found (agentboxd maps templates to images with AGENTBOX_E2B_TEMPLATES)");
  }
  int64_t timeout = default_timeout_s;
  if (const Json* to = Field(body, "timeout")) {
    if (!to->is_number_integer() || to->get<int64_t>() < 0) {
      return Fail(ErrorCode::kInvalidArgument, "timeout must be a number of seconds");
    }
    timeout = to->get<int64_t>();
  }
  if (const Json* pause = Field(body, "autoPause"); pause && pause->is_boolean() && *pause) {
    return Fail(ErrorCode::kInvalidArgument, "autoPause is not supported by agentboxd");
  }
  Json labels = Json::object();
  if (const Json* md = Field(body, "metadata")) {
    if (!md->is_object()) {
      return Fail(ErrorCode::kInvalidArgument, "metadata must be a map of strings");
    }
    for (const auto& [k, v] : md->items()) {
      if (!v.is_string() || k.starts_with("e2b.")) {
        return Fail(ErrorCode::kInvalidArgument,
                    "metadata values must be strings and keys must not start with 'e2b.'");
      }
      labels[k] = v;
    }
  }
  labels[kTemplateLabel] = t.template_id;
  // envd needs a guest that lives as long as the sandbox (processes with pids, streams, stdin,
  // files in /home/user): on cloudrun that is session mode, whatever the daemon's default
  // (EnvdUnsupported below). Other backends ignore the field.
  t.native = {{"ttl_s", std::max<int64_t>(timeout, 10)},
              {"labels", std::move(labels)},
              {"cloudrun_mode", "session"}};
  if (!it->second.empty()) {
    t.native["image"] = it->second;
  }
  if (const Json* env = Field(body, "envVars")) {
    if (!env->is_object()) {
      return Fail(ErrorCode::kInvalidArgument, "envVars must be a map of strings");
    }
    t.native["env"] = *env;
  }
  return t;
}

Json MetricsFromNative(const Json& native) {
  const double t = ValueOr(native, "timestamp", 0.0);
  const auto bytes = [&](const char* key) { return ValueOr(native, key, uint64_t{0}); };
  Json one = {{"timestamp", Rfc3339(t)},
              {"timestampUnix", static_cast<int64_t>(t)},
              // E2B counts whole cores; a fractional CPU limit is rounded up as in SandboxDetail.
              {"cpuCount", static_cast<int64_t>(std::ceil(ValueOr(native, "cpu_count", 1.0)))},
              {"cpuUsedPct", ValueOr(native, "cpu_used_pct", 0.0)},
              {"memUsed", bytes("mem_used_bytes")},
              {"memTotal", bytes("mem_total_bytes")},
              {"memCache", bytes("mem_cache_bytes")},
              {"diskUsed", bytes("disk_used_bytes")},
              {"diskTotal", bytes("disk_total_bytes")}};
  return Json::array({one});
}

std::string EnvdUnsupported(const std::string& backend, const std::string& run_mode) {
  if (backend != "cloudrun" || run_mode != "job") {
    return "";
  }
  return "this sandbox runs in cloudrun job mode, which cannot serve envd: each command is its "
         "own Cloud Run execution that ends with it, so there is no process to stream, signal, "
         "give input or a terminal to, and files persist only under /workspace (served by the "
         "native API). The E2B control plane works on it (getInfo, setTimeout, list, kill); "
         "for envd create the sandbox through the E2B API or with cloudrun_mode \"session\" "
         "(docs/e2b.md)";
}

}  // namespace agentbox::daemon::e2b
