// DockerBackend and network "egress": the container starts with NetworkMode "none" (a namespace
// of the engine's with loopback only), and the backend then gives that namespace a veth into the
// host, NAT and the sandbox's policy as rules in the host's namespace (backends/egress): the
// same mechanism and the same rules as the jail backend. The container has no CAP_NET_ADMIN
// (CapDrop ALL), and the rules live outside its namespace anyway.
#include <set>

#include "backends/docker/docker_backend.h"
#include "backends/docker/host_dir.h"
#include "backends/egress/egress_sandbox.h"
#include "common/json_util.h"

namespace agentbox::docker {

Result<std::string> DockerBackend::PrepareEgress(const SandboxSpec& spec,
                                                 const std::string& dir) const {
  return egress::WriteEgressResolvConf(egress_.get(), Name(), why_no_egress_, spec, dir);
}

Result<std::string> DockerBackend::AttachEgress(const std::string& container_id,
                                                const EgressPolicy& policy) {
  if (!egress_) {
    return Fail(ErrorCode::kInvalidArgument, "docker: " + why_no_egress_);
  }
  auto c = engine_.Call("GET", "/containers/" + container_id + "/json");
  if (!c || c->status != 200) {
    return Fail(c ? EngineError(*c, "inspect container " + container_id) : c.error());
  }
  const Json j = ParseUntrustedJson(c->body);
  const int64_t pid =
      j.is_object() && j.contains("State") ? ValueOr(j["State"], "Pid", int64_t{0}) : 0;
  if (pid <= 0) {
    return Fail(ErrorCode::kUnavailable, "network egress: the container is not running");
  }
  auto attached = egress_->Attach(static_cast<pid_t>(pid), policy);
  if (!attached) {
    return Fail(attached.error().code, "network egress: " + attached.error().message);
  }
  return attached->link;
}

void DockerBackend::DetachEgress(const std::string& link) const {
  if (egress_ && !link.empty()) {
    egress_->Detach(link);
  }
}

size_t DockerBackend::SweepEgress() {
  return egress::SweepEgressLinks(
      egress_.get(), opts_.state_dir, [](const std::string& dir, std::set<std::string>& live) {
        if (auto meta = LoadMeta(dir); meta && !meta->egress_link.empty()) {
          live.insert(meta->egress_link);
        }
      });
}

}  // namespace agentbox::docker
