// The jail backend's crash recovery (docs/reliability.md): what a daemon killed in the middle of
// a create or a destroy left behind, rolled back or finished by the next daemon.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <ctime>
#include <map>
#include <set>

#include "backends/jail/cgroup.h"
#include "backends/jail/fs_util.h"
#include "backends/jail/jail_backend.h"
#include "backends/jail/jail_image.h"
#include "backends/jail/process.h"
#include "common/crash_point.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace agentbox::jail {
namespace {

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      out.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  return out;
}

// The NUL-separated arguments of /proc/<pid>/cmdline (empty for a zombie or a kernel thread).
std::vector<std::string> CommandLine(const std::string& pid) {
  std::vector<std::string> args;
  UniqueFd fd(::open(("/proc/" + pid + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return args;
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd.Get(), buf, sizeof(buf))) > 0 && text.size() < 65536) {
    text.append(buf, static_cast<size_t>(n));
  }
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\0', pos);
    if (end == std::string::npos) {
      end = text.size();
    }
    args.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return args;
}

// Helpers (`agentbox-jail run <state_dir>/<id>/jail.json`) of sandboxes of `state_dir`, by id.
// A helper outlives the daemon that started it, so this finds the jails of creates that died
// before they wrote their record.
std::map<std::string, std::vector<pid_t>> FindHelpers(const std::string& state_dir) {
  std::map<std::string, std::vector<pid_t>> out;
  const std::string prefix = state_dir + "/";
  const std::string suffix = "/jail.json";
  for (const auto& name : DirEntries("/proc")) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) {
      continue;
    }
    const auto args = CommandLine(name);
    if (args.size() != 3 || args[1] != "run" || !args[2].starts_with(prefix) ||
        !args[2].ends_with(suffix) || args[2].size() <= prefix.size() + suffix.size()) {
      continue;
    }
    const std::string id =
        args[2].substr(prefix.size(), args[2].size() - prefix.size() - suffix.size());
    if (ValidSandboxId(id)) {
      out[id].push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return out;
}

// SIGKILL to a recorded process and waits for it to exit; true if it was running.
bool KillAndWait(const ProcessIdentity& who, Clock::time_point deadline) {
  auto h = ProcessHandle::Open(who);
  if (!h) {
    return false;
  }
  const bool running = GetProcessStatus(who) == ProcessStatus::kRunning;
  (void)h->Signal(SIGKILL);
  h->WaitExit(deadline);
  h->ReapIfChild();
  return running;
}

}  // namespace

