#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "api/sandbox_backend.h"
#include "backends/jail/process.h"
#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::jail {

// What the backend keeps about one sandbox in <state_dir>/<id>/spec.json: everything needed to
// find it again after a daemon restart, check it is alive, and destroy it completely.
struct SandboxRecord {
  std::string id;
  SandboxSpec spec;                  // limits as applied (defaults filled in)
  double created_at = 0;             // unix seconds
  double expires_at = 0;             // unix seconds
  ProcessIdentity helper;            // agentbox-jail, the jail's parent and supervisor
  ProcessIdentity init;              // the guest, pid 1 of the jail's pid namespace
  std::vector<std::string> cgroups;  // absolute cgroup directories
  uint32_t host_uid = 0;             // sandbox uid 0 on the host
  uint32_t host_gid = 0;
  uint32_t id_count = 1;  // size of the mapped id range
  int64_t uid_slot = -1;  // slot of the id range in <state_dir>/.slots, -1 for none
  std::string token;      // the guest's X-Access-Token
  std::string detail;     // e.g. "cgroup limits not enforced: ..."
  // network egress: the host end of the sandbox's veth (backends/egress), empty for none.
  std::string egress_link;
};

Json SandboxRecordToJson(const SandboxRecord& r);
Result<SandboxRecord> SandboxRecordFromJson(const Json& j);

// Atomic write (temporary file + rename), mode 0600.
Result<void> SaveSandboxRecord(const std::string& path, const SandboxRecord& r);
// kNotFound if the file does not exist; kInternal if it is unreadable or malformed.
Result<SandboxRecord> LoadSandboxRecord(const std::string& path);

}  // namespace agentbox::jail
