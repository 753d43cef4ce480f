#include "daemon/port_access.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/strings.h"

namespace agentbox::daemon {

int ParsePortNumber(const std::string& text) {
  if (text.empty() || text.size() > 5) {
    return 0;
  }
  int port = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return 0;
    }
    port = port * 10 + (c - '0');
  }
  return port <= 65535 ? port : 0;
}

std::string QueryWithout(const std::string& query, const std::string& name) {
  std::string out;
  size_t pos = 0;
  while (pos <= query.size() && !query.empty()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) {
      amp = query.size();
    }
    const std::string kv = query.substr(pos, amp - pos);
    const std::string key = PercentDecode(kv.substr(0, kv.find('=')), true);
    if (key != name && !kv.empty()) {
      if (!out.empty()) {
        out += '&';
      }
      out += kv;
    }
    pos = amp + 1;
  }
  return out;
}

namespace {

std::string WithQuery(std::string path, const std::string& query) {
  return query.empty() ? path : path + "?" + query;
}

}  // namespace

std::optional<PortTarget> PathTarget(const http::Request& req) {
  static const std::string kStart = "/v1/sandboxes/";
  const std::string& raw = req.target;
  const size_t q = raw.find('?');
  const std::string path = raw.substr(0, q);
  if (!path.starts_with(kStart)) {
    return std::nullopt;
  }
  const size_t id_end = path.find('/', kStart.size());
  if (id_end == std::string::npos || path.compare(id_end, 7, "/ports/") != 0) {
    return std::nullopt;
  }
  const size_t port_start = id_end + 7;
  const size_t port_end = path.find('/', port_start);
  if (port_end == std::string::npos) {
    return std::nullopt;  // the control API
  }
  PortTarget t;
  t.id = PercentDecode(path.substr(kStart.size(), id_end - kStart.size()), false);
  t.port_text = PercentDecode(path.substr(port_start, port_end - port_start), false);
  t.port = ParsePortNumber(t.port_text);
  t.prefix = path.substr(0, port_end);
  t.upstream_target = WithQuery(path.substr(port_end), QueryWithout(req.query, kPortTokenParam));
  return t;
}

std::optional<PortTarget> HostTarget(const http::Request& req, const std::string& domain) {
  if (domain.empty()) {
    return std::nullopt;
  }
  std::string host = req.Header("host");
  if (!host.empty() && host[0] != '[') {
    host = host.substr(0, host.find(':'));
  }
  if (!host.empty() && host.back() == '.') {
    host.pop_back();  // a fully qualified name
  }
  // A domain may name the port clients use ("localtest.me:8080"): names match without it.
  std::string suffix = AsciiLower(domain.substr(0, domain.find(':')));
  suffix.insert(suffix.begin(), '.');
  if (host.size() <= suffix.size() || AsciiLower(host).substr(host.size() - suffix.size()) != suffix) {
    return std::nullopt;
  }
  const std::string label = host.substr(0, host.size() - suffix.size());
  const size_t dash = label.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == label.size()) {
    return std::nullopt;
  }
  PortTarget t;
  t.by_host = true;
  t.port_text = label.substr(0, dash);
  t.port = ParsePortNumber(t.port_text);
  t.id = label.substr(dash + 1);
  const std::string path = req.target.substr(0, req.target.find('?'));
  t.upstream_target = WithQuery(path.empty() ? "/" : path, QueryWithout(req.query, kPortTokenParam));
  return t;
}

std::string PortAccessToken(const std::string& guest_token, const std::string& id, int port) {
  if (guest_token.empty()) {
    return "";
  }
  const std::string msg = "agentbox-port:" + id + ":" + std::to_string(port);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), guest_token.data(), static_cast<int>(guest_token.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len && out.size() < 32; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

namespace {

// Calls `fn(name, value, piece)` for each `name=value` of a Cookie header.
template <class Fn>
void EachCookie(const std::string& header, Fn fn) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) {
      end = header.size();
    }
    std::string piece = header.substr(pos, end - pos);
    const size_t a = piece.find_first_not_of(' ');
    piece = a == std::string::npos ? "" : piece.substr(a);
    const size_t eq = piece.find('=');
    if (!piece.empty()) {
      fn(piece.substr(0, eq), eq == std::string::npos ? "" : piece.substr(eq + 1), piece);
    }
    pos = end + 1;
  }
}

}  // namespace

std::string CookieWithout(const std::string& cookie_header, const std::string& name) {
  std::string out;
  EachCookie(cookie_header, [&](const std::string& n, const std::string&, const std::string& p) {
    if (n != name) {
      if (!out.empty()) {
        out += "; ";
      }
      out += p;
    }
  });
  return out;
}

std::optional<std::string> CookieValue(const std::string& cookie_header, const std::string& name) {
  std::optional<std::string> found;
  EachCookie(cookie_header, [&](const std::string& n, const std::string& v, const std::string&) {
    if (n == name && !found) {
      found = v;
    }
  });
  return found;
}

}  // namespace agentbox::daemon
