#include "backends/docker/container_request.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "api/cpu_bandwidth.h"
#include "backends/docker/host_dir.h"
#include "common/json_util.h"

namespace agentbox::docker {
namespace {

constexpr uint64_t kDefaultTmpBytes = 256ull << 20;
constexpr uint64_t kMaxShmBytes = 64ull << 20;
constexpr uint64_t kLogMaxBytes = 8ull << 20;  // the guest's stdout/stderr kept by the engine
constexpr size_t kMaxHostname = 63;

std::string Seconds(double t) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.3f", t);
  return buf;
}

std::string NetworkLabel(const SandboxSpec& spec) {
  if (!spec.network_name.empty()) {
    return "network:" + spec.network_name;
  }
  return NetworkModeName(spec.network);
}

}  // namespace

const std::vector<std::string>& KeptCapabilities() {
  static const std::vector<std::string> caps = {
      "CHOWN",         // chown files in /workspace and /tmp
      "DAC_OVERRIDE",  // root reads and writes files whatever their mode, as a root shell expects
      "FOWNER",        // chmod/utime on files root does not own
      "FSETID",        // keep set-group-id bits when root changes a file
      "KILL",          // signal processes of other users in the sandbox
      "SETGID",        // su / setpriv to another user
      "SETUID",
      "NET_BIND_SERVICE",  // listen on ports below 1024 (dev servers)
  };
  return caps;
}

std::string ContainerName(const std::string& id) { return "agentbox-" + id; }

std::string SpecHash(const SandboxSpec& spec) {
  Json canonical = {{"image", spec.image},
                    {"env", spec.env},
                    {"limits", LimitsToJson(spec.limits)},
                    {"network", NetworkLabel(spec)},
                    {"read_only_root", spec.read_only_root}};
  if (spec.egress) {
    canonical["egress"] = EgressPolicyToJson(*spec.egress);
  }
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : canonical.dump()) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, h);
  return buf;
}

std::map<std::string, std::string> BuildLabels(const ContainerPlan& p) {
  Json env_keys = Json::array();
  for (const auto& [k, v] : p.spec.env) {
    env_keys.push_back(k);
  }
  std::map<std::string, std::string> l = {
      {label::kManaged, "true"},
      {label::kStateDir, p.state_dir},
      {label::kId, p.id},
      {label::kOwner, p.spec.owner},
      {label::kCreated, Seconds(p.created_at)},
      {label::kTtl, std::to_string(p.spec.ttl_s)},
      {label::kExpires, Seconds(p.expires_at)},
      {label::kSpecHash, SpecHash(p.spec)},
      {label::kImage, p.spec.image},
      {label::kLimits, LimitsToJson(p.spec.limits).dump()},
      {label::kNetwork, NetworkLabel(p.spec)},
      {label::kReadOnlyRoot, p.spec.read_only_root ? "true" : "false"},
      {label::kEnvKeys, env_keys.dump()},
  };
  if (p.spec.network == NetworkMode::kEgress && p.spec.egress) {
    l[label::kEgress] = EgressPolicyToJson(*p.spec.egress).dump();
  }
  for (const auto& [k, v] : p.spec.labels) {
    l[label::kUserLabelPrefix + k] = v;
  }
  return l;
}

