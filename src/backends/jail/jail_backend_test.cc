// Lifecycle tests of JailBackend with real sandboxes: create, exec through the guest's socket,
// re-attach, expiry, failure paths and complete cleanup. They need namespaces (and, for limits
// and id ranges, root) and skip with the reason when the kernel or user cannot provide them.
#include "backends/jail/jail_backend.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "backends/jail/jail_test_fixture.h"
#include "backends/jail/jail_test_util.h"
#include "backends/jail/process.h"
#include "backends/jail/sandbox_record.h"
#include "common/unique_fd.h"

namespace agentbox::jail {
namespace {

using namespace agentbox::jail::testing;

using JailBackendTest = JailFixture;

std::string PidNamespaceOf(pid_t pid) {
  std::error_code ec;
  return std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/ns/pid", ec).string();
}

// Keeps `pid`'s pid namespace alive, so that its inode number (what PidNamespaceOf compares)
// is not handed to a namespace created later, e.g. by a jail of a test running in parallel,
// whose processes would then look like leftovers of this one.
UniqueFd HoldPidNamespace(pid_t pid) {
  return UniqueFd(::open(("/proc/" + std::to_string(pid) + "/ns/pid").c_str(),
                         O_RDONLY | O_CLOEXEC));
}

bool IsZombie(pid_t pid) {
  const std::string stat = ReadText("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

// Every host process in the pid namespace `ns` or in a cgroup path containing `cgroup_part`
// (zombies included unless `skip_zombies`).
std::vector<pid_t> ProcessesIn(const std::string& ns, const std::string& cgroup_part,
                               bool skip_zombies = false) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    const pid_t pid = std::stoi(name);
    if (skip_zombies && IsZombie(pid)) {
      continue;
    }
    if ((!ns.empty() && PidNamespaceOf(pid) == ns) ||
        ReadText("/proc/" + name + "/cgroup").find(cgroup_part) != std::string::npos) {
      out.push_back(pid);
    }
  }
  return out;
}

// Destroys `id` and checks that nothing of it is left: processes, cgroups, mounts, files.
void DestroyAndExpectNoTraces(JailBackend& backend, const SandboxRecord& rec) {
  const UniqueFd ns_held = HoldPidNamespace(rec.init.pid);
  ASSERT_TRUE(ns_held);
  const std::string ns = PidNamespaceOf(rec.init.pid);
  ASSERT_FALSE(ns.empty());
  const std::string dir = backend.SandboxDir(rec.id);
  ASSERT_TRUE(backend.Destroy(rec.id));
  EXPECT_EQ(GetProcessStatus(rec.init), ProcessStatus::kGone);
  EXPECT_EQ(GetProcessStatus(rec.helper), ProcessStatus::kGone);
  EXPECT_EQ(ProcessesIn(ns, "/agentbox/" + rec.id + "\n"), std::vector<pid_t>{});
  for (const auto& cg : rec.cgroups) {
    EXPECT_FALSE(std::filesystem::exists(cg)) << cg;
  }
  EXPECT_EQ(ReadText("/proc/self/mountinfo").find(dir), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir));
  if (rec.uid_slot >= 0) {
    std::error_code ec;
    EXPECT_FALSE(std::filesystem::is_symlink(
        backend.options().state_dir + "/.slots/" + std::to_string(rec.uid_slot), ec));
  }
  auto again = backend.Get(rec.id);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kNotFound);
}

TEST_F(JailBackendTest, ProbeIsUsableAndNamesLimitations) {
  const ProbeResult p = backend_->Probe();
  EXPECT_TRUE(p.usable) << p.reason;
  EXPECT_TRUE(p.reason.empty()) << p.reason;
  for (const auto& l : p.limitations) {
    std::cout << "[ limitation ] " << l << "\n";
  }
}

TEST_F(JailBackendTest, ProbeExplainsAMissingHelper) {
  JailBackendOptions o = TestOptions(state_dir_);
  o.helper_binary = "/nonexistent/agentbox-jail";
  JailBackend broken(o);
  const ProbeResult p = broken.Probe();
  EXPECT_FALSE(p.usable);
  EXPECT_NE(p.reason.find("/nonexistent/agentbox-jail"), std::string::npos) << p.reason;
}

