// Security tests of the jail at the kernel level (issue 3, part 5): what a sandbox can see,
// write, reach and exhaust. Each starts real sandboxes; tests that need root (id ranges, cgroup
// limits) skip with the reason when it is missing.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "backends/jail/jail_backend.h"
#include "backends/jail/jail_test_fixture.h"
#include "backends/jail/jail_test_util.h"
#include "backends/jail/process.h"
#include "backends/jail/sandbox_record.h"

namespace agentbox::jail {
namespace {

using namespace agentbox::jail::testing;

class JailSecurityTest : public JailFixture {
 protected:
  JailSecurityTest() { expect_clean_destroy_ = true; }

  // Skips the test unless the sandbox's cgroup limits are enforced.
  bool LimitsEnforced(const std::string& id) {
    // The detail may also say that a default disk limit is not enforced (no loop devices).
    return ::geteuid() == 0 &&
           RecordOf(id).detail.find("no writable cgroup") == std::string::npos;
  }
};

#define REQUIRE_LIMITS(id)                                                              \
  do {                                                                                  \
    if (!LimitsEnforced(id)) {                                                          \
      GTEST_SKIP() << "SKIPPED: cgroup limits are not enforced here (needs root and a " \
                      "writable cgroup hierarchy): "                                    \
                   << RecordOf(id).detail;                                              \
    }                                                                                   \
  } while (0)

TEST_F(JailSecurityTest, CannotSeeHostProcesses) {
  const SandboxInfo info = CreateOrDie("procs");
  const ExecResult r =
      Exec(info, "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(cat $p/comm)\"; done");
  ASSERT_EQ(r.returncode, 0) << r.output;
  // Only the guest (pid 1), the shell running this command and its children, and a child the
  // guest is forking at that moment (its next pre-started shell, named "guest" until it execs).
  std::istringstream lines(r.output);
  int count = 0;
  for (std::string line; std::getline(lines, line);) {
    ++count;
    EXPECT_TRUE(line.ends_with(" guest") || line.find(" bash") != std::string::npos ||
                line.find(" cat") != std::string::npos)
        << "unexpected process visible in the sandbox: " << line;
  }
  EXPECT_LE(count, 6) << r.output;
  EXPECT_EQ(Exec(info, "ps -e -o comm= | grep -c agentbox_backen || true").output, "0\n");
  // Host pid 1 is not the sandbox's pid 1.
  EXPECT_EQ(Exec(info, "cat /proc/1/cmdline | tr '\\0' ' '").output.rfind("/.agentbox/guest", 0),
            0u);
}

TEST_F(JailSecurityTest, CannotSeeAnotherSandboxsProcessesOrFiles) {
  const SandboxInfo a = CreateOrDie("iso-a");
  const SandboxInfo b = CreateOrDie("iso-b");
  ASSERT_TRUE(StartProcess(b, "sleep 987654"));
  ASSERT_EQ(Exec(b, "echo secret > /workspace/secret-b; echo secret > /tmp/secret-b").returncode,
            0);
  const std::string count_sleepers =
      "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done | grep -c 'slee[p] 987654'"
      " || true";
  EXPECT_NE(Exec(b, count_sleepers).output, "0\n");  // the probe works
  EXPECT_EQ(Exec(a, count_sleepers).output, "0\n");
  EXPECT_EQ(Exec(a, "ls -A /workspace /tmp; test -e " + state_dir_ + " && echo visible").output,
            "/tmp:\n\n/workspace:\n");
  // b's files exist on the host, under b's state only.
  EXPECT_EQ(ReadText(state_dir_ + "/iso-b/workspace/secret-b"), "secret\n");
  // And, as root, b's processes run as host ids other than a's.
  if (::geteuid() == 0) {
    EXPECT_NE(RecordOf("iso-a").host_uid, RecordOf("iso-b").host_uid);
  }
}

TEST_F(JailSecurityTest, HostPathsOutsideTheSystemDirectoriesAreAbsent) {
  const std::string secret_dir = tmp_.path() + "/host-secret";
  std::filesystem::create_directories(secret_dir);
  std::ofstream(secret_dir + "/key") << "do not read";
  const SandboxInfo info = CreateOrDie("paths");
  // /home is the sandbox's own: only the `user` account's home (sandbox_user.h), on its disk.
  // The account needs an id range: unprivileged (one mapped id) there is none, and no /home.
  const bool user_account = ::geteuid() == 0;
  EXPECT_EQ(Exec(info, "ls -A /").output,
            std::string(".agentbox\nbin\ndev\netc\n") + (user_account ? "home\n" : "") +
                "lib\nlib32\nlib64\nproc\nroot\nrun\nsbin\nsys\ntmp\nusr\nworkspace\n");
  if (user_account) {
    EXPECT_EQ(Exec(info, "ls -A /home").output, "user\n");
  }
  for (const std::string& p :
       {secret_dir + "/key", tmp_.path(), state_dir_, std::string("/var"),
        std::string("/boot"), std::string("/work"), std::string("/mnt"),
        std::string("/root/.bashrc"), std::string("/proc/1/root/work")}) {
    EXPECT_EQ(Exec(info, "test -e '" + p + "' && echo present || echo absent").output, "absent\n")
        << p;
  }
  // The guest's own directory holds only the guest.
  EXPECT_EQ(Exec(info, "ls -A /.agentbox /run/agentbox").output,
            "/.agentbox:\nguest\n\n/run/agentbox:\nguest.sock\ntoken\n");
}

TEST_F(JailSecurityTest, SysIsReadOnlyAndShowsOnlyTheSandboxsOwnNetwork) {
  const SandboxInfo info = CreateOrDie("sys");
  EXPECT_EQ(Exec(info, "ls /sys/class/net").output, "lo\n");  // not the host's interfaces
  EXPECT_EQ(Exec(info, "ls -A /sys/firmware /sys/fs/cgroup").output,
            "/sys/firmware:\n\n/sys/fs/cgroup:\n");
  const ExecResult w = Exec(info, "echo 1 > /sys/kernel/profiling 2>&1; touch /sys/x 2>&1");
  EXPECT_NE(w.returncode, 0);
  EXPECT_NE(w.output.find("Read-only file system"), std::string::npos) << w.output;
  EXPECT_EQ(Exec(info, "cat /sys/devices/system/cpu/online").returncode, 0);
}

TEST_F(JailSecurityTest, SystemDirectoriesAreNotWritable) {
  const SandboxInfo info = CreateOrDie("ro");
  for (const char* p : {"/usr/x", "/etc/x", "/bin/x", "/sbin/x", "/lib/x", "/usr/local/bin/x"}) {
    const ExecResult r = Exec(info, std::string("touch ") + p + " 2>&1");
    EXPECT_NE(r.returncode, 0) << p;
    EXPECT_NE(r.output.find("Read-only file system"), std::string::npos) << p << ": " << r.output;
  }
  EXPECT_NE(Exec(info, "echo x >> /etc/passwd").returncode, 0);
  EXPECT_NE(Exec(info, "cp /bin/true /.agentbox/guest").returncode, 0);
  EXPECT_NE(Exec(info, "rm -f /.agentbox/guest").returncode, 0);
  // Host root's files stay out of reach even to read: the sandbox's root is nobody outside.
  EXPECT_NE(Exec(info, "cat /etc/shadow").returncode, 0);
  // What the sandbox may write.
  EXPECT_EQ(Exec(info, "touch /workspace/a /tmp/a /root/a /dev/shm/a && echo ok").output, "ok\n");
}

TEST_F(JailSecurityTest, NoNetworkButLoopback) {
  HostLoopbackListener listener;
  const std::string port = listener.port();
  ASSERT_FALSE(port.empty());

  const SandboxInfo info = CreateOrDie("net");
  const ExecResult host_lo = Exec(info, "exec 3<>/dev/tcp/127.0.0.1/" + port + " 2>&1");
  EXPECT_NE(host_lo.returncode, 0);
  EXPECT_NE(host_lo.output.find("Connection refused"), std::string::npos) << host_lo.output;
  // The host's other addresses and the internet are unreachable.
  ifaddrs* ifs = nullptr;
  ASSERT_EQ(::getifaddrs(&ifs), 0);
  for (ifaddrs* i = ifs; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET ||
        std::string(i->ifa_name) == "lo") {
      continue;
    }
    char ip[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, ip, sizeof(ip));
    const ExecResult r = Exec(
        info, std::string("timeout 5 bash -c 'exec 3<>/dev/tcp/") + ip + "/" + port + "' 2>&1");
    EXPECT_NE(r.returncode, 0) << ip;
    EXPECT_NE(r.output.find("unreachable"), std::string::npos) << ip << ": " << r.output;
  }
  ::freeifaddrs(ifs);
  EXPECT_NE(Exec(info, "timeout 5 bash -c 'exec 3<>/dev/tcp/1.1.1.1/80' 2>&1").returncode, 0);
  // Only loopback exists, and it works.
  EXPECT_EQ(Exec(info, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").output, "lo\n");
  EXPECT_EQ(Exec(info,
                 "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); "
                 "s.listen(); c=socket.create_connection(s.getsockname()); print(\"ok\")'")
                .output,
            "ok\n");
}

// Fork+exec of /bin/true on the host, in milliseconds.
double HostSpawnMs() {
  const auto t0 = Clock::now();
  pid_t pid = -1;
  char* argv[] = {const_cast<char*>("true"), nullptr};
  char* envp[] = {nullptr};
  if (::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, envp) != 0) {
    return 1e9;
  }
  ::waitpid(pid, nullptr, 0);
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

TEST_F(JailSecurityTest, ForkBombIsStoppedByThePidsLimit) {
  SandboxSpec spec;
  spec.limits.pids = 64;
  const SandboxInfo info = CreateOrDie("bomb", spec);
  REQUIRE_LIMITS("bomb");
  std::string pids_dir;
  for (const auto& cg : RecordOf("bomb").cgroups) {
    if (cg.find("/pids/") != std::string::npos || std::filesystem::exists(cg + "/pids.max")) {
      pids_dir = cg;
    }
  }
  ASSERT_FALSE(pids_dir.empty());
  ASSERT_TRUE(StartProcess(info, "bomb() { bomb | bomb & }; bomb"));
  // Wait until the bomb has hit the limit.
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  bool hit = false;
  while (Clock::now() < deadline && !hit) {
    const std::string events = ReadText(pids_dir + "/pids.events");  // "max N"
    hit = events.size() > 4 && std::stol(events.substr(4)) > 0;
    if (!hit) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // observing, not syncing
    }
  }
  ASSERT_TRUE(hit) << "the bomb never reached pids.max";
  EXPECT_LE(std::stoi(ReadText(pids_dir + "/pids.current")), 64);
  // The host stays responsive while the bomb keeps trying.
  double worst = 0;
  for (int i = 0; i < 10; ++i) {
    worst = std::max(worst, HostSpawnMs());
  }
  EXPECT_LT(worst, 500) << "host fork+exec took " << worst << " ms during the fork bomb";
  EXPECT_LE(std::stoi(ReadText(pids_dir + "/pids.current")), 64);
  // And the sandbox can still be destroyed promptly.
  const auto t0 = Clock::now();
  ASSERT_TRUE(backend_->Destroy("bomb"));
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10);
  EXPECT_FALSE(std::filesystem::exists(pids_dir));
}

TEST_F(JailSecurityTest, MemoryBombIsKilledByTheMemoryLimit) {
  // Sanitizer builds too: the guest in the jail is the static, unsanitized sandbox guest
  // (cmake/sandbox_guest.cmake), whose memory fits the limit where ASan's shadow would not.
  SandboxSpec spec;
  spec.limits.memory_bytes = 64 << 20;
  const SandboxInfo info = CreateOrDie("membomb", spec);
  REQUIRE_LIMITS("membomb");
  const ExecResult r = Exec(info, "python3 -c 'b = bytearray(512 * 1024 * 1024); print(len(b))'");
  EXPECT_EQ(r.returncode, 137) << r.output;  // SIGKILL from the OOM killer
  EXPECT_EQ(r.output.find("536870912"), std::string::npos);
  // Only the bomb died: the guest still serves.
  EXPECT_EQ(Exec(info, "echo alive").output, "alive\n");
}

TEST_F(JailSecurityTest, FillingTmpStopsAtItsSize) {
  SandboxSpec spec;
  spec.limits.tmp_bytes = 8 << 20;
  const SandboxInfo info = CreateOrDie("tmpfill", spec);
  const ExecResult r = Exec(info, "dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1");
  EXPECT_NE(r.returncode, 0);
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  const ExecResult size = Exec(info, "stat -c %s /tmp/fill");
  EXPECT_LE(std::stoll(size.output), 8ll << 20);
  EXPECT_EQ(Exec(info, "df -B1 --output=size /tmp | tail -1 | tr -d ' '").output,
            std::to_string(8 << 20) + "\n");
}

TEST_F(JailSecurityTest, BlockedSystemCallsReturnEperm) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "SKIPPED: the system call numbers below are x86_64's";
#endif
  const SandboxInfo info = CreateOrDie("syscalls");
  // Each call with harmless arguments: if the filter let it through, the kernel would answer
  // EINVAL/EFAULT/ENOSYS instead of EPERM (the sandbox root has no host privileges either).
  const std::string script = R"PY(
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
calls = {
  "mount": (165, b"none", b"/tmp", b"tmpfs", 0, 0), "umount2": (166, b"/tmp", 0),
  "pivot_root": (155, b"/tmp", b"/tmp"), "unshare(CLONE_NEWUSER)": (272, 0x10000000),
  "clone(CLONE_NEWUSER)": (56, 0x10000000 | 17, 0, 0, 0, 0), "setns": (308, 0, 0),
  "kexec_load": (246, 0, 0, 0, 0), "kexec_file_load": (320, -1, -1, 0, 0, 0),
  "init_module": (175, 0, 0, b""), "finit_module": (313, -1, b"", 0),
  "delete_module": (176, b"nonexistent", 0), "bpf": (321, 0, 0, 0),
  "perf_event_open": (298, 0, 0, -1, -1, 0), "keyctl": (250, 0, 0, 0, 0, 0),
  "add_key": (248, b"user", b"x", 0, 0, 0), "request_key": (249, b"user", b"x", 0, 0),
  "reboot": (169, 0, 0, 0, 0), "swapon": (167, b"/tmp/none", 0), "swapoff": (168, b"/tmp/none"),
  "settimeofday": (164, 0, 0), "clock_settime": (227, 0, 0), "clock_adjtime": (305, 0, 0),
  "adjtimex": (159, 0), "acct": (163, 0), "quotactl": (179, 0, 0, 0, 0),
  "open_by_handle_at": (304, -1, 0, 0), "name_to_handle_at": (303, -1, b"/", 0, 0, 0),
  "syslog": (103, 3, 0, 0), "lookup_dcookie": (212, 0, 0, 0), "iopl": (172, 3),
  "ioperm": (173, 0, 1, 1), "userfaultfd": (323, 0), "process_vm_readv": (310, 1, 0, 0, 0, 0, 0),
  "process_vm_writev": (311, 1, 0, 0, 0, 0, 0), "fsopen": (430, b"tmpfs", 0),
  "open_tree": (428, -100, b"/tmp", 1), "move_mount": (429, -1, b"", -1, b"", 0),
  "mount_setattr": (442, -100, b"/tmp", 0, 0, 0), "personality(ADDR_NO_RANDOMIZE)": (135, 0x0040000),
}
for name, args in calls.items():
    ctypes.set_errno(0)
    r = libc.syscall(*args)
    e = ctypes.get_errno()
    print(name, "EPERM" if r == -1 and e == errno.EPERM else "r=%d %s" % (r, errno.errorcode.get(e, e)))
ctypes.set_errno(0)
print("clone3", errno.errorcode.get(ctypes.get_errno() if libc.syscall(435, 0, 0) == -1 else 0))
print("personality(query)", libc.syscall(135, 0xffffffff) >= 0)
)PY";
  ASSERT_EQ(Exec(info, "cat > /tmp/sc.py <<'EOF'\n" + script + "\nEOF").returncode, 0);
  const ExecResult r = Exec(info, "python3 /tmp/sc.py");
  ASSERT_EQ(r.returncode, 0) << r.output;
  std::istringstream lines(r.output);
  int checked = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("clone3", 0) == 0) {
      EXPECT_EQ(line, "clone3 ENOSYS");
    } else if (line.rfind("personality(query)", 0) == 0) {
      EXPECT_EQ(line, "personality(query) True");
    } else {
      EXPECT_EQ(line.substr(line.rfind(' ') + 1), "EPERM") << line;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 39) << r.output;
  // The same through ordinary tools.
  const ExecResult unshare = Exec(info, "unshare -U true 2>&1");
  EXPECT_NE(unshare.output.find("Operation not permitted"), std::string::npos) << unshare.output;
  const ExecResult mount = Exec(info, "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>&1");
  EXPECT_NE(mount.returncode, 0) << mount.output;
}