Json BuildCreateBody(const ContainerPlan& p) {
  const ResourceLimits& lim = p.spec.limits;
  const std::string run_dir = std::string(kRunInContainer);

  // The guest's environment, which every session inherits: the image's, then our defaults for
  // what it leaves unset, then the spec's.
  std::map<std::string, std::string> env;
  for (const auto& [k, v] :
       {std::pair{"USER", "root"}, std::pair{"LOGNAME", "root"}, std::pair{"LANG", "C.UTF-8"}}) {
    if (std::find(p.image_env_keys.begin(), p.image_env_keys.end(), k) == p.image_env_keys.end()) {
      env[k] = v;
    }
  }
  for (const auto& [k, v] : p.spec.env) {
    env[k] = v;
  }
  Json env_list = Json::array();
  for (const auto& [k, v] : env) {
    env_list.push_back(k + "=" + v);
  }

  const uint64_t tmp_bytes = lim.tmp_bytes.value_or(kDefaultTmpBytes);
  Json mounts = Json::array({
      {{"Type", "bind"},
       {"Source", p.guest_binary},
       {"Target", kGuestInContainer},
       {"ReadOnly", true}},
      {{"Type", "bind"}, {"Source", p.host_dir + "/" + kRunDir}, {"Target", run_dir}},
      // An anonymous volume: writable even with a read-only root, seeded from the image's
      // /workspace, removed with the container (DELETE ?v=1). With a disk of its own: a bind of
      // that disk's workspace directory (which starts empty: see README.md, disk limits).
      p.workspace_dir.empty()
          ? Json{{"Type", "volume"}, {"Target", "/workspace"}}
          : Json{{"Type", "bind"}, {"Source", p.workspace_dir}, {"Target", "/workspace"}},
      {{"Type", "tmpfs"},
       {"Target", "/tmp"},
       {"TmpfsOptions", {{"SizeBytes", tmp_bytes}, {"Mode", 01777}}}},
  });

  Json ulimits = Json::array({{{"Name", "core"}, {"Soft", 0}, {"Hard", 0}}});
  if (lim.open_files) {
    ulimits.push_back({{"Name", "nofile"}, {"Soft", *lim.open_files}, {"Hard", *lim.open_files}});
  }
  if (lim.file_size_bytes) {
    ulimits.push_back(
        {{"Name", "fsize"}, {"Soft", *lim.file_size_bytes}, {"Hard", *lim.file_size_bytes}});
  }

  // Egress: a network namespace of the engine's with loopback only, which the backend then gives
  // its veth (backends/egress), as the jail backend does.
  std::string network = "none";
  if (!p.resolv_conf.empty()) {
    mounts.push_back({{"Type", "bind"},
                      {"Source", p.resolv_conf},
                      {"Target", "/etc/resolv.conf"},
                      {"ReadOnly", true}});
  }
  if (!p.spec.network_name.empty()) {
    network = p.spec.network_name;
  } else if (p.spec.network == NetworkMode::kHost) {
    network = "host";
  }

  Json host = {
      {"Mounts", mounts},
      {"ReadonlyRootfs", p.spec.read_only_root},
      {"SecurityOpt", Json::array({"no-new-privileges"})},
      {"CapDrop", Json::array({"ALL"})},
      {"CapAdd", KeptCapabilities()},
      {"NetworkMode", network},
      {"Ulimits", ulimits},
      {"ShmSize", std::min(kMaxShmBytes, tmp_bytes)},
      {"IpcMode", "private"},
      // An engine restarted without live-restore stops containers; it starts these again.
      {"RestartPolicy", {{"Name", "unless-stopped"}}},
      {"AutoRemove", false},
      {"Init", false},  // the guest is pid 1 and reaps orphans itself
      {"LogConfig",
       {{"Type", "json-file"},
        {"Config", {{"max-size", std::to_string(kLogMaxBytes)}, {"max-file", "1"}}}}},
  };
  if (lim.memory_bytes) {
    host["Memory"] = *lim.memory_bytes;
    host["MemorySwap"] = *lim.memory_bytes;  // no swap beyond the limit
  }
  if (lim.cpus) {
    const CpuBandwidth b = CpuBandwidthOf(*lim.cpus);  // a 10 ms period, as on the jail
    host["CpuPeriod"] = b.period_us;
    host["CpuQuota"] = b.quota_us;
  }
  if (lim.pids) {
    host["PidsLimit"] = *lim.pids;
  }
  if (!p.runtime.empty()) {
    host["Runtime"] = p.runtime;
  }
  if (!p.cgroup_parent.empty()) {
    host["CgroupParent"] = p.cgroup_parent;
  }

  return {
      {"Hostname", p.id.substr(0, kMaxHostname)},
      {"Image", p.spec.image},
      {"User", "0:0"},  // the guest needs root for its 0700 run directory; sessions run as root
      {"Entrypoint", Json::array({kGuestInContainer})},
      {"Cmd", Json::array({"serve", "--listen", "unix:" + run_dir + "/" + kGuestSocket, "--workdir",
                           "/workspace", "--token-file", run_dir + "/" + kTokenFile})},
      {"Env", env_list},
      {"WorkingDir", "/workspace"},
      {"Labels", BuildLabels(p)},
      {"AttachStdin", false},
      {"AttachStdout", false},
      {"AttachStderr", false},
      {"OpenStdin", false},
      {"Tty", false},
      {"StopSignal", "SIGTERM"},
      {"HostConfig", host},
  };
}