TEST_F(JailBackendTest, CreateExecDestroyLeavesNothing) {
  SandboxSpec spec;
  spec.labels = {{"team", "infra"}};
  spec.owner = "key-a";
  spec.env = {{"GREETING", "hello"}};
  const SandboxInfo info = CreateOrDie("sb1", spec);
  EXPECT_EQ(info.state, SandboxState::kRunning);
  EXPECT_EQ(info.backend, "jail");
  EXPECT_EQ(info.guest_endpoint, "unix:" + state_dir_ + "/sb1/run/guest.sock");
  EXPECT_EQ(info.guest_token.size(), 64u);
  EXPECT_EQ(info.spec.labels.at("team"), "infra");
  EXPECT_EQ(info.spec.owner, "key-a");
  EXPECT_NEAR(info.expires_at - info.created_at, 3600, 1);
  EXPECT_TRUE(info.spec.limits.memory_bytes.has_value());  // defaults filled in

  auto health = UnixHttpRequest(SocketPath(info), "GET", "/api/v1/health", info.guest_token, "",
                                Clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(health) << health.error().message;
  EXPECT_EQ(health->status, 200);
  auto unauthorized = UnixHttpRequest(SocketPath(info), "GET", "/api/v1/health", "wrong", "",
                                      Clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(unauthorized);
  EXPECT_EQ(unauthorized->status, 401);

  const ExecResult hi = Exec(info, "echo hi");
  EXPECT_EQ(hi.error, "");
  EXPECT_EQ(hi.returncode, 0);
  EXPECT_EQ(hi.output, "hi\n");
  const ExecResult env = Exec(info, "echo $GREETING $HOME $(hostname) $(pwd)");
  EXPECT_EQ(env.output, "hello /root sb1 /workspace\n");
  // The workspace is the sandbox's host directory.
  EXPECT_EQ(Exec(info, "echo data > /workspace/f.txt").returncode, 0);
  EXPECT_EQ(ReadText(state_dir_ + "/sb1/workspace/f.txt"), "data\n");
  // The guest is pid 1 and reaps orphans.
  EXPECT_EQ(Exec(info, "cat /proc/1/comm").output, "guest\n");
  EXPECT_EQ(Exec(info, "(sleep 0.1 &) ; sleep 0.5; ps -eo stat= | grep -c Z").output, "0\n");

  auto got = backend_->Get("sb1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->state, SandboxState::kRunning);
  EXPECT_EQ(got->guest_token, info.guest_token);
  DestroyAndExpectNoTraces(*backend_, RecordOf("sb1"));
}

TEST_F(JailBackendTest, RejectsBadIdsDuplicatesAndUnknownIds) {
  for (const char* bad : {"", ".hidden", "a/b", "..", "x y"}) {
    auto r = backend_->Create(bad, {});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
  }
  // A relative path is no image ("images/x.tar" would name a Docker engine image: images.md).
  SandboxSpec relative;
  relative.image = "./images/x.tar";
  EXPECT_EQ(backend_->Create("rel", relative).error().code, ErrorCode::kInvalidArgument);
  SandboxSpec few_files;
  few_files.limits.open_files = 100;  // the guest itself needs more
  EXPECT_EQ(backend_->Create("fds", few_files).error().code, ErrorCode::kInvalidArgument);
  CreateOrDie("dup");
  auto dup = backend_->Create("dup", {});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::kConflict);
  EXPECT_EQ(Exec(*backend_->Get("dup"), "echo still").output, "still\n");
  EXPECT_EQ(backend_->Get("nope").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(backend_->Destroy("nope").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(backend_->SetExpiry("nope", 1).error().code, ErrorCode::kNotFound);
}

TEST_F(JailBackendTest, FailedCreateLeavesNothing) {
  SandboxSpec spec;
  spec.image = tmp_.path() + "/no-such-image";
  auto r = backend_->Create("bad-image", spec);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);  // an unknown image (docs/images.md)
  EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/bad-image"));

  // A guest that cannot start: the helper's error reaches the caller, nothing is left.
  JailBackendOptions o = TestOptions(state_dir_);
  o.guest_binary = "/bin/false";
  o.start_timeout = std::chrono::seconds(5);
  JailBackend broken(o);
  auto failed = broken.Create("bad-guest", {});
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("exited"), std::string::npos) << failed.error().message;
  EXPECT_FALSE(std::filesystem::exists(state_dir_ + "/bad-guest"));
  EXPECT_TRUE(ProcessesIn("", "/agentbox/bad-guest\n").empty());
}

TEST_F(JailBackendTest, SecondInstanceReattachesAfterRestart) {
  const SandboxInfo a = CreateOrDie("keep-a");
  const SandboxInfo b = CreateOrDie("keep-b");
  EXPECT_EQ(Exec(a, "echo state > /tmp/s; cd /tmp").returncode, 0);
  const SandboxRecord rec_a = RecordOf("keep-a");
  backend_.reset();  // the "daemon" goes away; sandboxes keep running

  backend_ = std::make_unique<JailBackend>(TestOptions(state_dir_));
  auto all = backend_->List();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, "keep-a");
  EXPECT_EQ((*all)[1].id, "keep-b");
  for (const auto& info : *all) {
    EXPECT_EQ(info.state, SandboxState::kRunning);
  }
  auto again = backend_->Get("keep-a");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->guest_endpoint, a.guest_endpoint);
  EXPECT_EQ(again->guest_token, a.guest_token);
  // Session state survived: the guest never restarted.
  EXPECT_EQ(Exec(*again, "cat s; pwd").output, "state\n/tmp\n");

  ASSERT_TRUE(backend_->SetExpiry("keep-b", 12345.5));
  JailBackend third(TestOptions(state_dir_));
  EXPECT_DOUBLE_EQ(third.Get("keep-b")->expires_at, 12345.5);
  DestroyAndExpectNoTraces(third, rec_a);
  DestroyAndExpectNoTraces(third, RecordOf("keep-b"));
}

