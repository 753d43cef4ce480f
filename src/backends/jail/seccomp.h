#pragma once

#include <string>
#include <vector>

#include "common/error.h"

namespace agentbox::jail {

// The jail's system call filter: a deny list modelled on Docker's default profile. Denied calls
// fail with EPERM; everything else is allowed.
struct SeccompConfig {
  bool enabled = true;
};

// Names of the system calls denied outright (for documentation and tests). On top of these:
// clone/unshare with CLONE_NEWUSER are denied, clone3 fails with ENOSYS (so that libc falls
// back to clone, whose flags the filter can see), and personality(2) is allowed only for the
// values Docker allows (PER_LINUX, PER_LINUX32, UNAME26 and the query 0xffffffff).
const std::vector<std::string>& DeniedSyscalls();

// The filter is compiled by the helper while the jail's child sets up its namespaces (libseccomp
// takes about a millisecond in a fresh process, so this takes it off the critical path), and
// handed over through a pipe as a classic BPF program.

// Parent side: compiles the filter and writes the BPF program to `fd` (a pipe with room for
// it: a few KiB). Writes nothing when the filter is disabled. The filter applies to the native
// ABI and to the x86 and x32 ABIs alike.
Result<void> WriteSeccompProgram(const SeccompConfig& cfg, int fd);

// Child side, the last step before execve: reads the program from `fd` until EOF and loads it,
// then the personality(2) filter. Requires no_new_privs. Fails if the filter is enabled and no
// program arrived.
Result<void> LoadSeccompProgram(const SeccompConfig& cfg, int fd);

}  // namespace agentbox::jail
