// JailBackend::RestartGuest: a new jail over the same sandbox directory.
#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include "backends/jail/cgroup.h"
#include "backends/jail/jail_backend.h"
#include "backends/jail/launch.h"
#include "common/fs_util.h"
#include "common/log.h"

namespace agentbox::jail {

Result<SandboxInfo> JailBackend::RestartGuest(const std::string& id) {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));
  }
  KeyedLock lock(id_locks_, id);
  auto rec = LoadRecord(id);
  if (!rec) {
    return Fail(rec.error());
  }
  const auto started = Clock::now();
  const std::string dir = SandboxDir(id);
  const auto stop_deadline = started + opts_.stop_timeout;
  // SIGKILL to the init ends the whole pid namespace, a stopped or traced guest included.
  if (auto init = ProcessHandle::Open(rec->init)) {
    (void)init->Signal(SIGKILL);
    if (!init->WaitExit(stop_deadline)) {
      return Fail(ErrorCode::kUnavailable, "the guest of sandbox '" + id +
                                               "' did not exit after SIGKILL; DELETE removes it");
    }
  }
  // The old helper reaps the init, removes the cgroups and exits.
  if (auto helper = ProcessHandle::Open(rec->helper)) {
    if (!helper->WaitExit(std::min(stop_deadline, Clock::now() + std::chrono::seconds(2)))) {
      (void)helper->Signal(SIGKILL);
      helper->WaitExit(stop_deadline);
    }
    helper->ReapIfChild();
  }
  (void)RemoveCgroups(rec->cgroups, std::chrono::seconds(5));  // whatever the helper left

  // The run directory is writable from inside: put back what the new guest needs from it.
  const std::string run = dir + "/run";
  ::unlink((run + "/guest.sock").c_str());
  const std::string token_path = run + "/token";
  if (auto r = WriteFileAtomic(token_path, rec->token + "\n", 0600); !r) {
    return Fail(r.error());
  }
  if (privileged_ && ::chown(token_path.c_str(), rec->host_uid, rec->host_gid) != 0) {
    return Fail(ErrnoError(errno, "chown " + token_path));
  }

  auto launched =
      LaunchJail(opts_.helper_binary, dir, rec->token, Clock::now() + opts_.start_timeout);
  if (!launched) {
    (void)RemoveCgroups(rec->cgroups, std::chrono::seconds(5));
    Log(LogLevel::kWarn, "jail.restart_failed", "id={} error=\"{}\"", id, launched.error().message);
    return Fail(launched.error().code, "the guest of sandbox '" + id +
                                           "' could not be restarted: " + launched.error().message);
  }
  rec->helper = launched->helper_id;
  rec->init = launched->init_id;
  rec->cgroups = launched->cgroups;
  // The old network namespace died with the old jail: the new one gets a link of its own.
  DetachEgress(rec->egress_link);
  rec->egress_link.clear();
  if (auto r = AttachEgress(*rec, rec->init.pid); !r) {
    return Fail(r.error());  // the new helper (still owned) is killed: the jail ends with it
  }
  if (auto r = SaveSandboxRecord(dir + "/spec.json", *rec); !r) {
    return Fail(r.error());  // the new helper (still owned) is killed: the jail ends with it
  }
  launched->helper.Detach();  // the helper now lives as long as the sandbox
  Log(LogLevel::kInfo, "jail.guest_restarted", "id={} init_pid={} ms={:.1f}", id, rec->init.pid,
      std::chrono::duration<double, std::milli>(Clock::now() - started).count());
  return InfoFromRecord(*rec);
}

}  // namespace agentbox::jail
