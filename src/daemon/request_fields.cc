#include "daemon/request_fields.h"

namespace agentbox::daemon {

Result<std::vector<UnknownField>> CheckCreateFields(const Json& body) {
  static const FieldSchema kBody =
      FieldSchema::Reject({"image", "backend", "subject", "network", "ttl_s", "limits", "env",
                           "labels", "cloudrun_mode", "read_only_root", "egress"});
  static const FieldSchema kLimits =
      FieldSchema::Reject({"memory_mb", "cpus", "pids", "tmp_mb", "open_files", "disk_bytes"});
  if (auto top = CheckKnownFields(body, kBody); !top) {
    return top;
  }
  if (auto it = body.find("limits"); it != body.end()) {
    return CheckKnownFields(*it, kLimits, "limits");
  }
  return std::vector<UnknownField>{};
}

Result<std::vector<UnknownField>> CheckTimeoutFields(const Json& body) {
  static const FieldSchema kBody = FieldSchema::Reject({"ttl_s"});
  return CheckKnownFields(body, kBody);
}

Result<std::vector<UnknownField>> CheckFlagsFields(const Json& body) {
  static const FieldSchema kBody = FieldSchema::Reject({"flags", "force"});
  return CheckKnownFields(body, kBody);
}

Result<std::vector<UnknownField>> CheckValidationFields(const Json& body) {
  static const FieldSchema kBody = FieldSchema::Reject({"passed", "checks"});
  return CheckKnownFields(body, kBody);
}

Result<std::vector<UnknownField>> CheckPullFields(const Json& body) {
  static const FieldSchema kBody = FieldSchema::Warn({"image", "backend"});
  return CheckKnownFields(body, kBody);
}

}  // namespace agentbox::daemon
