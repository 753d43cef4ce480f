#include "backends/jail/jail_config.h"

namespace agentbox::jail {
Json JailConfigToJson(const JailConfig& c) {
  Json j = Json::object();
  j["version"] = 1;
  j["id"] = c.id;
  j["hostname"] = c.hostname;
  j["log_cap_bytes"] = c.log_cap_bytes;
  j["user"] = {{"host_uid", c.user.host_uid},
               {"host_gid", c.user.host_gid},
               {"count", c.user.count},
               {"unprivileged", c.user.unprivileged}};
  j["mount"] = {{"root_dir", c.mount.root_dir},
                {"root_bytes", c.mount.root_bytes},
                {"system_source", c.mount.system_source},
                {"system_entries", c.mount.system_entries},
                {"system_writable", c.mount.system_writable},
                {"workspace_dir", c.mount.workspace_dir},
                {"run_dir", c.mount.run_dir},
                {"guest_binary", c.mount.guest_binary},
                {"tmp_bytes", c.mount.tmp_bytes},
                {"shm_bytes", c.mount.shm_bytes},
                {"overlay",
                 {{"lower_dirs", c.mount.overlay.lower_dirs},
                  {"upper_dir", c.mount.overlay.upper_dir},
                  {"work_dir", c.mount.overlay.work_dir}}},
                {"read_only_root", c.mount.read_only_root},
                {"resolv_conf", c.mount.resolv_conf}};
  for (const auto& x : c.mount.extra) {
    j["mount"]["extra"].push_back(
        {{"host_path", x.host_path}, {"target", x.target}, {"writable", x.writable}});
  }
  j["net"] = {{"share_host", c.net.share_host}};
  j["cgroup"] = {{"name", c.cgroup.name},
                 {"parent", c.cgroup.parent},
                 {"memory_bytes", OptToJson(c.cgroup.memory_bytes)},
                 {"pids", OptToJson(c.cgroup.pids)},
                 {"cpus", OptToJson(c.cgroup.cpus)},
                 {"cpu_weight", OptToJson(c.cgroup.cpu_weight)},
                 {"parent_cpu_weight", OptToJson(c.cgroup.parent_cpu_weight)}};
  j["rlimits"] = {{"core_bytes", c.rlimits.core_bytes},
                  {"open_files", OptToJson(c.rlimits.open_files)},
                  {"file_size_bytes", OptToJson(c.rlimits.file_size_bytes)}};
  j["caps"] = {{"keep", c.caps.keep}};
  j["seccomp"] = {{"enabled", c.seccomp.enabled}};
  j["exec"] = {
      {"path", c.exec.path}, {"argv", c.exec.argv}, {"env", c.exec.env}, {"cwd", c.exec.cwd}};
  return j;
}

Result<JailConfig> JailConfigFromJson(const Json& j) {
  // The file is ours (written by the backend), so a mismatch is a version skew between the
  // daemon and the helper: report which field, nothing more.
  try {
    JailConfig c;
    if (j.at("version").get<int>() != 1) {
      return Fail(ErrorCode::kInvalidArgument, "jail config: unsupported version");
    }
    c.id = j.at("id").get<std::string>();
    c.hostname = j.at("hostname").get<std::string>();
    c.log_cap_bytes = j.at("log_cap_bytes").get<uint64_t>();
    const Json& u = j.at("user");
    c.user.host_uid = u.at("host_uid").get<uint32_t>();
    c.user.host_gid = u.at("host_gid").get<uint32_t>();
    c.user.count = u.at("count").get<uint32_t>();
    c.user.unprivileged = u.at("unprivileged").get<bool>();
    const Json& m = j.at("mount");
    c.mount.root_dir = m.at("root_dir").get<std::string>();
    c.mount.root_bytes = m.at("root_bytes").get<uint64_t>();
    c.mount.system_source = m.at("system_source").get<std::string>();
    c.mount.system_entries = m.at("system_entries").get<std::vector<std::string>>();
    c.mount.system_writable = m.at("system_writable").get<bool>();
    c.mount.workspace_dir = m.at("workspace_dir").get<std::string>();
    c.mount.run_dir = m.at("run_dir").get<std::string>();
    c.mount.guest_binary = m.at("guest_binary").get<std::string>();
    c.mount.tmp_bytes = m.at("tmp_bytes").get<uint64_t>();
    c.mount.shm_bytes = m.at("shm_bytes").get<uint64_t>();
    // Absent in the configs of sandboxes created before overlay roots (restarted by a newer
    // helper): their tarball roots are plain writable directories.
    if (m.contains("overlay")) {
      const Json& o = m.at("overlay");
      c.mount.overlay.lower_dirs = o.at("lower_dirs").get<std::vector<std::string>>();
      c.mount.overlay.upper_dir = o.at("upper_dir").get<std::string>();
      c.mount.overlay.work_dir = o.at("work_dir").get<std::string>();
    }
    c.mount.read_only_root = m.value("read_only_root", false);
    c.mount.resolv_conf = m.value("resolv_conf", "");
    for (const auto& x : m.value("extra", Json::array())) {
      c.mount.extra.push_back({x.at("host_path").get<std::string>(),
                               x.at("target").get<std::string>(), x.at("writable").get<bool>()});
    }
    c.net.share_host = j.at("net").at("share_host").get<bool>();
    const Json& g = j.at("cgroup");
    c.cgroup.name = g.at("name").get<std::string>();
    c.cgroup.parent = g.at("parent").get<std::string>();
    c.cgroup.memory_bytes = OptFromJson<uint64_t>(g, "memory_bytes");
    c.cgroup.pids = OptFromJson<uint32_t>(g, "pids");
    c.cgroup.cpus = OptFromJson<double>(g, "cpus");
    c.cgroup.cpu_weight = OptFromJson<uint32_t>(g, "cpu_weight");
    c.cgroup.parent_cpu_weight = OptFromJson<uint32_t>(g, "parent_cpu_weight");
    const Json& r = j.at("rlimits");
    c.rlimits.core_bytes = r.at("core_bytes").get<uint64_t>();
    c.rlimits.open_files = OptFromJson<uint64_t>(r, "open_files");
    c.rlimits.file_size_bytes = OptFromJson<uint64_t>(r, "file_size_bytes");
    c.caps.keep = j.at("caps").at("keep").get<std::vector<int>>();
    c.seccomp.enabled = j.at("seccomp").at("enabled").get<bool>();
    const Json& e = j.at("exec");
    c.exec.path = e.at("path").get<std::string>();
    c.exec.argv = e.at("argv").get<std::vector<std::string>>();
    c.exec.env = e.at("env").get<std::vector<std::string>>();
    c.exec.cwd = e.at("cwd").get<std::string>();
    return c;
  } catch (const Json::exception& ex) {
    return Fail(ErrorCode::kInvalidArgument, std::string("jail config: ") + ex.what());
  }
}

}  // namespace agentbox::jail
