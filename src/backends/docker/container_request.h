#pragma once

#include <map>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "api/sandbox_backend.h"
#include "common/json_util.h"

namespace agentbox::docker {

// Capabilities a sandbox keeps after CapDrop ALL: enough for a root shell to own, chmod and
// kill its own files and processes and to switch users (su, setpriv), nothing that reaches the
// host (no SYS_ADMIN, NET_ADMIN, NET_RAW, MKNOD, SYS_CHROOT, SYS_PTRACE, AUDIT_WRITE, SETFCAP).
const std::vector<std::string>& KeptCapabilities();

// Where the guest and its run directory appear inside the container.
inline constexpr const char* kGuestInContainer = "/.agentbox/guest";
inline constexpr const char* kRunInContainer = "/run/agentbox";

// Label keys. Every container carries them all; user labels are kUserLabelPrefix + key.
namespace label {
inline constexpr const char* kManaged = "agentbox.managed";     // "true"
inline constexpr const char* kStateDir = "agentbox.state-dir";  // the backend's state dir
inline constexpr const char* kId = "agentbox.id";
inline constexpr const char* kOwner = "agentbox.owner";      // at creation
inline constexpr const char* kCreated = "agentbox.created";  // unix seconds
inline constexpr const char* kTtl = "agentbox.ttl";          // seconds, at creation
inline constexpr const char* kExpires = "agentbox.expires";  // unix seconds, at creation
inline constexpr const char* kSpecHash = "agentbox.spec-hash";
inline constexpr const char* kImage = "agentbox.image";
inline constexpr const char* kLimits = "agentbox.limits";    // JSON
inline constexpr const char* kNetwork = "agentbox.network";  // none | host | egress | network:<n>
inline constexpr const char* kEgress = "agentbox.egress";  // JSON policy, network egress only
inline constexpr const char* kReadOnlyRoot = "agentbox.read-only-root";
inline constexpr const char* kEnvKeys = "agentbox.env-keys";  // JSON array of spec.env keys
inline constexpr const char* kUserLabelPrefix = "agentbox.label.";
}  // namespace label

// Everything the container of one sandbox is made from. `spec.limits` must already hold the
// defaults for unset fields and `spec.image` the resolved image.
struct ContainerPlan {
  std::string id;
  SandboxSpec spec;
  std::string state_dir;     // the backend's state directory (a label: which backend owns it)
  std::string host_dir;      // <state_dir>/<id>
  std::string guest_binary;  // host path, bind-mounted read-only
  std::string runtime;       // HostConfig.Runtime; empty = the engine's default
  std::string cgroup_parent;  // HostConfig.CgroupParent; empty = the engine's default
  double created_at = 0;
  double expires_at = 0;
  // Keys the image's own Config.Env sets: our defaults (USER, LOGNAME, LANG) never override them.
  std::vector<std::string> image_env_keys;
  // Host directory bind-mounted at /workspace: on the sandbox's own disk (limits.disk_bytes).
  // Empty: an anonymous volume, seeded from the image's /workspace.
  std::string workspace_dir;
  // Network egress: host file bound read-only at /etc/resolv.conf. Empty: the engine's own.
  std::string resolv_conf;
};

// "agentbox-<id>": the container's name, so a sandbox is found by name without a search.
std::string ContainerName(const std::string& id);

// A stable hash (FNV-1a 64, hex) of what makes two sandboxes interchangeable: image, env,
// limits, network, read-only root. Owner, labels and TTL do not count. For matching (a warm
// pool), not for security.
std::string SpecHash(const SandboxSpec& spec);

// The labels of a new container (creation-time values; see host_dir.h for what changes later).
std::map<std::string, std::string> BuildLabels(const ContainerPlan& plan);

// The body of POST /containers/create (Engine API 1.41).
Json BuildCreateBody(const ContainerPlan& plan);

// Which sandbox a container is, read back from its labels and Config.Env (for re-attach).
struct LabelRecord {
  std::string id;
  std::string state_dir;
  SandboxSpec spec;  // owner, labels and expiry as at creation
  double created_at = 0;
  double expires_at = 0;
  std::string spec_hash;
};
// kInvalidArgument when the labels are not ours or are malformed.
Result<LabelRecord> ParseLabels(const std::map<std::string, std::string>& labels,
                                const std::vector<std::string>& container_env);

// Image references go into URL paths and query strings of engine calls, so only the characters
// a reference may hold are accepted ([A-Za-z0-9._-/:@], no "..", not starting with - or /).
bool ValidImageReference(std::string_view ref);

// Splits "repo[:tag]" / "repo@digest" into the fromImage and tag parameters of an image pull;
// the tag defaults to "latest" (a digest is returned as the tag).
std::pair<std::string, std::string> SplitImageReference(const std::string& ref);

// The labels of a container as GET /containers/{id}/json (Config.Labels) or GET
// /containers/json (Labels) give them; empty when there are none.
std::map<std::string, std::string> LabelsOf(const Json& container);
// One label of a container; "" when it has none of that name.
std::string LabelOf(const Json& container, const char* key);

// Where docker sandboxes go in the engine's cgroup tree and how their group is weighed: one
// parent of their own (HostConfig.CgroupParent), weighing kSandboxesCpuWeight against
// agentboxd's threads as the jail's `agentbox` group does (docs/reliability.md §4). Made for the
// engine's cgroup driver and version (GET /info: CgroupDriver "cgroupfs" or "systemd",
// CgroupVersion "1" or "2") under the cgroup mount `root`; another driver: the engine's default
// parent and no weight.
struct SandboxesCgroup {
  std::string parent;
  // Files that set the group's weight (cpu.weight on v2, cpu.shares on v1) and their value. The
  // engine makes the group with the first container in it; agentboxd writes these when they
  // exist (the engine on this machine) after each start. Best effort.
  std::vector<std::pair<std::string, std::string>> weight_files;
};
SandboxesCgroup SandboxesCgroupFor(const std::string& driver, const std::string& version,
                                   const std::string& root = "/sys/fs/cgroup");

}  // namespace agentbox::docker
