// DockerBackend::RestartGuest: the same container started again; EngineDown: whether the engine
// answers at all (the daemon shows sandboxes unreachable while it does not).
#include <unistd.h>

#include "backends/docker/container_request.h"
#include "backends/docker/docker_backend.h"
#include "backends/docker/host_dir.h"
#include "common/fs_util.h"
#include "common/log.h"

namespace agentbox::docker {

Result<SandboxInfo> DockerBackend::RestartGuest(const std::string& id) {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));
  }
  KeyedLock lock(id_locks_, id);
  auto c = InspectOurs(id);
  if (!c) {
    return Fail(c.error());
  }
  const std::string container_id = c->value("Id", ContainerName(id));
  const std::string dir = SandboxDir(id);
  auto meta = LoadMeta(dir);
  if (!meta) {
    return Fail(meta.error().code == ErrorCode::kNotFound ? SandboxNotFound(id) : meta.error());
  }
  const auto started = Clock::now();
  // The run directory is writable from inside: put back the token the daemon uses, and drop
  // the old socket so that only the new guest's counts.
  const std::string run = dir + "/" + kRunDir;
  ::unlink((run + "/" + kGuestSocket).c_str());
  if (auto r = WriteFileAtomic(run + "/" + kTokenFile, meta->token + "\n", 0600); !r) {
    return Fail(r.error());
  }
  // t=0: SIGKILL at once (a stopped or traced guest cannot act on SIGTERM). The container's
  // filesystem and its /workspace volume stay; its processes and /tmp (a tmpfs) start empty.
  auto r = engine_.Call("POST", "/containers/" + container_id + "/restart?t=0", {},
                        std::chrono::seconds(60));
  if (!r) {
    return Fail(r.error());
  }
  if (r->status != 204) {
    return Fail(EngineError(*r, "restart container " + ContainerName(id)));
  }
  if (auto w = WaitForGuest(id, container_id, meta->token, Clock::now() + opts_.start_timeout);
      !w) {
    return Fail(w.error().code,
                "the guest of sandbox '" + id + "' could not be restarted: " + w.error().message);
  }
  auto fresh = InspectOurs(id);
  if (!fresh) {
    return Fail(fresh.error());
  }
  Log(LogLevel::kInfo, "docker.guest_restarted", "id={} ms={:.1f}", id,
      std::chrono::duration<double, std::milli>(Clock::now() - started).count());
  return InfoFromInspect(*fresh);
}

std::optional<std::string> DockerBackend::EngineDown() {
  auto ping = engine_.Call("GET", "/_ping", {}, opts_.probe_timeout);
  if (ping && ping->status == 200) {
    return std::nullopt;
  }
  const std::string engine = "The Docker engine at " + opts_.socket_path;
  if (!ping) {
    const std::string& m = ping.error().message;
    const size_t colon = m.find(": ");
    return engine + " is not answering: " + (colon == std::string::npos ? m : m.substr(colon + 2)) +
           ".";
  }
  return engine + " is not answering: GET /_ping got " + std::to_string(ping->status) + ".";
}

}  // namespace agentbox::docker
