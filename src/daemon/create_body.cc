#include "daemon/create_body.h"

namespace agentbox::daemon {

Result<ResourceLimits> ParseLimits(const Json& body) {
  ResourceLimits l;
  auto it = body.find("limits");
  if (it == body.end() || it->is_null()) {
    return l;
  }
  if (!it->is_object()) {
    return Fail(FieldError("limits", "must be an object"));
  }
  JsonFields f(*it);
  auto mem = f.OptInt("memory_mb", 16, 1 << 20);
  auto cpus = f.OptNumber("cpus", 0.01, 1024);
  auto pids = f.OptInt("pids", 8, 1 << 22);
  auto tmp = f.OptInt("tmp_mb", 1, 1 << 20);
  auto nofile = f.OptInt("open_files", 16, 1 << 20);
  auto disk = f.OptInt("disk_bytes", 16ll << 20, 16ll << 40);
  for (const auto* r : {&mem, &tmp, &pids, &nofile, &disk}) {
    if (!*r) {
      Error e = r->error();
      e.field = "limits." + e.field;
      return Fail(e);
    }
  }
  if (!cpus) {
    return Fail(cpus.error());
  }
  if (*mem) {
    l.memory_bytes = static_cast<uint64_t>(**mem) << 20;
  }
  if (*tmp) {
    l.tmp_bytes = static_cast<uint64_t>(**tmp) << 20;
  }
  if (*pids) {
    l.pids = static_cast<uint32_t>(**pids);
  }
  if (*nofile) {
    l.open_files = static_cast<uint32_t>(**nofile);
  }
  if (*disk) {
    l.disk_bytes = static_cast<uint64_t>(**disk);
  }
  l.cpus = *cpus;
  return l;
}

Result<std::map<std::string, std::string>> ParseStringMap(const Json& body, const char* key,
                                                          size_t max_entries) {
  JsonFields f(body);
  auto kv = f.OptStringMap(key);
  if (!kv) {
    return Fail(kv.error());
  }
  if (kv->size() > max_entries) {
    return Fail(FieldError(key, "has more than " + std::to_string(max_entries) + " entries"));
  }
  std::map<std::string, std::string> out;
  for (auto& [k, v] : *kv) {
    if (k.empty() || k.size() > 256 || v.size() > 65536 || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos) {
      return Fail(FieldError(key, "keys must be 1..256 bytes, values at most 64 KiB, no NUL"));
    }
    out[k] = v;
  }
  return out;
}

Result<void> ParseNetwork(const Json& body, const std::string& network, bool trusted,
                          SandboxSpec* spec) {
  auto mode = NetworkModeFromName(network);
  if (!mode) {
    return Fail(ErrorCode::kInvalidArgument,
                "field 'network' must be \"none\", \"egress\" or \"host\" (got \"" +
                    network.substr(0, 64) + "\")");
  }
  if (*mode == NetworkMode::kHost && !trusted) {
    return Fail(ErrorCode::kForbidden, "network \"host\" is only allowed on the local socket");
  }
  spec->network = *mode;
  auto it = body.find("egress");
  if (it == body.end() || it->is_null()) {
    return {};
  }
  if (*mode != NetworkMode::kEgress) {
    return Fail(ErrorCode::kInvalidArgument,
                "field 'egress' (a policy) needs \"network\": \"egress\"");
  }
  auto policy = EgressPolicyFromJson(*it, "egress");
  if (!policy) {
    return Fail(policy.error());
  }
  spec->egress = *policy;
  return {};
}

}  // namespace agentbox::daemon
