// JailBackend and network "egress": the jail keeps its own network namespace (as for "none"),
// and once its init exists the daemon gives that namespace a veth into the host, NAT and the
// sandbox's policy as rules in the host's namespace (backends/egress). The sandbox's processes
// have no capability in the host's namespace, so they cannot change those rules.
#include <dirent.h>

#include <set>

#include "backends/jail/jail_backend.h"
#include "common/fs_util.h"
#include "common/log.h"

namespace agentbox::jail {

Result<std::string> JailBackend::PrepareEgress(const SandboxSpec& spec,
                                               const std::string& dir) const {
  if (spec.network != NetworkMode::kEgress) {
    return std::string();
  }
  if (!egress_) {
    return Fail(ErrorCode::kInvalidArgument, "jail: " + why_no_egress_);
  }
  const std::string path = dir + "/resolv.conf";
  if (auto r = WriteFileAtomic(path, egress_->ResolvConf(), 0644); !r) {
    return Fail(r.error());
  }
  return path;
}

Result<void> JailBackend::AttachEgress(SandboxRecord& rec, pid_t init_pid) {
  if (rec.spec.network != NetworkMode::kEgress || !egress_) {
    return {};
  }
  auto attached = egress_->Attach(init_pid, rec.spec.egress.value_or(EgressPolicy{}));
  if (!attached) {
    return Fail(attached.error().code, "network egress: " + attached.error().message);
  }
  rec.egress_link = attached->link;
  return {};
}

void JailBackend::DetachEgress(const std::string& link) {
  if (egress_ && !link.empty()) {
    egress_->Detach(link);
  }
}

size_t JailBackend::SweepEgress() {
  if (!egress_) {
    return 0;
  }
  std::vector<std::string> names;
  if (DIR* d = ::opendir(opts_.state_dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      names.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  std::set<std::string> live;
  for (const auto& name : names) {
    if (!ValidSandboxId(name)) {
      continue;
    }
    // A sandbox being destroyed keeps its link until its destroy removes it.
    for (const char* file : {"/spec.json", "/destroying.json"}) {
      if (auto rec = LoadSandboxRecord(SandboxDir(name) + file); rec && !rec->egress_link.empty()) {
        live.insert(rec->egress_link);
      }
    }
  }
  return egress_->Sweep(live);
}

}  // namespace agentbox::jail
