#include "backends/jail/sandbox_record.h"

#include "backends/jail/fs_util.h"

namespace agentbox::jail {
namespace {

Json IdentityToJson(const ProcessIdentity& p) {
  return {{"pid", p.pid}, {"start_time", p.start_time}, {"boot_id", p.boot_id}};
}

ProcessIdentity IdentityFromJson(const Json& j) {
  return {j.at("pid").get<pid_t>(), j.at("start_time").get<uint64_t>(),
          j.at("boot_id").get<std::string>()};
}

}  // namespace

Json SandboxRecordToJson(const SandboxRecord& r) {
  Json spec = {{"image", r.spec.image},
               {"env", r.spec.env},
               {"limits", LimitsToJson(r.spec.limits)},
               {"network", NetworkModeName(r.spec.network)},
               {"labels", r.spec.labels},
               {"owner", r.spec.owner},
               {"ttl_s", r.spec.ttl_s}};
  if (r.spec.egress) {
    spec["egress"] = EgressPolicyToJson(*r.spec.egress);
  }
  Json out = {{"version", 1},
          {"id", r.id},
          {"backend", "jail"},
          {"spec", spec},
          {"created_at", r.created_at},
          {"expires_at", r.expires_at},
          {"helper", IdentityToJson(r.helper)},
          {"init", IdentityToJson(r.init)},
          {"cgroups", r.cgroups},
          {"host_uid", r.host_uid},
          {"host_gid", r.host_gid},
          {"id_count", r.id_count},
          {"uid_slot", r.uid_slot},
          {"token", r.token},
          {"detail", r.detail}};
  if (!r.egress_link.empty()) {
    out["egress_link"] = r.egress_link;
  }
  return out;
}

Result<SandboxRecord> SandboxRecordFromJson(const Json& j) {
  try {
    if (j.at("version").get<int>() != 1) {
      return Fail(ErrorCode::kInternal, "sandbox record: unsupported version");
    }
    SandboxRecord r;
    r.id = j.at("id").get<std::string>();
    const Json& s = j.at("spec");
    r.spec.image = s.at("image").get<std::string>();
    r.spec.env = s.at("env").get<std::map<std::string, std::string>>();
    r.spec.limits = LimitsFromJson(s.at("limits"));
    r.spec.network = NetworkModeFromName(s.at("network").get<std::string>()).value_or(
        NetworkMode::kNone);
    if (auto e = s.find("egress"); e != s.end()) {
      auto policy = EgressPolicyFromJson(*e);
      if (!policy) {
        return Fail(ErrorCode::kInternal, "sandbox record: " + policy.error().message);
      }
      r.spec.egress = *policy;
    }
    r.spec.labels = s.at("labels").get<std::map<std::string, std::string>>();
    r.spec.owner = s.at("owner").get<std::string>();
    r.spec.ttl_s = s.at("ttl_s").get<int64_t>();
    r.created_at = j.at("created_at").get<double>();
    r.expires_at = j.at("expires_at").get<double>();
    r.helper = IdentityFromJson(j.at("helper"));
    r.init = IdentityFromJson(j.at("init"));
    r.cgroups = j.at("cgroups").get<std::vector<std::string>>();
    r.host_uid = j.at("host_uid").get<uint32_t>();
    r.host_gid = j.at("host_gid").get<uint32_t>();
    r.id_count = j.at("id_count").get<uint32_t>();
    r.uid_slot = j.at("uid_slot").get<int64_t>();
    r.token = j.at("token").get<std::string>();
    r.detail = j.at("detail").get<std::string>();
    r.egress_link = j.value("egress_link", "");
    return r;
  } catch (const Json::exception& e) {
    return Fail(ErrorCode::kInternal, std::string("sandbox record: ") + e.what());
  }
}

Result<void> SaveSandboxRecord(const std::string& path, const SandboxRecord& r) {
  return WriteFileDurable(path, DumpJson(SandboxRecordToJson(r)) + "\n", 0600);
}

Result<SandboxRecord> LoadSandboxRecord(const std::string& path) {
  auto text = ReadSmallFile(path);
  if (!text) {
    return Fail(text.error().code == ErrorCode::kNotFound
                    ? text.error()
                    : Error(ErrorCode::kInternal, text.error().message, text.error().sys_errno));
  }
  auto j = ParseJsonObject(*text);
  if (!j) {
    return Fail(ErrorCode::kInternal, path + ": " + j.error().message);
  }
  return SandboxRecordFromJson(*j);
}

}  // namespace agentbox::jail
