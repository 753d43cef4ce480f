// JailBackend and network "egress": the jail keeps its own network namespace (as for "none"),
// and once its init exists the daemon gives that namespace a veth into the host, NAT and the
// sandbox's policy as rules in the host's namespace (backends/egress). The sandbox's processes
// have no capability in the host's namespace, so they cannot change those rules.
#include <set>

#include "backends/egress/egress_sandbox.h"
#include "backends/jail/jail_backend.h"
#include "common/log.h"

namespace agentbox::jail {

Result<std::string> JailBackend::PrepareEgress(const SandboxSpec& spec,
                                               const std::string& dir) const {
  return egress::WriteEgressResolvConf(egress_.get(), Name(), why_no_egress_, spec, dir);
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
  return egress::SweepEgressLinks(
      egress_.get(), opts_.state_dir, [](const std::string& dir, std::set<std::string>& live) {
        // A sandbox being destroyed keeps its link until its destroy removes it.
        for (const char* file : {"/spec.json", "/destroying.json"}) {
          if (auto rec = LoadSandboxRecord(dir + file); rec && !rec->egress_link.empty()) {
            live.insert(rec->egress_link);
          }
        }
      });
}

}  // namespace agentbox::jail
