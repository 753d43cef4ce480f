#include "backends/jail/seccomp.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

namespace agentbox::jail {
namespace {

struct CtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using FilterPtr = std::unique_ptr<void, CtxDeleter>;

Error SeccompError(int rc, const std::string& what) { return ErrnoError(-rc, "seccomp: " + what); }

// personality(2) accepts only these values (Docker's default profile); the kernel truncates the
// argument to 32 bits. libseccomp cannot express "not in this set" as one deny rule, so this
// small classic-BPF filter is stacked on top of the libseccomp one; the kernel applies the
// strictest verdict of all loaded filters.
Result<void> LoadPersonalityFilter() {
#if defined(__x86_64__)
  constexpr uint32_t kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  constexpr uint32_t kArch = AUDIT_ARCH_AARCH64;
#else
#error "add the audit arch of this architecture"
#endif
  constexpr uint32_t kDeny = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  struct sock_filter insns[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),  // other ABIs: the main filter decides
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_personality, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      // Low 32 bits of the argument (little-endian).
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0, 5, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x8, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20000, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x20008, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffff, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, kDeny),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog {};
  prog.len = static_cast<unsigned short>(sizeof(insns) / sizeof(insns[0]));
  prog.filter = insns;
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    return Fail(ErrnoError(errno, "seccomp: load personality filter"));
  }
  return {};
}

}  // namespace

const std::vector<std::string>& DeniedSyscalls() {
  static const std::vector<std::string> kDenied = {
      // Filesystem namespace and mounts: the jail's tree is fixed once built.
      "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
      "open_tree", "mount_setattr",
      // Kernel code and the machine.
      "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
      "swapon", "swapoff", "iopl", "ioperm", "acct", "quotactl", "quotactl_fd", "lookup_dcookie",
      "syslog", "bpf", "perf_event_open", "userfaultfd",
      // io_uring: a large kernel surface with a history of escapes (Docker denies it too).
      "io_uring_setup", "io_uring_enter", "io_uring_register",
      // Keys: the keyring is not namespaced.
      "keyctl", "add_key", "request_key",
      // Clocks: not namespaced.
      "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
      // Other namespaces and processes.
      "setns", "process_vm_readv", "process_vm_writev", "kcmp",
      // File handles bypass path permission checks (the "shocker" escape).
      "open_by_handle_at", "name_to_handle_at",
      // Obsolete or legacy.
      "uselib", "nfsservctl", "_sysctl", "vm86", "vm86old", "create_module", "get_kernel_syms",
      "query_module"};
  return kDenied;
}

Result<void> WriteSeccompProgram(const SeccompConfig& cfg, int fd) {
  if (!cfg.enabled) {
    return {};
  }
  FilterPtr ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) {
    return Fail(ErrorCode::kInternal, "seccomp: init failed");
  }
  for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32}) {
    // Absent on other machines; then those ABIs are not reachable either.
    (void)seccomp_arch_add(ctx.get(), arch);
  }
  const uint32_t deny = SCMP_ACT_ERRNO(EPERM);
  for (const std::string& name : DeniedSyscalls()) {
    const int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      continue;  // not a system call on this architecture (e.g. vm86 on x86_64)
    }
    if (int rc = seccomp_rule_add(ctx.get(), deny, nr, 0); rc != 0) {
      return Fail(SeccompError(rc, "deny " + name));
    }
  }
  const scmp_datum_t newuser = CLONE_NEWUSER;
  if (int rc = seccomp_rule_add(ctx.get(), deny, SCMP_SYS(unshare), 1,
                                SCMP_A0(SCMP_CMP_MASKED_EQ, newuser, newuser));
      rc != 0) {
    return Fail(SeccompError(rc, "deny unshare(CLONE_NEWUSER)"));
  }
  if (int rc = seccomp_rule_add(ctx.get(), deny, SCMP_SYS(clone), 1,
                                SCMP_A0(SCMP_CMP_MASKED_EQ, newuser, newuser));
      rc != 0) {
    return Fail(SeccompError(rc, "deny clone(CLONE_NEWUSER)"));
  }
  // clone3 passes its flags in memory the filter cannot read: make libc fall back to clone.
  if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0); rc != 0) {
    return Fail(SeccompError(rc, "clone3 -> ENOSYS"));
  }
  if (int rc = seccomp_export_bpf(ctx.get(), fd); rc != 0) {
    return Fail(SeccompError(rc, "export"));
  }
  return {};
}

Result<void> LoadSeccompProgram(const SeccompConfig& cfg, int fd) {
  if (!cfg.enabled) {
    return {};
  }
  std::string program;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError(errno, "seccomp: read program"));
    }
    if (n == 0) {
      break;
    }
    program.append(buf, static_cast<size_t>(n));
  }
  if (program.empty() || program.size() % sizeof(struct sock_filter) != 0 ||
      program.size() / sizeof(struct sock_filter) > BPF_MAXINSNS) {
    return Fail(ErrorCode::kInternal, "seccomp: no valid filter program from the helper");
  }
  struct sock_fprog prog {};
  prog.len = static_cast<unsigned short>(program.size() / sizeof(struct sock_filter));
  std::vector<struct sock_filter> insns(prog.len);
  std::memcpy(insns.data(), program.data(), program.size());
  prog.filter = insns.data();
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    return Fail(ErrnoError(errno, "seccomp: load filter"));
  }
  return LoadPersonalityFilter();
}

}  // namespace agentbox::jail
