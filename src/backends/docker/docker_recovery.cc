// The docker backend's crash recovery (docs/reliability.md): containers and host directories
// that a daemon killed in the middle of a create or a destroy left behind, and orphans.
#include <dirent.h>

#include <set>

#include "backends/docker/docker_backend.h"
#include "backends/docker/sandbox_disk.h"
#include "common/log.h"
#include "common/time_util.h"

namespace agentbox::docker {

Result<RecoveryReport> DockerBackend::Recover() {
  RecoveryReport report;
  cleaned_ = true;
  auto n = CleanupOrphans(&report);
  if (!n) {
    return Fail(n.error());
  }
  // Links and rules of creates that died before meta.json named them, or of sandboxes whose
  // directory is gone: nothing else would ever remove the rules.
  if (const size_t swept = SweepEgress(); swept > 0) {
    report["egress_rules"] += static_cast<int>(swept);
  }
  return report;
}

Result<int> DockerBackend::CleanupOrphans(RecoveryReport* report) {
  auto count = [report](const char* what) {
    if (report != nullptr) {
      ++(*report)[what];
    }
  };
  auto list = ListContainers({std::string(label::kManaged) + "=true"});
  if (!list) {
    return Fail(list.error());
  }
  int removed = 0;
  std::set<std::string> ours;  // ids of this state directory that have a container
  const double now = NowUnix();
  for (const auto& entry : *list) {
    const std::string id = LabelOf(entry, label::kId);
    const std::string state_dir = LabelOf(entry, label::kStateDir);
    const std::string cid = ValueOr(entry, "Id", "");
    if (!ValidSandboxId(id) || state_dir.empty() || cid.empty()) {
      continue;
    }
    const bool mine = state_dir == opts_.state_dir;
    if (mine) {
      ours.insert(id);
    }
    std::string why;
    const char* what = nullptr;  // the interrupted operation, if that is what it was
    if (!PathExists(state_dir + "/" + id)) {
      why = "its host directory is gone";
    } else if (mine && PathExists(SandboxDir(id) + "/" + kDestroyingFile)) {
      why = "its destroy was interrupted";
      what = "destroy_finished";
    } else if (mine) {
      const std::string state = ValueOr(entry, "State", "");
      double expires = 0;
      bool egress_missing = false;
      if (auto meta = LoadMeta(SandboxDir(id))) {
        expires = meta->expires_at;
        // Network egress is attached after the start and then named in meta.json: a started
        // container without it is a create that died in between (it would have no network).
        egress_missing = LabelOf(entry, label::kNetwork) == "egress" && meta->egress_link.empty();
      }
      if (egress_missing) {
        why = "its create was interrupted before its network was attached";
        what = "create_rolled_back";
      } else if (state == "dead") {
        why = "it is dead";
      } else if (state == "created") {
        why = "it was created but never started";
        what = "create_rolled_back";
      } else if (state == "exited" && expires > 0 && expires <= now) {
        why = "it exited and has expired";
      }
    }
    if (why.empty()) {
      continue;
    }
    // Only this process's own operations can race with us (one daemon per state directory).
    if (mine && !id_locks_.TryLock(id)) {
      continue;
    }
    auto done = RemoveContainer(cid);
    if (done) {
      count("container");
    }
    if (done && mine) {
      done = RemoveSandboxDir(SandboxDir(id));
      if (done) {
        count("directory");
        if (what != nullptr) {
          count(what);
        }
      }
    }
    if (mine) {
      id_locks_.Unlock(id);
    }
    Log(done ? LogLevel::kInfo : LogLevel::kWarn, "docker.orphan_removed",
        "id={} container={} state_dir={} reason=\"{}\" ok={}", id, cid.substr(0, 12), state_dir,
        why, done ? "true" : done.error().message);
    removed += done ? 1 : 0;
  }

  // Host directories without a container. The container list above may predate a Create that
  // finished since, so each candidate is checked again by name while its id is held.
  std::vector<std::string> dirs;
  if (DIR* d = ::opendir(opts_.state_dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      if (ValidSandboxId(e->d_name) && !ours.count(e->d_name)) {
        dirs.emplace_back(e->d_name);
      }
    }
    ::closedir(d);
  }
  for (const auto& id : dirs) {
    if (!id_locks_.TryLock(id)) {
      continue;
    }
    auto c = engine_.Call("GET", "/containers/" + ContainerName(id) + "/json");
    if (c && c->status == 404) {
      const bool destroying = PathExists(SandboxDir(id) + "/" + kDestroyingFile);
      auto done = RemoveSandboxDir(SandboxDir(id));
      if (done) {
        count("directory");
        count(destroying ? "destroy_finished" : "create_rolled_back");
      }
      Log(done ? LogLevel::kInfo : LogLevel::kWarn, "docker.orphan_removed",
          "id={} reason=\"host directory without a container\" ok={}", id,
          done ? "true" : done.error().message);
      removed += done ? 1 : 0;
    }
    id_locks_.Unlock(id);
  }
  return removed;
}

}  // namespace agentbox::docker
