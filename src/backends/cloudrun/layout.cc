#include "backends/cloudrun/layout.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "common/strings.h"
#include "guest/core/read_only_root.h"

namespace agentbox::cloudrun {
namespace layout {

std::string GuestDir(const std::string& sha256) { return "agentbox/guest/" + sha256; }
std::string GuestPath(const std::string& guest_dir) {
  return std::string(kGuestMount) + "/" + guest_dir.substr(std::string("agentbox/guest/").size()) +
         "/agentbox-guest";
}
std::string SandboxPrefix(const std::string& id) { return "sandboxes/" + id + "/"; }
std::string RecordObject(const std::string& id) { return SandboxPrefix(id) + "sandbox.json"; }
std::string WorkspacePrefix(const std::string& id) { return SandboxPrefix(id) + "workspace/"; }
std::string SessionsPrefix(const std::string& id) { return SandboxPrefix(id) + "sessions/"; }

std::string EncodeSessionId(const std::string& sid) {
  std::string out;
  for (size_t i = 0; i < sid.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(sid[i]);
    const bool safe = std::isalnum(c) || c == '_' || c == '-' || (c == '.' && i > 0);
    if (safe) {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string DecodeSessionId(const std::string& encoded) { return PercentDecode(encoded, false); }

std::string HeadObject(const std::string& id, const std::string& sid) {
  return SessionsPrefix(id) + EncodeSessionId(sid) + "/head.json";
}
std::string RunObject(const std::string& id, const std::string& sid, const std::string& run) {
  return SessionsPrefix(id) + EncodeSessionId(sid) + "/runs/" + run + ".json";
}
std::string RunPath(const std::string& sid, const std::string& run) {
  return std::string(kSessionsMount) + "/" + EncodeSessionId(sid) + "/runs/" + run + ".json";
}
std::string ContainerPathOf(const std::string& id, const std::string& object) {
  return std::string(kSessionsMount) + "/" + object.substr(SessionsPrefix(id).size());
}

std::string JobId(const std::string& sandbox_id) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : sandbox_id) {
    h = (h ^ c) * 16777619u;
  }
  std::string body;
  for (char c : AsciiLower(sandbox_id)) {
    body += ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) ? c : '-';
  }
  body = body.substr(0, 50);
  while (!body.empty() && body.back() == '-') {
    body.pop_back();
  }
  char hex[9];
  std::snprintf(hex, sizeof(hex), "%08x", h);
  return "ab-" + (body.empty() ? std::string() : body + "-") + hex;
}

std::string LabelValue(const std::string& s) {
  std::string out;
  for (char c : AsciiLower(s)) {
    out += ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-') ? c : '_';
  }
  return out.substr(0, 63);
}

}  // namespace layout

std::string DurationSeconds(double seconds) {
  return std::to_string(static_cast<int64_t>(std::max(1.0, std::ceil(seconds)))) + "s";
}

namespace {

std::string CpuString(double cpus) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", cpus);
  std::string s = buf;
  s.erase(s.find_last_not_of('0') + 1);
  if (s.back() == '.') {
    s.pop_back();
  }
  return s;
}

}  // namespace

