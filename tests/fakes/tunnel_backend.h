#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "api/sandbox_backend.h"
#include "daemon/tunnel_endpoint.h"

namespace agentbox::fakes {

// A SandboxBackend test double whose guests dial out: each "sandbox" is a local
// `agentbox-guest serve --connect ws://.../v1/tunnel` process (no --listen, no isolation) and its
// guest_endpoint is the socket the daemon's TunnelEndpoint opened for it. Create returns once the
// guest's tunnel is up. It proves the tunnel works without any cloud. Thread-safe.
class TunnelBackend : public SandboxBackend {
 public:
  // `daemon_url` is called at each Create: the ws:// URL of the daemon's tunnel endpoint.
  TunnelBackend(std::string guest_binary, std::string state_dir, daemon::TunnelEndpoint& endpoint,
                std::function<std::string()> daemon_url);
  ~TunnelBackend() override;

  std::string_view Name() const override { return "process"; }
  ProbeResult Probe() override;
  Capabilities GetCapabilities() const override { return {}; }
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override;
  Result<SandboxInfo> Get(const std::string& id) override;
  Result<std::vector<SandboxInfo>> List() override;
  Result<void> Destroy(const std::string& id) override;
  Result<void> SetExpiry(const std::string& id, double expires_at) override;

  // The guest process of a sandbox (-1 if unknown), for tests that kill or stop it.
  pid_t GuestPid(const std::string& id);

 private:
  struct Box {
    SandboxInfo info;
    pid_t pid = -1;
    std::string dir;
  };
  std::string guest_;
  std::string state_dir_;
  daemon::TunnelEndpoint& endpoint_;
  std::function<std::string()> url_;
  std::mutex mu_;
  std::map<std::string, Box> boxes_;
};

}  // namespace agentbox::fakes
