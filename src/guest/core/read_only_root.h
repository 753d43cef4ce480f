#pragma once

#include <string>
#include <vector>

#include "common/error.h"

namespace agentbox::guest {

// The environment variable that asks the guest for a read-only root (SandboxSpec::read_only_root
// on backends whose platform, not agentboxd, starts the guest: cloudrun). Its value is ignored;
// the guest removes it before anything else runs.
inline constexpr const char* kReadOnlyRootEnv = "AGENTBOX_READ_ONLY_ROOT";

// The environment variable that asks the guest to take CAP_SYS_ADMIN away from every process of
// the sandbox (cloudrun: Cloud Run's second-generation containers have it, and with it a sandbox's
// root could read the guest's environment, its token included, and mount over the guest's files;
// docker's and the jail's sandboxes never have it). Removed from the environment like the above.
inline constexpr const char* kDropSysAdminEnv = "AGENTBOX_DROP_SYS_ADMIN";

// The directories that stay writable under a read-only root, as on jail and docker.
std::vector<std::string> DefaultWritableDirs();

// Makes the root filesystem read-only for this process and every process it starts: a private
// mount namespace (unshare(CLONE_NEWNS), which needs CAP_SYS_ADMIN: Cloud Run's second-generation
// environment, which jobs always use, gives it), each of `writable` (created when missing) bound
// onto itself so that it keeps its own writable mount, then the root's own mount remounted
// read-only (other mounts, such as /proc, /dev or volumes, keep their flags). Writes elsewhere then
// fail with EROFS. Last, CAP_SYS_ADMIN leaves this process's capability sets and bounding set, so
// no process of the sandbox can remount the root writable. Call first in main, before any thread.
Result<void> MakeRootReadOnly(const std::vector<std::string>& writable);

// CAP_SYS_ADMIN out of the bounding set (no program started from here gets it back, root or
// not) and out of this process's own sets. Nothing to do when the process never had it.
Result<void> DropSysAdmin();

// MakeRootReadOnly when `kReadOnlyRootEnv` is set, else DropSysAdmin when `kDropSysAdminEnv` is;
// both variables leave the environment first. A failure is fatal to the caller (a sandbox that
// asked for a read-only root must not run with a writable one).
Result<void> HardenIfAsked(const std::vector<std::string>& writable = DefaultWritableDirs());

}  // namespace agentbox::guest