TEST_F(JailBackendTest, ReportsStoppedWhenTheSandboxDies) {
  CreateOrDie("dies");
  const SandboxRecord rec = RecordOf("dies");
  ASSERT_EQ(::kill(rec.init.pid, SIGKILL), 0);
  auto h = ProcessHandle::Open(rec.helper);
  ASSERT_TRUE(h);
  ASSERT_TRUE(h->WaitExit(Clock::now() + std::chrono::seconds(10)));  // helper ends with it
  auto info = backend_->Get("dies");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->state, SandboxState::kStopped);
  EXPECT_FALSE(info->detail.empty());
  EXPECT_EQ(GetProcessStatus(rec.helper), ProcessStatus::kGone);  // Get reaped it
  for (const auto& cg : rec.cgroups) {
    EXPECT_FALSE(std::filesystem::exists(cg)) << cg << " (the helper removes cgroups)";
  }
  ASSERT_TRUE(backend_->Destroy("dies"));
  EXPECT_FALSE(std::filesystem::exists(backend_->SandboxDir("dies")));
}

TEST_F(JailBackendTest, RestartGuestReplacesAStoppedGuestAndKeepsTheWorkspace) {
  const SandboxInfo info = CreateOrDie("stuck");
  ASSERT_EQ(Exec(info, "echo kept > /workspace/f; echo gone > /tmp/t").returncode, 0);
  ASSERT_TRUE(StartProcess(info, "sleep 1000"));
  // The sandbox overwrites the token file the guest reads at start: the restart puts it back.
  ASSERT_EQ(Exec(info, "echo planted > /run/agentbox/token").returncode, 0);
  const SandboxRecord before = RecordOf("stuck");
  ASSERT_EQ(::kill(before.init.pid, SIGSTOP), 0);  // what a ptrace attach used to leave

  auto restarted = backend_->RestartGuest("stuck");
  ASSERT_TRUE(restarted) << restarted.error().message;
  EXPECT_EQ(restarted->state, SandboxState::kRunning);
  EXPECT_EQ(restarted->guest_endpoint, info.guest_endpoint);
  EXPECT_EQ(restarted->guest_token, info.guest_token);
  const SandboxRecord after = RecordOf("stuck");
  EXPECT_NE(after.init, before.init);
  EXPECT_EQ(after.uid_slot, before.uid_slot);
  EXPECT_NE(GetProcessStatus(before.init), ProcessStatus::kRunning);
  EXPECT_EQ(GetProcessStatus(before.helper), ProcessStatus::kGone);
  EXPECT_EQ(Exec(*restarted, "cat /workspace/f; cat /tmp/t 2>/dev/null || echo no-tmp").output,
            "kept\nno-tmp\n");
  EXPECT_EQ(Exec(*restarted, "ps -eo args= | grep -c '^sleep 1000' || true").output, "0\n");

  // A sandbox whose guest died can be restarted too.
  ASSERT_EQ(::kill(after.init.pid, SIGKILL), 0);
  auto helper = ProcessHandle::Open(after.helper);
  ASSERT_TRUE(helper);
  ASSERT_TRUE(helper->WaitExit(Clock::now() + std::chrono::seconds(10)));
  ASSERT_EQ(backend_->Get("stuck")->state, SandboxState::kStopped);
  auto again = backend_->RestartGuest("stuck");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(Exec(*again, "cat /workspace/f").output, "kept\n");

  EXPECT_EQ(backend_->RestartGuest("no-such").error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(backend_->Destroy("stuck"));
  EXPECT_FALSE(std::filesystem::exists(backend_->SandboxDir("stuck")));
}

TEST_F(JailBackendTest, KillingTheHelperEndsTheSandbox) {
  const SandboxInfo info = CreateOrDie("anchor");
  ASSERT_TRUE(StartProcess(info, "sleep 1000"));
  const SandboxRecord rec = RecordOf("anchor");
  const UniqueFd ns_held = HoldPidNamespace(rec.init.pid);
  ASSERT_TRUE(ns_held);
  const std::string ns = PidNamespaceOf(rec.init.pid);
  auto init = ProcessHandle::Open(rec.init);
  ASSERT_TRUE(init);
  ASSERT_EQ(::kill(rec.helper.pid, SIGKILL), 0);
  EXPECT_TRUE(init->WaitExit(Clock::now() + std::chrono::seconds(10)));  // PR_SET_PDEATHSIG
  auto stopped = backend_->Get("anchor");
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->state, SandboxState::kStopped);
  ASSERT_TRUE(backend_->Destroy("anchor"));
  EXPECT_EQ(GetProcessStatus(rec.helper), ProcessStatus::kGone);
  // The init lost its parent and was reparented to the host's pid 1, which alone can reap it:
  // it may linger as a zombie where pid 1 does not reap. Nothing of the jail still runs.
  EXPECT_NE(GetProcessStatus(rec.init), ProcessStatus::kRunning);
  EXPECT_EQ(ProcessesIn(ns, "/agentbox/anchor\n", /*skip_zombies=*/true), std::vector<pid_t>{});
  for (const auto& cg : rec.cgroups) {
    EXPECT_FALSE(std::filesystem::exists(cg)) << cg;
  }
  EXPECT_FALSE(std::filesystem::exists(backend_->SandboxDir("anchor")));
}

