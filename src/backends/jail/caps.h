#pragma once

#include <vector>

#include "common/error.h"

namespace agentbox::jail {

// Capabilities the jail keeps (in its own user namespace; none of them mean anything on the
// host). Everything else leaves the bounding set, so not even a setuid or file-capability
// binary can get it back.
struct CapsConfig {
  std::vector<int> keep;  // CAP_* numbers
};

// Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
// NET_BIND_SERVICE SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
std::vector<int> DefaultKeptCapabilities();

// Child side: drops every other capability from the bounding set, sets permitted and effective
// to `keep` (inheritable empty) and clears the ambient set.
Result<void> DropCapabilities(const CapsConfig& cfg);

// Sets no_new_privs: execve can never grant privileges again (setuid bits, file capabilities).
Result<void> SetNoNewPrivs();

}  // namespace agentbox::jail
