#pragma once

#include <chrono>
#include <string>

#include "common/error.h"

namespace agentbox {

// Where a backend whose guests dial out (cloudrun session mode) registers its sandboxes, so that
// their guests can reach the daemon (docs/tunnel.md). Implemented by daemon::TunnelEndpoint;
// backends see only this interface, so they do not depend on the daemon. Thread-safe.
class TunnelRegistry {
 public:
  struct Registration {
    std::string token;           // "<id>.<secret>": for the guest, and its X-Access-Token
    std::string guest_endpoint;  // "unix:<dir>/<id>.sock": the sandbox's guest_endpoint
  };
  virtual ~TunnelRegistry() = default;

  // Opens the sandbox's socket and returns the guest's token. `secret` empty: a new random one;
  // otherwise that one (a restarted daemon taking back a guest that still holds its token; at
  // least 32 characters). kConflict when `id` is registered already.
  virtual Result<Registration> Register(const std::string& id, const std::string& secret = "") = 0;
  // Closes the socket and the tunnel, if any. Unknown ids are ignored.
  virtual void Unregister(const std::string& id) = 0;
  virtual bool Registered(const std::string& id) const = 0;
  virtual bool Connected(const std::string& id) const = 0;
  // Blocks until the sandbox's guest has a tunnel up, or `timeout` passes (false). Not to be
  // called on the daemon's I/O threads.
  virtual bool WaitConnected(const std::string& id, std::chrono::milliseconds timeout) = 0;
  // Ends the sandbox's current tunnel as if the link had broken.
  virtual void Drop(const std::string& id) = 0;
};

}  // namespace agentbox