TEST_F(JailBackendTest, TheSandboxLogIsCapped) {
  JailBackendOptions o = TestOptions(state_dir_);
  o.log_cap_bytes = 40;  // less than the guest's first log line
  JailBackend capped(o);
  auto info = capped.Create("capped", {});
  ASSERT_TRUE(info) << info.error().message;
  auto rec = LoadSandboxRecord(capped.SandboxDir("capped") + "/spec.json");
  ASSERT_TRUE(rec);
  auto helper = ProcessHandle::Open(rec->helper);
  ASSERT_TRUE(helper);
  ASSERT_EQ(::kill(rec->init.pid, SIGKILL), 0);
  ASSERT_TRUE(helper->WaitExit(Clock::now() + std::chrono::seconds(10)));
  const std::string log = ReadText(capped.SandboxDir("capped") + "/jail.log");
  EXPECT_NE(log.find("bytes of output dropped past the log cap of 40 bytes"), std::string::npos)
      << log;
  EXPECT_EQ(log.find("guest.listening"), std::string::npos) << log;
  ASSERT_TRUE(capped.Destroy("capped"));
}

TEST_F(JailBackendTest, ConcurrentCreatesGetDistinctIdRanges) {
  std::vector<std::thread> threads;
  std::vector<Result<SandboxInfo>> results(4, Fail(ErrorCode::kInternal, "not run"));
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { results[i] = backend_->Create("par" + std::to_string(i), {}); });
  }
  for (auto& t : threads) {
    t.join();
  }
  std::set<uint32_t> uids;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(results[i]) << results[i].error().message;
    EXPECT_EQ(Exec(*results[i], "echo " + std::to_string(i)).output, std::to_string(i) + "\n");
    uids.insert(RecordOf("par" + std::to_string(i)).host_uid);
  }
  if (::geteuid() == 0) {
    EXPECT_EQ(uids.size(), 4u);  // unprivileged, every sandbox maps the caller's one id
  }
}

