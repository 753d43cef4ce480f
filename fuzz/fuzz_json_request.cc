// JSON request bodies as the daemon and the guest parse them, before any handler acts on them.
// The first line of the input picks nothing: the whole input is the body, and every parser that
// reads a request object runs on it (each must answer a value or a 4xx error, never crash).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/json_util.h"
#include "common/known_fields.h"
#include "daemon/create_body.h"
#include "daemon/request_fields.h"
#include "guest/request_fields.h"

namespace {

using agentbox::Json;
using agentbox::JsonFields;
using agentbox::UnknownField;

void Consume(const agentbox::Result<std::vector<UnknownField>>& r,
             const std::vector<std::string_view>& known) {
  if (r) {
    for (const auto& f : *r) {
      (void)f.Path();
      (void)f.Describe();
    }
    (void)agentbox::WarningHeaderValues(*r);
  } else {
    (void)r.error().message;
  }
  (void)known;
}

const std::vector<std::string_view>& GuestPaths() {
  static const std::vector<std::string_view> paths = {
      "/api/v1/shell/exec",    "/api/v1/shell/view",    "/api/v1/shell/wait",
      "/api/v1/shell/write",   "/api/v1/shell/kill",    "/api/v1/file/read",
      "/api/v1/file/write",    "/api/v1/file/replace",  "/api/v1/file/search",
      "/api/v1/file/find",     "/api/v1/file/exists",   "/api/v1/file/delete",
      "/api/v1/file/list",     "/api/v1/shell/run",     "/api/v1/shell/list",
      "/api/v1/shell/delete",  "/api/v1/shell/state",   "/api/v1/shell/restore",
      "/api/v1/process/start", "/api/v1/process/list",  "/api/v1/process/logs",
      "/api/v1/process/kill",  "/api/v1/unknown",       "/other"};
  return paths;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto parsed = agentbox::ParseJsonObject(body);
  if (!parsed) {
    return 0;
  }
  const Json& j = *parsed;
  (void)agentbox::DumpJson(j);

  // The daemon's bodies.
  namespace d = agentbox::daemon;
  Consume(d::CheckCreateFields(j), {});
  Consume(d::CheckTimeoutFields(j), {});
  Consume(d::CheckFlagsFields(j), {});
  Consume(d::CheckPullFields(j), {});
  Consume(d::CheckValidationFields(j), {});
  (void)d::ParseLimits(j);
  (void)d::ParseStringMap(j, "env", 1024);
  (void)d::ParseStringMap(j, "labels", 64);

  // The guest's bodies, and its upload form's field names (here: the body's keys).
  std::vector<std::string> names;
  for (const auto& [k, v] : j.items()) {
    names.push_back(k);
    (void)v;
  }
  for (std::string_view path : GuestPaths()) {
    Consume(agentbox::guest::CheckGuestFields(path, j), {});
  }
  Consume(agentbox::guest::CheckUploadFields(names), {});

  // Typed access as the handlers use it, on the body and on each nested object.
  auto access = [](const Json& obj) {
    JsonFields f(obj);
    for (const char* key : {"image", "id", "command", "path", "file", "ttl_s", "timeout", "cpus",
                            "env", "labels", "pty", "wait_seconds", "memory_mb"}) {
      (void)f.Has(key);
      (void)f.String(key);
      (void)f.NonEmptyString(key);
      (void)f.OptString(key);
      (void)f.OptInt(key, 10, 86400);
      (void)f.OptInt(key, INT64_MIN, INT64_MAX);
      (void)f.OptNumber(key, 0.01, 1024);
      (void)f.OptBool(key);
      (void)f.OptStringMap(key);
    }
  };
  access(j);
  for (const auto& [k, v] : j.items()) {
    if (v.is_object()) {
      access(v);
      agentbox::FieldSchema schema = agentbox::FieldSchema::Warn(
          {"memory_mb", "cpus", "pids", "tmp_mb", "open_files", "disk_bytes"}, {"memory_mb"});
      auto r = agentbox::CheckKnownFields(v, schema, k);
      Consume(r, schema.known);
      if (r) {
        for (const auto& f : *r) {
          (void)agentbox::UnknownFieldError(f, schema.known);
        }
      }
    }
  }
  return 0;
}