int JailBackend::ReleaseSlotsOf(const std::string& id) {
  const std::string slots = opts_.state_dir + "/.slots";
  std::lock_guard guard(slot_mu_);
  UniqueFd lock(::open((slots + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock || ::flock(lock.Get(), LOCK_EX) != 0) {
    return 0;
  }
  int released = 0;
  for (const auto& name : DirEntries(slots)) {
    if (name.empty() || name[0] == '.') {
      continue;
    }
    const std::string path = slots + "/" + name;
    char owner[256];
    const ssize_t len = ::readlink(path.c_str(), owner, sizeof(owner) - 1);
    if (len > 0 && std::string(owner, static_cast<size_t>(len)) == id &&
        ::unlink(path.c_str()) == 0) {
      ++released;
    }
  }
  return released;
}

Result<void> JailBackend::RemoveEverything(const std::string& id, const SandboxRecord* rec,
                                           Clock::time_point deadline, RecoveryReport* report) {
  auto count = [report](const char* what, int n) {
    if (report != nullptr && n > 0) {
      (*report)[what] += n;
    }
  };
  const std::string dir = SandboxDir(id);
  std::vector<std::string> cgroups;
  if (rec != nullptr) {
    // SIGKILL to the init ends the whole pid namespace; by the time the init has exited, every
    // other process of the jail is gone.
    if (auto init = ProcessHandle::Open(rec->init)) {
      const bool running = GetProcessStatus(rec->init) == ProcessStatus::kRunning;
      (void)init->Signal(SIGKILL);
      if (!init->WaitExit(deadline)) {
        return Fail(ErrorCode::kTimeout, "sandbox '" + id + "' did not exit after SIGKILL");
      }
      count("process", running ? 1 : 0);
    }
    // The helper reaps the init, removes the cgroups and exits.
    if (auto helper = ProcessHandle::Open(rec->helper)) {
      if (!helper->WaitExit(std::min(deadline, Clock::now() + std::chrono::seconds(2)))) {
        count("process", KillAndWait(rec->helper, deadline) ? 1 : 0);
      }
      helper->ReapIfChild();
    }
    cgroups = rec->cgroups;
  } else {
    // No record: a create that died half-way. Its helper is found by its command line; the
    // jail dies with it (PR_SET_PDEATHSIG), and its cgroups kill whatever is left.
    auto helpers = FindHelpers(opts_.state_dir);
    for (pid_t pid : helpers[id]) {
      if (auto who = IdentifyProcess(pid)) {
        count("process", KillAndWait(*who, deadline) ? 1 : 0);
      }
    }
  }
  if (cgroups.empty()) {
    cgroups = GuessCgroups(id);
  }
  int present = 0;
  for (const auto& g : cgroups) {
    present += PathExists(g) ? 1 : 0;
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (auto r = RemoveCgroups(cgroups, std::max(left, std::chrono::milliseconds(100))); !r) {
    return Fail(r.error());
  }
  count("cgroup", present);
  CrashPoint("jail.destroy.killed");
  if (rec != nullptr && !rec->egress_link.empty()) {
    DetachEgress(rec->egress_link);  // the namespace died with the jail: its rules remain
    count("egress_link", 1);
  }
  auto unmounted = UnmountBelow(dir);
  if (!unmounted) {
    return Fail(unmounted.error());
  }
  count("mount", *unmounted);
  CrashPoint("jail.destroy.unmounted");
  if (PathExists(dir)) {
    if (auto r = RemoveTree(dir); !r) {
      return Fail(r.error());
    }
    count("directory", 1);
  }
  CrashPoint("jail.destroy.removed");
  if (images_) {
    images_->Release(ImageLease(id));  // its image's layers may be evicted from now on
  }
  if (rec != nullptr) {
    ReleaseSlot(rec->uid_slot, id);
  }
  if (rec == nullptr || report != nullptr) {
    count("id_slot", ReleaseSlotsOf(id));  // a crashed create's, allocated before its record
  }
  return {};
}

Result<RecoveryReport> JailBackend::Recover() {
  RecoveryReport report;
  std::set<std::string> ids;
  for (const auto& name : DirEntries(opts_.state_dir)) {
    if (ValidSandboxId(name)) {
      ids.insert(name);
    } else if (name.starts_with(".probe-")) {
      // The overlay probe's scratch directory of a helper killed mid-probe (its mounts lived in
      // the probe's own mount namespace). One younger than a minute may be a probe running now.
      const std::string path = opts_.state_dir + "/" + name;
      struct stat st {};
      if (::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
          st.st_mtime < ::time(nullptr) - 60 && RemoveTree(path)) {
        ++report["directory"];
      }
    }
  }
  const std::string slots = opts_.state_dir + "/.slots";
  for (const auto& name : DirEntries(slots)) {
    char owner[256];
    const ssize_t len = ::readlink((slots + "/" + name).c_str(), owner, sizeof(owner) - 1);
    if (len > 0 && ValidSandboxId(std::string(owner, static_cast<size_t>(len)))) {
      ids.insert(std::string(owner, static_cast<size_t>(len)));
    }
  }
  for (const auto& [id, pids] : FindHelpers(opts_.state_dir)) {
    ids.insert(id);
  }
  // Image leases of sandboxes that are gone (a create that died before its directory existed).
  if (images_) {
    const std::string prefix = ImageLease("");
    for (const auto& lease : images_->Leases()) {
      if (lease.starts_with(prefix) && ValidSandboxId(lease.substr(prefix.size()))) {
        ids.insert(lease.substr(prefix.size()));
      }
    }
  }
  for (const auto& id : ids) {
    // A create or destroy of this process holds the id until it is done: looked at afterwards,
    // a finished create has its record and a finished destroy left nothing.
    KeyedLock lock(id_locks_, id);
    const std::string dir = SandboxDir(id);
    if (PathExists(dir + "/spec.json")) {
      continue;
    }
    const bool destroying = PathExists(dir + "/destroying.json");
    const bool had_dir = PathExists(dir);
    auto rec = destroying ? LoadSandboxRecord(dir + "/destroying.json")
                          : Result<SandboxRecord>(Fail(SandboxNotFound(id)));
    RecoveryReport mine;
    auto r = RemoveEverything(id, rec ? &*rec : nullptr, Clock::now() + opts_.stop_timeout, &mine);
    const char* what = destroying ? "destroy_finished" : had_dir ? "create_rolled_back" : "leftovers";
    if (r && std::string(what) != "leftovers") {
      ++report[what];
    }
    std::string removed;
    for (const auto& [k, n] : mine) {
      report[k] += n;
      removed += (removed.empty() ? "" : ",") + k + ":" + std::to_string(n);
    }
    Log(r ? LogLevel::kInfo : LogLevel::kWarn, "jail.recovered",
        "id={} what={} removed=\"{}\" ok={}", id, what, removed, r ? "true" : r.error().message);
  }
  // Links and rules of creates that died before their record named them (or whose record is
  // gone): nothing else would ever remove the rules.
  if (const size_t swept = SweepEgress(); swept > 0) {
    report["egress_rules"] += static_cast<int>(swept);
  }
  return report;
}

}  // namespace agentbox::jail