TEST_F(JailSecurityTest, SetuidBinariesGrantNothing) {
  const SandboxInfo info = CreateOrDie("setuid");
  if (RecordOf("setuid").id_count < 1001) {
    GTEST_SKIP() << "SKIPPED: only root is mapped in the sandbox (not running as root)";
  }
  // A setuid-root copy of id(1), made by the sandbox's root, run as uid 1000.
  ASSERT_EQ(
      Exec(info, "cp /usr/bin/id /workspace/suid-id && chmod 4755 /workspace/suid-id").returncode,
      0);
  const std::string as_user = "setpriv --reuid=1000 --regid=1000 --clear-groups ";
  EXPECT_EQ(Exec(info, as_user + "/workspace/suid-id -u").output, "1000\n");
  // The host's setuid binaries (su, passwd, mount) are just as inert.
  EXPECT_EQ(Exec(info, "stat -c %A /usr/bin/passwd").output.substr(0, 4), "-rws");
  const ExecResult m = Exec(info, as_user + "mount -t tmpfs none /tmp 2>&1");
  EXPECT_NE(m.returncode, 0) << m.output;
  EXPECT_EQ(Exec(info, as_user + "grep -E '^(NoNewPrivs|CapEff)' /proc/self/status").output,
            "CapEff:\t0000000000000000\nNoNewPrivs:\t1\n");
}

