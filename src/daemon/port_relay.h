#pragma once

#include <chrono>
#include <set>
#include <string>

#include "daemon/port_access.h"
#include "http/server.h"
#include "http/transfer_threads.h"

namespace agentbox::daemon {

class DaemonApi;
struct SandboxEntry;

// Services inside sandboxes, reachable through agentboxd (docs/ports.md): by path,
// `/v1/sandboxes/{id}/ports/{port}/...`, and by host name, `{port}-{id}.{AGENTBOX_DOMAIN}`.
// Each HTTP exchange takes its client connection off the event loop (a raw connection) onto a
// thread of its own, which checks the caller's right to the port, asks the sandbox's guest for a
// connection to the port (guest `GET /api/v1/port/connect`, port_api.h), sends the request with
// its body streamed, and streams the response back with its own framing, nothing buffered
// whole. A `101 Switching Protocols` (WebSocket) turns both connections into one byte pipe. A
// kept-alive client connection goes back to the HTTP server after the response, so its next
// request may be anything. Thread-safe.
class PortRelay {
 public:
  // `public_dir`: where public port settings are kept (PublicPorts); empty: in memory only.
  PortRelay(DaemonApi& api, std::string domain, std::string public_dir = "");
  ~PortRelay();

  // Whether `req` is for a sandbox's port (by host name first: everything sent to such a host
  // is the sandbox's).
  bool Wants(const http::Request& req) const;
  // Relays the exchange on a thread of its own (http::Dispatcher::HandleRaw).
  void Handle(http::Request req, http::RawConnection conn);

  // GET and POST /v1/sandboxes/{id}/ports/{port}: the port's addresses, access token and
  // visibility; POST {"public": bool} sets the visibility. `entry` is the caller's sandbox.
  http::Response Control(const SandboxEntry& entry, const std::string& port_text,
                         const http::Request& req);
  // The sandbox is gone: forget its public ports.
  void Forget(const std::string& id) { public_.Forget(id); }
  // At start: forgets the settings of sandboxes that are not among `ids` any more.
  void RetainPublic(const std::set<std::string>& ids) { public_.Retain(ids); }

  // `{port}-{id}.{domain}`, or empty without a domain.
  std::string HostName(const std::string& id, int port) const;
  const std::string& domain() const { return domain_; }

 private:
  void Exchange(const http::Request& req, int fd, std::string buffered,
                const std::function<void(UniqueFd, std::string)>& resume);

  DaemonApi& api_;
  const std::string domain_;
  PublicPorts public_;
  http::TransferThreads threads_{1024};  // last: its threads use the members above
};

}  // namespace agentbox::daemon
