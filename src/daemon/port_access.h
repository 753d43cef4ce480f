#pragma once

// Who may reach a sandbox's port, and where a port request points (docs/ports.md). Pure
// functions and a small thread-safe set, separate from the relay so they are unit-tested alone.

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "common/error.h"
#include "http/server.h"

namespace agentbox::daemon {

// The query parameter and cookie that carry a port's access token (browsers cannot send an
// Authorization header on a link).
inline constexpr const char* kPortTokenParam = "agentbox_token";
inline constexpr const char* kPortTokenCookie = "agentbox_port_token";

// 1..65535 in plain decimal digits; 0 for anything else.
int ParsePortNumber(const std::string& text);

// Where a relayed request goes.
struct PortTarget {
  std::string id;
  std::string port_text;  // as written (validated by ParsePortNumber)
  int port = 0;           // 0: port_text is not a valid port
  bool by_host = false;
  // The request target for the service: the rest of the path after /v1/sandboxes/{id}/ports/{port}
  // (by path), or the target as sent (by host); the access-token parameter removed.
  std::string upstream_target;
  std::string prefix;  // by path: "/v1/sandboxes/{id}/ports/{port}"; by host: ""
};

// `/v1/sandboxes/{id}/ports/{port}/...` (something after the port, if only "/"). The exact path
// `/v1/sandboxes/{id}/ports/{port}` is the port's control API, not a relay target.
std::optional<PortTarget> PathTarget(const http::Request& req);
// Host `{port}-{id}.{domain}` (any letter case for the domain, optional `:port`; a `:port` in
// `domain` itself is ignored); nothing when `domain` is empty or the host is not below it.
std::optional<PortTarget> HostTarget(const http::Request& req, const std::string& domain);

// The access token of `port` of sandbox `id`: derived from the sandbox's secret guest token
// (HMAC-SHA256, hex, 32 characters), so it needs no storage, differs per port, and dies with the
// sandbox. Empty when the sandbox has no guest token.
std::string PortAccessToken(const std::string& guest_token, const std::string& id, int port);

// `Cookie` header value without the cookie `name` (empty when nothing is left).
std::string CookieWithout(const std::string& cookie_header, const std::string& name);
// The value of cookie `name` in a `Cookie` header.
std::optional<std::string> CookieValue(const std::string& cookie_header, const std::string& name);
// `query` (raw, no '?') without parameter `name`.
std::string QueryWithout(const std::string& query, const std::string& name);

// The ports made public (POST /v1/sandboxes/{id}/ports/{port} {"public": true}). With a
// directory, each sandbox's public ports are kept in <dir>/<id>.json (written atomically on
// every change, removed with the sandbox) and read back at construction, so a daemon restart
// keeps them; without one they live in memory only. A file that cannot be read or parsed is
// skipped (its ports stay private: the safe direction). Thread-safe.
class PublicPorts {
 public:
  explicit PublicPorts(std::string dir = "");
  // kInternal when the change cannot be written to disk (then it is not made).
  Result<void> Set(const std::string& id, int port, bool on);
  bool Contains(const std::string& id, int port) const;
  void Forget(const std::string& id);  // the sandbox is gone: its ports and file
  // Forgets every sandbox not in `ids` (at start, once every backend listed its sandboxes: the
  // files of sandboxes that went away while the daemon was down).
  void Retain(const std::set<std::string>& ids);

 private:
  Result<void> Persist(const std::string& id, const std::set<int>& ports) const;

  const std::string dir_;
  mutable std::mutex mu_;
  std::map<std::string, std::set<int>> ports_;  // by sandbox id
};

}  // namespace agentbox::daemon