TEST_F(JailSecurityTest, AGuestSocketSwappedForASymlinkIsNotFollowed) {
  // A host service on a unix socket the sandbox must never get the daemon to talk to.
  const std::string host_sock = tmp_.path() + "/host-service.sock";
  const int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, host_sock.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(lfd, 8), 0);

  const SandboxInfo info = CreateOrDie("swap");
  ASSERT_EQ(Exec(info, "rm /run/agentbox/guest.sock && ln -s " + host_sock +
                           " /run/agentbox/guest.sock && echo swapped")
                .output,
            "swapped\n");
  auto r = UnixHttpRequest(SocketPath(info), "GET", "/api/v1/health", info.guest_token, "",
                           Clock::now() + std::chrono::seconds(5));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden) << r.error().message;
  EXPECT_LT(::accept(lfd, nullptr, nullptr), 0);  // nobody connected to the host service
  ::close(lfd);
}

TEST_F(JailSecurityTest, RootInsideIsAnUnprivilegedIdOutside) {
  const SandboxInfo info = CreateOrDie("ids");
  const SandboxRecord rec = RecordOf("ids");
  EXPECT_EQ(Exec(info, "id -u; grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status").output,
            "0\nCapBnd:\t00000000a80405fb\nNoNewPrivs:\t1\nSeccomp:\t2\n");
  const std::string status = ReadText("/proc/" + std::to_string(rec.init.pid) + "/status");
  const std::string uid = std::to_string(rec.host_uid);
  EXPECT_NE(status.find("Uid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid), std::string::npos)
      << status;
  if (::geteuid() == 0) {
    EXPECT_GE(rec.host_uid, 100000u);
  }
  ASSERT_EQ(Exec(info, "touch /workspace/owned").returncode, 0);
  struct stat st {};
  ASSERT_EQ(::stat((state_dir_ + "/ids/workspace/owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, rec.host_uid);
}

}  // namespace
}  // namespace agentbox::jail