Result<LabelRecord> ParseLabels(const std::map<std::string, std::string>& labels,
                                const std::vector<std::string>& container_env) {
  auto get = [&](const char* key) -> std::string {
    auto it = labels.find(key);
    return it == labels.end() ? std::string() : it->second;
  };
  if (get(label::kManaged) != "true" || get(label::kId).empty()) {
    return Fail(ErrorCode::kInvalidArgument, "not an agentbox container");
  }
  try {
    LabelRecord r;
    r.id = get(label::kId);
    r.state_dir = get(label::kStateDir);
    r.spec_hash = get(label::kSpecHash);
    r.created_at = std::stod(get(label::kCreated));
    r.expires_at = std::stod(get(label::kExpires));
    r.spec.owner = get(label::kOwner);
    r.spec.ttl_s = std::stoll(get(label::kTtl));
    r.spec.image = get(label::kImage);
    r.spec.read_only_root = get(label::kReadOnlyRoot) == "true";
    const std::string net = get(label::kNetwork);
    if (net == "host") {
      r.spec.network = NetworkMode::kHost;
    } else if (net == "egress") {
      r.spec.network = NetworkMode::kEgress;
      const Json policy = ParseUntrustedJson(get(label::kEgress));
      auto parsed = EgressPolicyFromJson(policy.is_discarded() ? Json() : policy);
      if (!parsed) {
        return Fail(ErrorCode::kInvalidArgument, "malformed label " + std::string(label::kEgress));
      }
      r.spec.egress = *parsed;
    } else if (net.starts_with("network:")) {
      r.spec.network_name = net.substr(8);
    }
    const Json limits = ParseUntrustedJson(get(label::kLimits));
    if (!limits.is_object()) {
      return Fail(ErrorCode::kInvalidArgument, "malformed label " + std::string(label::kLimits));
    }
    r.spec.limits = LimitsFromJson(limits);
    const Json keys = ParseUntrustedJson(get(label::kEnvKeys));
    if (keys.is_array()) {
      for (const auto& k : keys) {
        const std::string prefix = k.get<std::string>() + "=";
        // The last occurrence wins, as in the container.
        for (const auto& kv : container_env) {
          if (kv.starts_with(prefix)) {
            r.spec.env[k.get<std::string>()] = kv.substr(prefix.size());
          }
        }
      }
    }
    const std::string prefix = label::kUserLabelPrefix;
    for (const auto& [k, v] : labels) {
      if (k.starts_with(prefix)) {
        r.spec.labels[k.substr(prefix.size())] = v;
      }
    }
    return r;
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kInvalidArgument, std::string("malformed agentbox labels: ") + e.what());
  }
}

bool ValidImageReference(std::string_view ref) {
  if (ref.empty() || ref.size() > 512 || ref[0] == '-' || ref[0] == '/' ||
      ref.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(ref.begin(), ref.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("._-/:@", c) != nullptr;
  });
}

std::pair<std::string, std::string> SplitImageReference(const std::string& ref) {
  if (const size_t at = ref.find('@'); at != std::string::npos) {
    return {ref.substr(0, at), ref.substr(at + 1)};
  }
  const size_t slash = ref.rfind('/');
  const size_t colon = ref.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    return {ref.substr(0, colon), ref.substr(colon + 1)};
  }
  return {ref, "latest"};
}

std::map<std::string, std::string> LabelsOf(const Json& container) {
  std::map<std::string, std::string> out;
  // find(), never operator[] on a const Json: a missing key there reads past the object
  // (fuzz_docker_engine: an inspect answer whose Config has no Labels; heap-buffer-overflow).
  const Json* labels = nullptr;
  if (!container.is_object()) {
    return out;
  }
  if (auto config = container.find("Config"); config != container.end() && config->is_object()) {
    if (auto l = config->find("Labels"); l != config->end()) {
      labels = &*l;
    }
  } else if (auto l = container.find("Labels"); l != container.end()) {
    labels = &*l;
  }
  if (labels != nullptr && labels->is_object()) {
    for (const auto& [k, v] : labels->items()) {
      if (v.is_string()) {
        out[k] = v.get<std::string>();
      }
    }
  }
  return out;
}

std::string LabelOf(const Json& container, const char* key) {
  auto labels = LabelsOf(container);
  auto it = labels.find(key);
  return it == labels.end() ? "" : it->second;
}

SandboxesCgroup SandboxesCgroupFor(const std::string& driver, const std::string& version,
                                   const std::string& root) {
  SandboxesCgroup g;
  std::string dir;
  if (driver == "cgroupfs") {
    g.parent = "/agentbox-docker";
    dir = "agentbox-docker";
  } else if (driver == "systemd") {
    g.parent = "agentbox.slice";  // the systemd driver takes a slice name
    dir = "agentbox.slice";
  } else {
    return g;
  }
  if (version == "2") {
    g.weight_files.emplace_back(root + "/" + dir + "/cpu.weight",
                                std::to_string(kSandboxesCpuWeight));
  } else {
    const std::string shares = std::to_string(kSandboxesCpuWeight * 1024 / 100);
    for (const char* hierarchy : {"cpu", "cpu,cpuacct"}) {
      g.weight_files.emplace_back(root + "/" + hierarchy + "/" + dir + "/cpu.shares", shares);
    }
  }
  return g;
}

}  // namespace agentbox::docker