TEST_F(JailBackendTest, LimitsReachTheCgroupsAndRlimits) {
  SandboxSpec spec;
  spec.limits.memory_bytes = 128 << 20;
  spec.limits.pids = 100;
  spec.limits.cpus = 0.5;
  spec.limits.open_files = 2048;
  spec.limits.file_size_bytes = 1 << 20;
  const SandboxInfo info = CreateOrDie("limits", spec);
  const SandboxRecord rec = RecordOf("limits");
  if (rec.detail.find("no writable cgroup") != std::string::npos) {
    GTEST_SKIP() << "SKIPPED: " << rec.detail;
  }
  std::map<std::string, std::string> files;
  for (const auto& cg : rec.cgroups) {
    for (const char* f :
         {"memory.limit_in_bytes", "memory.max", "pids.max", "cpu.cfs_quota_us", "cpu.max"}) {
      if (std::filesystem::exists(cg + "/" + f)) {
        files[f] = ReadText(cg + "/" + f);
      }
    }
  }
  if (files.count("memory.limit_in_bytes")) {  // cgroup v1
    EXPECT_EQ(files["memory.limit_in_bytes"], std::to_string(128 << 20) + "\n");
    EXPECT_EQ(files["cpu.cfs_quota_us"], "5000\n");
  } else {
    EXPECT_EQ(files["memory.max"], std::to_string(128 << 20) + "\n");
    EXPECT_EQ(files["cpu.max"], "5000 10000\n");
  }
  EXPECT_EQ(files["pids.max"], "100\n");
  // Inside, the cgroup namespace hides the host's hierarchy.
  const ExecResult cg = Exec(info, "cat /proc/self/cgroup | grep -c agentbox || true");
  EXPECT_EQ(cg.output, "0\n") << cg.error;
  EXPECT_EQ(Exec(info, "ulimit -n; ulimit -f; ulimit -c").output, "2048\n1024\n0\n");
  EXPECT_NE(Exec(info, "head -c 2000000 /dev/zero > /tmp/big").returncode, 0);  // SIGXFSZ
}

TEST_F(JailBackendTest, HostNetworkIsAnExplicitOption) {
  // A listener on the host's loopback: reachable only from a sandbox sharing the host network.
  HostLoopbackListener listener;
  const std::string port = listener.port();
  ASSERT_FALSE(port.empty());
  SandboxSpec shared;
  shared.network = NetworkMode::kHost;
  const SandboxInfo info = CreateOrDie("hostnet", shared);
  const ExecResult r = Exec(info, "exec 3<>/dev/tcp/127.0.0.1/" + port + " && echo connected");
  EXPECT_EQ(r.output, "connected\n");
}

// A minimal image: a static busybox as /bin/sh. The guest falls back to POSIX sh.
std::string MakeBusyboxImage(const std::string& dir) {
  std::filesystem::create_directories(dir + "/bin");
  std::filesystem::copy_file("/usr/bin/busybox", dir + "/bin/busybox");
  for (const char* tool : {"sh", "ls", "cat", "echo", "touch", "id"}) {
    std::filesystem::create_symlink("busybox", dir + "/bin/" + tool);
  }
  std::filesystem::create_directories(dir + "/etc");
  std::ofstream(dir + "/etc/image-release") << "busybox-test\n";
  return dir;
}

TEST_F(JailBackendTest, RootFilesystemFromADirectoryOrATarball) {
  if (::access("/usr/bin/busybox", X_OK) != 0 || ::access("/usr/bin/tar", X_OK) != 0) {
    GTEST_SKIP() << "SKIPPED: needs /usr/bin/busybox (static) and /usr/bin/tar";
  }
  const std::string image = MakeBusyboxImage(tmp_.path() + "/image");
  SandboxSpec from_dir;
  from_dir.image = image;
  const SandboxInfo d = CreateOrDie("img-dir", from_dir);
  EXPECT_EQ(Exec(d, "cat /etc/image-release").output, "busybox-test\n");
  EXPECT_NE(Exec(d, "ls /usr").returncode, 0);  // nothing of the host's
  // A writable copy-on-write root: the shared image directory is never written.
  EXPECT_EQ(Exec(d, "touch /bin/x && rm /etc/image-release && echo written").output, "written\n");
  EXPECT_EQ(Exec(d, "id -u").output, "0\n");
  EXPECT_FALSE(std::filesystem::exists(image + "/bin/x"));
  EXPECT_TRUE(std::filesystem::exists(image + "/etc/image-release"));
  const SandboxInfo d2 = CreateOrDie("img-other", from_dir);
  EXPECT_EQ(Exec(d2, "ls /bin/x").returncode, 1) << "one sandbox's root leaked into another's";
  EXPECT_EQ(Exec(d2, "cat /etc/image-release").output, "busybox-test\n");

  const std::string tarball = tmp_.path() + "/image.tar.gz";
  ASSERT_EQ(std::system(("tar -czf " + tarball + " -C " + image + " .").c_str()), 0);
  SandboxSpec from_tar;
  from_tar.image = tarball;
  const SandboxInfo t = CreateOrDie("img-tar", from_tar);
  EXPECT_EQ(Exec(t, "cat /etc/image-release").output, "busybox-test\n");
  EXPECT_EQ(Exec(t, "touch /bin/x && echo writable").output, "writable\n");
  EXPECT_EQ(Exec(t, "id -u").output, "0\n");
  EXPECT_FALSE(std::filesystem::exists(image + "/bin/x"));
  DestroyAndExpectNoTraces(*backend_, RecordOf("img-tar"));
  DestroyAndExpectNoTraces(*backend_, RecordOf("img-dir"));
}