Result<Json> BuildJob(const CloudRunOptions& o, const std::string& id, const SandboxSpec& spec,
                      const std::string& guest_dir) {
  if (spec.network == NetworkMode::kEgress) {
    return Fail(ErrorCode::kInvalidArgument,
                "cloudrun: network \"egress\" is not available: an egress policy (per-sandbox CIDR "
                "and port rules, private ranges and the metadata server refused) cannot be "
                "enforced on Cloud Run executions, which use the job's VPC egress settings; use "
                "the jail or docker backend");
  }
  if (!spec.network_name.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "cloudrun: named networks are not available (network_name '" + spec.network_name +
                    "'); Cloud Run executions use the project's egress settings");
  }
  const ResourceLimits l = MergeLimits(spec.limits, o.default_limits);
  Json limits = Json::object();
  limits["cpu"] = CpuString(l.cpus.value_or(1.0));
  limits["memory"] =
      std::to_string(std::max<uint64_t>(l.memory_bytes.value_or(1ull << 30) >> 20, 128)) + "Mi";
  Json env = Json::array();
  for (const auto& [k, v] : spec.env) {
    env.push_back({{"name", k}, {"value", v}});
  }
  // What the guest, the container's command, does before anything else runs, in every execution
  // (guest/core/read_only_root.h): Cloud Run has no read-only root setting, so the guest makes
  // one; and gen2 containers have CAP_SYS_ADMIN, with which the sandbox's root could read the
  // guest's environment (its token) and mount over its files, so the guest takes it away.
  env.push_back({{"name", spec.read_only_root ? guest::kReadOnlyRootEnv : guest::kDropSysAdminEnv},
                 {"value", "1"}});
  Json container = {{"name", layout::kContainerName},
                    {"image", spec.image.empty() ? o.default_image : spec.image},
                    {"command", Json::array({layout::GuestPath(guest_dir)})},
                    {"args", Json::array({"version"})},
                    {"env", env},
                    {"resources", {{"limits", limits}}},
                    {"volumeMounts",
                     Json::array({{{"name", "agentbox-guest"}, {"mountPath", layout::kGuestMount}},
                                  {{"name", "workspace"}, {"mountPath", layout::kWorkspace}},
                                  {{"name", "sessions"}, {"mountPath", layout::kSessionsMount}}})}};
  auto gcs = [&](const std::string& dir, bool read_only, Json extra) {
    Json opts = Json::array({"only-dir=" + dir});
    for (auto& e : extra) {
      opts.push_back(e);
    }
    return Json{{"bucket", o.bucket}, {"readOnly", read_only}, {"mountOptions", opts}};
  };
  std::string ws = layout::WorkspacePrefix(id);
  std::string sessions = layout::SessionsPrefix(id);
  ws.pop_back();
  sessions.pop_back();
  Json task = {
      {"containers", Json::array({container})},
      {"volumes",
       Json::array(
           {{{"name", "agentbox-guest"}, {"gcs", gcs("agentbox/guest", true, {"file-mode=555"})}},
            {{"name", "workspace"}, {"gcs", gcs(ws, false, {"implicit-dirs"})}},
            {{"name", "sessions"}, {"gcs", gcs(sessions, false, {"implicit-dirs"})}}})},
      {"timeout", DurationSeconds(o.default_exec_timeout_s + o.execution_grace_s)},
      {"maxRetries", 0}};
  if (!o.guest_volume) {
    // The image carries the guest at the same path (docs/cloudrun.md, the fallback).
    task["volumes"].erase(0);
    task["containers"][0]["volumeMounts"].erase(0);
  }
  if (!o.service_account.empty()) {
    task["serviceAccount"] = o.service_account;
  }
  Json labels = {{"managed-by", "agentbox"},
                 {"agentbox-sandbox", layout::LabelValue(id)},
                 {"agentbox-owner", layout::LabelValue(spec.owner)}};
  return Json{{"labels", labels},
              {"launchStage", "GA"},
              {"template", {{"taskCount", 1}, {"parallelism", 1}, {"template", task}}}};
}

Json BuildOverrides(const CloudRunOptions& o, const std::string& sandbox_id, const RunRequest& r) {
  Json args = Json::array();
  if (!r.guest_dir.empty() && r.guest_dir != r.job_guest_dir) {
    // The job's own guest (from its creation) starts the daemon's current one.
    args = Json::array({"exec", layout::GuestPath(r.guest_dir)});
  }
  for (const std::string& a : {std::string("run-once"), std::string("--command"), r.command,
                               std::string("--out"), layout::RunPath(r.session_id, r.run_id),
                               std::string("--workdir"), std::string(layout::kWorkspace),
                               std::string("--output-cap"), std::to_string(r.output_cap)}) {
    args.push_back(a);
  }
  if (!r.state_object.empty()) {
    args.push_back("--state");
    args.push_back(layout::ContainerPathOf(sandbox_id, r.state_object));
  }
  if (r.combined_output) {
    args.push_back("--combined");
  }
  if (!r.exec_dir.empty()) {
    args.push_back("--exec-dir");
    args.push_back(r.exec_dir);
  }
  const double timeout = r.timeout_s.value_or(o.default_exec_timeout_s);
  args.push_back("--timeout");
  args.push_back(std::to_string(timeout));
  return Json{
      {"containerOverrides", Json::array({{{"name", layout::kContainerName}, {"args", args}}})},
      {"taskCount", 1},
      {"timeout", DurationSeconds(timeout + o.execution_grace_s)}};
}

Json BuildSessionOverrides(const CloudRunOptions& o, const std::string& token, double timeout_s,
                           const std::string& guest_dir, const std::string& job_guest_dir) {
  Json args = Json::array();
  if (!guest_dir.empty() && guest_dir != job_guest_dir) {
    args = Json::array({"exec", layout::GuestPath(guest_dir)});
  }
  for (const std::string& a :
       {std::string("serve"), std::string("--connect"), TunnelUrl(o.public_url),
        std::string("--workdir"), std::string(layout::kWorkspace)}) {
    args.push_back(a);
  }
  const Json env = Json::array({{{"name", "AGENTBOX_GUEST_TOKEN"}, {"value", token}}});
  return Json{{"containerOverrides",
               Json::array({{{"name", layout::kContainerName}, {"args", args}, {"env", env}}})},
              {"taskCount", 1},
              {"timeout", DurationSeconds(std::min(timeout_s, kMaxTaskTimeoutS))}};
}

}  // namespace agentbox::cloudrun
