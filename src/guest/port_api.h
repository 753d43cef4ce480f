#pragma once

#include <string>

#include "http/server.h"
#include "http/transfer_threads.h"

namespace agentbox::guest {

// The guest's end of the port relay (docs/ports.md, docs/guest-api.md): `GET
// /api/v1/port/connect?port=N` with `Connection: Upgrade`, `Upgrade: agentbox-port` and the
// guest's X-Access-Token connects to 127.0.0.1:N (then [::1]:N) inside the sandbox's own network
// namespace, answers `101 Switching Protocols`, and from then on the connection is a raw byte pipe
// to that port in both directions, until either side ends it. Nothing listening is `502`, a bad
// port `400`. Because the guest makes the connection from inside the sandbox, it works with
// `network: none` and over every transport the daemon uses to reach the guest (unix socket,
// tunnel). Each relayed connection has a thread of its own. Thread-safe.
class PortConnector {
 public:
  PortConnector() = default;
  // Whether `req` is a port connect request (it then goes to Handle as a raw connection).
  static bool Wants(const http::Request& req);
  // Takes the connection; `authorized`: the request carried the guest's token.
  void Handle(http::Request req, http::RawConnection conn, bool authorized);

 private:
  void Relay(const http::Request& req, int fd, const std::string& buffered, bool authorized);

  http::TransferThreads threads_{1024};  // last: its threads use the members above
};

}  // namespace agentbox::guest
