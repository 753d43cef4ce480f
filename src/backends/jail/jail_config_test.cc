// Unit tests of the jail's pieces that need no namespaces: config and record codecs, process
// identity, file utilities, the deny list and mount source checks.
#include "backends/jail/jail_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "backends/jail/fs_util.h"
#include "backends/jail/jail_test_util.h"
#include "backends/jail/process.h"
#include "backends/jail/sandbox_record.h"
#include "backends/jail/seccomp.h"

namespace agentbox::jail {
namespace {

using testing::TempDir;

JailConfig SampleConfig() {
  JailConfig c;
  c.id = "sb-1";
  c.hostname = "sb-1";
  c.log_cap_bytes = 1234;
  c.user = {2000000000, 2000000000, 65536, false};
  c.mount.root_dir = "/state/sb-1/root";
  c.mount.system_entries = DefaultSystemEntries();
  c.mount.workspace_dir = "/state/sb-1/workspace";
  c.mount.run_dir = "/state/sb-1/run";
  c.mount.guest_binary = "/opt/agentbox-guest";
  c.mount.tmp_bytes = 8 << 20;
  c.mount.overlay.lower_dirs = {"/layers/a", "/layers/b"};
  c.mount.overlay.upper_dir = "/state/sb-1/disk/rootfs/upper";
  c.mount.overlay.work_dir = "/state/sb-1/disk/rootfs/work";
  c.mount.read_only_root = true;
  c.net.share_host = true;
  c.cgroup.name = "agentbox/sb-1";
  c.cgroup.memory_bytes = 64 << 20;
  c.cgroup.pids = 64;
  c.rlimits.open_files = 1024;
  c.caps.keep = DefaultKeptCapabilities();
  c.exec.argv = {"/.agentbox/guest", "serve"};
  c.exec.env = {"PATH=/usr/bin"};
  return c;
}

TEST(JailConfigTest, RoundTripsThroughJson) {
  const JailConfig c = SampleConfig();
  auto back = JailConfigFromJson(JailConfigToJson(c));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(DumpJson(JailConfigToJson(*back)), DumpJson(JailConfigToJson(c)));
  EXPECT_EQ(back->user.host_uid, 2000000000u);
  EXPECT_EQ(back->cgroup.pids, 64u);
  EXPECT_FALSE(back->cgroup.cpus.has_value());
  EXPECT_FALSE(back->rlimits.file_size_bytes.has_value());
  EXPECT_TRUE(back->net.share_host);
  EXPECT_EQ(back->mount.overlay.lower_dirs, (std::vector<std::string>{"/layers/a", "/layers/b"}));
  EXPECT_TRUE(back->mount.read_only_root);
  // A config written before overlay roots existed (a sandbox restarted by a newer helper).
  Json old = JailConfigToJson(c);
  old["mount"].erase("overlay");
  old["mount"].erase("read_only_root");
  auto legacy = JailConfigFromJson(old);
  ASSERT_TRUE(legacy) << legacy.error().message;
  EXPECT_FALSE(legacy->mount.overlay.enabled());
  EXPECT_FALSE(legacy->mount.read_only_root);
}

TEST(JailConfigTest, NamesTheMissingField) {
  Json j = JailConfigToJson(SampleConfig());
  j["mount"].erase("run_dir");
  auto back = JailConfigFromJson(j);
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(back.error().message.find("run_dir"), std::string::npos) << back.error().message;
}

TEST(SandboxRecordTest, RoundTripsThroughJson) {
  SandboxRecord r;
  r.id = "abc";
  r.spec.image = "/images/x.tar";
  r.spec.env = {{"A", "1"}};
  r.spec.labels = {{"team", "x"}};
  r.spec.owner = "key-1";
  r.spec.limits.memory_bytes = 1 << 30;
  r.spec.limits.cpus = 0.5;
  r.spec.network = NetworkMode::kHost;
  r.created_at = 1000.5;
  r.expires_at = 4600.5;
  r.helper = {10, 20, "boot"};
  r.init = {11, 21, "boot"};
  r.cgroups = {"/sys/fs/cgroup/pids/agentbox/abc"};
  r.host_uid = r.host_gid = 2000065536;
  r.id_count = 65536;
  r.uid_slot = 1;
  r.token = "t";
  auto back = SandboxRecordFromJson(SandboxRecordToJson(r));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(DumpJson(SandboxRecordToJson(*back)), DumpJson(SandboxRecordToJson(r)));
  EXPECT_EQ(back->spec.limits, r.spec.limits);
  EXPECT_EQ(back->init, r.init);
  EXPECT_EQ(back->spec.network, NetworkMode::kHost);
}

TEST(ProcessIdentityTest, RecognisesItselfAndRejectsARecycledPid) {
  auto me = IdentifyProcess(::getpid());
  ASSERT_TRUE(me) << me.error().message;
  EXPECT_EQ(GetProcessStatus(*me), ProcessStatus::kRunning);
  ProcessIdentity recycled = *me;
  recycled.start_time += 1;  // same pid, another process
  EXPECT_EQ(GetProcessStatus(recycled), ProcessStatus::kGone);
  EXPECT_FALSE(ProcessHandle::Open(recycled));
  ProcessIdentity other_boot = *me;
  other_boot.boot_id = "not-this-boot";
  EXPECT_EQ(GetProcessStatus(other_boot), ProcessStatus::kGone);
}

TEST(ProcessHandleTest, WaitsForExitAndReapsItsChild) {
  ChildProcess::Options o;
  o.path = "/bin/sh";
  o.argv = {"sh", "-c", "exit 3"};
  auto child = ChildProcess::Spawn(o);
  ASSERT_TRUE(child) << child.error().message;
  auto id = IdentifyProcess(child->pid());
  ASSERT_TRUE(id);
  auto handle = ProcessHandle::Open(*id);
  ASSERT_TRUE(handle);
  ASSERT_TRUE(handle->WaitExit(Clock::now() + std::chrono::seconds(10)));
  EXPECT_EQ(GetProcessStatus(*id), ProcessStatus::kZombie);
  handle->ReapIfChild();
  EXPECT_EQ(GetProcessStatus(*id), ProcessStatus::kGone);
  child->Detach();  // already reaped
}

TEST(FsUtilTest, RemoveTreeOpensUpLockedDirectories) {
  TempDir tmp;
  const std::string top = tmp.path() + "/top";
  ASSERT_EQ(::mkdir(top.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((top + "/locked").c_str(), 0755), 0);
  std::ofstream(top + "/locked/file") << "x";
  ASSERT_EQ(::symlink("/etc/passwd", (top + "/link").c_str()), 0);
  ASSERT_EQ(::chmod((top + "/locked").c_str(), 0), 0);
  ASSERT_TRUE(RemoveTree(top));
  EXPECT_NE(::access(top.c_str(), F_OK), 0);
  EXPECT_EQ(::access("/etc/passwd", F_OK), 0);  // the symlink was removed, not followed
  EXPECT_TRUE(RemoveTree(top));                 // already gone: success
}

TEST(FsUtilTest, WriteFileAtomicReplacesContent) {
  TempDir tmp;
  const std::string f = tmp.path() + "/f.json";
  ASSERT_TRUE(WriteFileAtomic(f, "one", 0600));
  ASSERT_TRUE(WriteFileAtomic(f, "two", 0600));
  auto text = ReadSmallFile(f);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "two");
  struct stat st {};
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(FsUtilTest, OpenUnlinkedFileLeavesNoName) {
  TempDir tmp;
  auto fd = OpenUnlinkedFile(tmp.path());
  ASSERT_TRUE(fd) << fd.error().message;
  ASSERT_EQ(::write(fd->Get(), "spool", 5), 5);
  char buf[8] = {};
  ASSERT_EQ(::pread(fd->Get(), buf, sizeof(buf), 0), 5);
  EXPECT_STREQ(buf, "spool");
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
  auto missing = OpenUnlinkedFile(tmp.path() + "/absent");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("/absent"), std::string::npos);
}

TEST(SeccompTest, DenyListCoversDockersDefaultDenials) {
  const auto& denied = DeniedSyscalls();
  for (const char* name : {"mount",
                           "umount2",
                           "pivot_root",
                           "kexec_load",
                           "kexec_file_load",
                           "init_module",
                           "finit_module",
                           "delete_module",
                           "bpf",
                           "perf_event_open",
                           "keyctl",
                           "add_key",
                           "request_key",
                           "reboot",
                           "swapon",
                           "swapoff",
                           "settimeofday",
                           "clock_settime",
                           "clock_adjtime",
                           "adjtimex",
                           "acct",
                           "quotactl",
                           "setns",
                           "process_vm_readv",
                           "process_vm_writev",
                           "open_by_handle_at",
                           "name_to_handle_at",
                           "syslog",
                           "lookup_dcookie",
                           "iopl",
                           "ioperm",
                           "userfaultfd",
                           "fsopen",
                           "open_tree",
                           "move_mount"}) {
    EXPECT_NE(std::find(denied.begin(), denied.end(), name), denied.end()) << name;
  }
}

TEST(MountNsTest, PrepareMountsReportsAMissingSource) {
  TempDir tmp;
  MountNsConfig cfg;
  cfg.root_dir = tmp.path();
  cfg.workspace_dir = tmp.path() + "/missing";
  cfg.run_dir = tmp.path();
  cfg.guest_binary = "/bin/sh";
  cfg.system_entries = DefaultSystemEntries();
  auto plan = PrepareMounts(cfg);
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.error().message.find("missing"), std::string::npos) << plan.error().message;
}

TEST(MountNsTest, ImageEntriesSkipWhatTheJailProvides) {
  TempDir tmp;
  for (const char* d : {"bin", "proc", "dev", "workspace", "etc"}) {
    ASSERT_EQ(::mkdir((tmp.path() + "/" + d).c_str(), 0755), 0);
  }
  ASSERT_EQ(::symlink("bin", (tmp.path() + "/sbin").c_str()), 0);
  MountNsConfig cfg;
  cfg.root_dir = tmp.path();
  cfg.workspace_dir = tmp.path() + "/workspace";
  cfg.run_dir = tmp.path();
  cfg.guest_binary = "/bin/sh";
  cfg.system_source = tmp.path();
  auto plan = PrepareMounts(cfg);
  ASSERT_TRUE(plan) << plan.error().message;
  std::vector<std::string> names;
  for (const auto& s : plan->system) {
    names.push_back(s.name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"bin", "etc", "sbin"}));
  EXPECT_EQ(plan->system[2].kind, MountSource::Kind::kSymlink);
  EXPECT_EQ(plan->system[2].link_target, "bin");
}

}  // namespace
}  // namespace agentbox::jail