TEST_F(JailBackendTest, RootChangesSurviveARestartOfTheGuest) {
  if (::access("/usr/bin/busybox", X_OK) != 0) {
    GTEST_SKIP() << "SKIPPED: needs /usr/bin/busybox (static)";
  }
  SandboxSpec spec;
  spec.image = MakeBusyboxImage(tmp_.path() + "/image");
  const SandboxInfo s = CreateOrDie("img-restart", spec);
  ASSERT_EQ(Exec(s, "echo kept > /etc/note && rm /etc/image-release && echo ok").output, "ok\n");
  ASSERT_TRUE(backend_->RestartGuest("img-restart").has_value());
  EXPECT_EQ(Exec(s, "cat /etc/note; test -e /etc/image-release || echo gone").output,
            "kept\ngone\n");
  DestroyAndExpectNoTraces(*backend_, RecordOf("img-restart"));
}

// A daemon that died before it recorded an image sandbox: the next one's Recover finds the helper
// by its command line; the overlay lived only in the jail's mount namespace, so nothing of it is
// left on the host. A killed overlay probe's scratch directory goes too.
TEST_F(JailBackendTest, RecoverRollsBackAnImageSandboxWithoutTraces) {
  if (::access("/usr/bin/busybox", X_OK) != 0) {
    GTEST_SKIP() << "SKIPPED: needs /usr/bin/busybox (static)";
  }
  SandboxSpec spec;
  spec.image = MakeBusyboxImage(tmp_.path() + "/image");
  const SandboxInfo s = CreateOrDie("img-crashed", spec);
  ASSERT_EQ(Exec(s, "echo x > /etc/written && echo ok").output, "ok\n");
  const SandboxRecord rec = RecordOf("img-crashed");
  const std::string dir = backend_->SandboxDir("img-crashed");
  ASSERT_EQ(::unlink((dir + "/spec.json").c_str()), 0);  // as if the create never finished
  const std::string probe = state_dir_ + "/.probe-killed";
  std::filesystem::create_directories(probe + "/upper");
  const struct timespec old[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, probe.c_str(), old, 0), 0);

  JailBackend next(TestOptions(state_dir_));
  auto report = next.Recover();
  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ((*report)["create_rolled_back"], 1);
  EXPECT_EQ(GetProcessStatus(rec.helper), ProcessStatus::kGone);
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(std::filesystem::exists(probe));
  EXPECT_EQ(ReadText("/proc/self/mountinfo").find(dir), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(spec.image + "/etc/image-release"));
  EXPECT_FALSE(std::filesystem::exists(spec.image + "/etc/written"));
}

TEST_F(JailBackendTest, ReadOnlyRootRefusesWritesOutsideTheWritableMounts) {
  SandboxSpec host;
  host.read_only_root = true;
  const SandboxInfo h = CreateOrDie("ro-host", host);
  EXPECT_NE(Exec(h, "touch /root/x 2>&1").output.find("Read-only file system"), std::string::npos);
  EXPECT_EQ(Exec(h, "touch /workspace/x /tmp/x /dev/shm/x && echo ok").output, "ok\n");
  if (::access("/usr/bin/busybox", X_OK) != 0) {
    GTEST_SKIP() << "SKIPPED (image half): needs /usr/bin/busybox (static)";
  }
  SandboxSpec image;
  image.image = MakeBusyboxImage(tmp_.path() + "/image");
  image.read_only_root = true;
  const SandboxInfo i = CreateOrDie("ro-image", image);
  EXPECT_NE(Exec(i, "touch /bin/x 2>&1").output.find("Read-only file system"), std::string::npos);
  EXPECT_EQ(Exec(i, "touch /workspace/x /tmp/x && echo ok").output, "ok\n");
}

}  // namespace
}  // namespace agentbox::jail
