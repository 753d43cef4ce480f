#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "api/sandbox_backend.h"
#include "daemon/tunnel_endpoint.h"

namespace agentbox::fakes {

struct TunnelBackendOptions {
  std::string name = "process";  // the backend's name (SandboxInfo::backend, /v1/info)
  std::string ca_file;           // given to the guest as --ca-file (wss:// daemons)
  // Runs each guest in a mount namespace of its own whose root is a view of the host's root with
  // the sandbox's directory at /workspace, which the conformance suite expects. Still no
  // isolation: same pid and network namespaces, same user, every capability. Needs CAP_SYS_ADMIN.
  bool workspace_at_root = false;
};

// A SandboxBackend test double whose guests dial out: each "sandbox" is a local
// `agentbox-guest serve --connect ws(s)://.../v1/tunnel` process (no --listen, no isolation) and
// its guest_endpoint is the socket the daemon's TunnelEndpoint opened for it. Create returns once
// the guest's tunnel is up. It proves the tunnel works without any cloud. The guest's pid is also
// written to <state_dir>/<id>/guest.pid (for suites that freeze it). Thread-safe.
class TunnelBackend : public SandboxBackend {
 public:
  // `daemon_url` is called at each Create: the ws:// or wss:// URL of the tunnel endpoint.
  TunnelBackend(std::string guest_binary, std::string state_dir, daemon::TunnelEndpoint& endpoint,
                std::function<std::string()> daemon_url, TunnelBackendOptions options = {});
  ~TunnelBackend() override;

  std::string_view Name() const override { return opts_.name; }
  ProbeResult Probe() override;
  Capabilities GetCapabilities() const override { return {}; }
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override;
  Result<SandboxInfo> Get(const std::string& id) override;
  Result<std::vector<SandboxInfo>> List() override;
  Result<void> Destroy(const std::string& id) override;
  Result<void> SetExpiry(const std::string& id, double expires_at) override;
  // Kills the guest (frozen or not) and starts a fresh one over the same directory and token;
  // returns once its tunnel is up.
  Result<SandboxInfo> RestartGuest(const std::string& id) override;

  // The guest process of a sandbox (-1 if unknown), for tests that kill or stop it.
  pid_t GuestPid(const std::string& id);

 private:
  struct Box {
    SandboxInfo info;
    pid_t pid = -1;
    std::string dir;
    std::vector<std::string> env;  // KEY=VALUE of the spec
  };
  // Starts the guest of `b` and waits for its tunnel; kills it again when it never connects.
  Result<pid_t> Spawn(const std::string& id, const Box& b);

  std::string guest_;
  std::string state_dir_;
  daemon::TunnelEndpoint& endpoint_;
  std::function<std::string()> url_;
  TunnelBackendOptions opts_;
  std::mutex mu_;
  std::map<std::string, Box> boxes_;
};

}  // namespace agentbox::fakes
