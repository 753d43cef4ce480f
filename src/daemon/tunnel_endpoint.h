#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "api/tunnel_registry.h"
#include "common/error.h"
#include "http/server.h"

namespace agentbox::daemon {

// agentboxd's end of guest tunnels (docs/tunnel.md). A backend whose guest dials out registers the
// sandbox here and gets a token for the guest and a unix socket: the sandbox's guest_endpoint.
// Every connection the daemon makes to that socket (its ordinary guest HTTP client) is carried to
// the guest as one stream of the sandbox's WebSocket, so forwarding, streaming, metrics and the
// breaker see a tunnelled sandbox like any other.
//
// Guests connect with `GET /v1/tunnel` + `Upgrade: websocket` + `Authorization: Bearer <token>`
// on the daemon's ordinary listen addresses (ServerOptions::upgrade = Upgrade()). The token is
// "<sandbox id>.<secret>": good for that sandbox only, compared in constant time, never logged,
// and unrelated to API keys. A new tunnel for a sandbox replaces the previous one (the guest
// reconnected before the daemon noticed the old link die). Thread-safe.
class TunnelEndpoint final : public TunnelRegistry {
 public:
  struct Options {
    std::string socket_dir;  // where the per-sandbox unix sockets live (created 0700)
    // WebSocket keep-alive: pings after half this idle time, the link is dead after all of it.
    std::chrono::milliseconds idle_timeout{20000};
    // A request arriving while the sandbox has no tunnel waits this long for the guest to redial
    // before it is answered 503 (0 = at once).
    std::chrono::milliseconds reconnect_grace{1000};
  };
  TunnelEndpoint(boost::asio::io_context& io, Options options);
  ~TunnelEndpoint() override;

  using Registration = TunnelRegistry::Registration;
  // TunnelRegistry (api/tunnel_registry.h).
  Result<Registration> Register(const std::string& id, const std::string& secret = "") override;
  void Unregister(const std::string& id) override;
  bool Registered(const std::string& id) const override;
  bool Connected(const std::string& id) const override;
  bool WaitConnected(const std::string& id, std::chrono::milliseconds timeout) override;
  void Drop(const std::string& id) override;

  // The HTTP server's upgrade hook: authenticates the request and takes the connection, or
  // answers 401/404 and closes it.
  void Upgrade(http::Request req, http::UpgradedSocket socket);

  struct Entry;  // internal: one registered sandbox

 private:
  template <class Socket>
  void Accept(http::Request req, Socket socket);

  boost::asio::io_context& io_;
  Options opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
};

}  // namespace agentbox::daemon
