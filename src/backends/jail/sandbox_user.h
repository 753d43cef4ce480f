#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backends/jail/mount_ns.h"
#include "common/error.h"

namespace agentbox::jail {

// E2B's default account (user `user`, home and working directory /home/user) in a jail whose
// /etc is shared read-only (the host's root, an image directory), where no tool inside can add
// it. The daemon prepares it per sandbox instead:
//   <dir>/passwd, <dir>/group  copies of the system's files with `user` appended, mounted
//                              read-only over /etc/passwd and /etc/group in the jail;
//   <disk_root>/home/user      its home on the sandbox's own disk (owned by the account, seeded
//                              from /etc/skel); <disk_root>/home is mounted writable at /home.
// The account's id is the first one from 1000 up that the system's files do not use (1000 on
// most hosts), mapped like every id below `id_count` to host_uid + id. A system that already
// has `user` keeps its entry; only the home is added. Needs an id range (id_count > 1000): an
// unprivileged jail maps only root, and gets nothing here.
struct SandboxUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<MountNsConfig::Extra> mounts;
};
Result<SandboxUser> PrepareSandboxUser(const std::string& system_etc, const std::string& dir,
                                       const std::string& disk_root, uint32_t host_uid,
                                       uint32_t host_gid, uint32_t id_count);

// Pure part, for tests: the first free id >= 1000 in both files' third field, or the existing
// `user` entry's ids; and the lines to append (empty when `user` exists).
struct UserEntries {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string passwd_line;  // "user:x:UID:GID:user:/home/user:/bin/bash\n" or empty
  std::string group_line;
};
UserEntries PlanUserEntries(const std::string& passwd, const std::string& group,
                            const std::string& shell);

}  // namespace agentbox::jail
