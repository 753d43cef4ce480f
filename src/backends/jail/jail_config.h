#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backends/jail/caps.h"
#include "backends/jail/cgroup.h"
#include "backends/jail/mount_ns.h"
#include "backends/jail/net_ns.h"
#include "backends/jail/rlimits.h"
#include "backends/jail/seccomp.h"
#include "backends/jail/user_ns.h"
#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::jail {

// The jail's first process (the guest), started by execve as the last step.
struct ExecConfig {
  std::string path = "/.agentbox/guest";  // inside the jail
  std::vector<std::string> argv;          // argv[0] included
  std::vector<std::string> env;           // "NAME=value"; nothing else is inherited
  std::string cwd = "/workspace";
};

// Everything the helper needs to build one jail: one narrow config per concern, composed here
// only to be written to (and read from) the helper's config file.
struct JailConfig {
  std::string id;  // for log lines
  std::string hostname;
  // The jail's stdout and stderr go to the helper's stderr (the sandbox's log on the host), at
  // most this much of them: the sandbox must not be able to fill the host's disk.
  uint64_t log_cap_bytes = 8ull << 20;
  UserNsConfig user;
  MountNsConfig mount;
  NetNsConfig net;
  CgroupConfig cgroup;
  RlimitsConfig rlimits;
  CapsConfig caps;
  SeccompConfig seccomp;
  ExecConfig exec;
};

Json JailConfigToJson(const JailConfig& cfg);
// kInvalidArgument naming the first missing or mistyped field.
Result<JailConfig> JailConfigFromJson(const Json& j);

}  // namespace agentbox::jail
