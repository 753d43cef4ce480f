// The port relay of docs/ports.md: one HTTP exchange (or one WebSocket) between a client of
// agentboxd and a service listening inside a sandbox, carried through the sandbox's guest.
#include "daemon/port_relay.h"

#include <fcntl.h>
#include <unistd.h>

#include <future>
#include <mutex>

#include "common/json_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "daemon/api_detail.h"
#include "daemon/daemon_api.h"
#include "http/byte_pipe.h"
#include "http/envelope.h"
#include "http/raw_io.h"

namespace agentbox::daemon {

using detail::Clock;

namespace {

// An upgraded connection (WebSocket) may be quiet for long; an hour of silence both ways ends it.
constexpr http::Millis kUpgradedIdle{std::chrono::hours(1)};
constexpr size_t kMaxHead = 64 * 1024;

// A response head as the service sent it.
struct Head {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> fields;

  std::string Get(const std::string& lower_name) const {
    for (const auto& [n, v] : fields) {
      if (AsciiLower(n) == lower_name) {
        return v;
      }
    }
    return "";
  }
};

std::string Trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) {
    return "";
  }
  return s.substr(a, s.find_last_not_of(" \t") - a + 1);
}

// Reads a response head from `fd`. `buf` holds bytes already read; on return it holds what
// followed the head.
Result<Head> ReadHead(int fd, std::string& buf, http::Millis idle) {
  size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (buf.size() > kMaxHead) {
      return Fail(ErrorCode::kInvalidArgument, "response head over 64 KiB");
    }
    char tmp[16384];
    auto n = http::ReadSome(fd, tmp, sizeof(tmp), idle);
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      return Fail(ErrorCode::kUnavailable, "the connection closed before a response");
    }
    buf.append(tmp, *n);
  }
  const std::string text = buf.substr(0, end);
  buf.erase(0, end + 4);
  Head h;
  size_t pos = text.find("\r\n");
  const std::string status_line = text.substr(0, pos);
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) {
    return Fail(ErrorCode::kInvalidArgument,
                "not an HTTP/1.x response: '" + status_line.substr(0, 40) + "'");
  }
  h.status = std::atoi(status_line.c_str() + 9);
  h.reason = status_line.size() > 13 ? status_line.substr(13) : "";
  while (pos != std::string::npos) {
    const size_t start = pos + 2;
    pos = text.find("\r\n", start);
    const std::string line = text.substr(start, pos == std::string::npos ? pos : pos - start);
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      return Fail(ErrorCode::kInvalidArgument, "malformed response header line");
    }
    h.fields.emplace_back(line.substr(0, colon), Trim(line.substr(colon + 1)));
  }
  return h;
}

std::string HeadText(const Head& h, const std::vector<std::string>& drop_lower,
                     const std::string& extra) {
  std::string out = "HTTP/1.1 " + std::to_string(h.status) + " " + h.reason + "\r\n";
  for (const auto& [n, v] : h.fields) {
    const std::string lower = AsciiLower(n);
    if (std::find(drop_lower.begin(), drop_lower.end(), lower) == drop_lower.end()) {
      out += n + ": " + v + "\r\n";
    }
  }
  return out + extra + "\r\n";
}

// Copies everything `from` sends until it closes.
Result<void> CopyToEnd(int from, int to, http::Millis idle) {
  char buf[65536];
  for (;;) {
    auto n = http::ReadSome(from, buf, sizeof(buf), idle);
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      return {};
    }
    if (auto w = http::WriteAll(to, std::string_view(buf, *n), idle); !w) {
      return w;
    }
  }
}

// Moves a body framed by `framing`'s headers (content-length or chunked) from `from` (starting
// with `buffered`) to `to`, chunked again when it came chunked. Returns the bytes read past it.
Result<std::string> CopyBody(const http::Request& framing, int from, std::string buffered, int to,
                             http::Millis idle) {
  auto body = http::BodyReader::ForRequest(framing, from, std::move(buffered), UINT64_MAX, idle);
  if (!body) {
    return Fail(body.error());
  }
  if (AsciiLower(framing.Header("transfer-encoding")).find("chunked") == std::string::npos) {
    if (auto c = body->CopyTo(to); !c) {
      return Fail(c.error());
    }
    return body->TakeRest();
  }
  http::ChunkedWriter out(to, idle);
  std::string buf(256 * 1024, '\0');
  for (;;) {
    auto n = body->Read(buf.data(), buf.size());
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      break;
    }
    if (auto w = out.Write(std::string_view(buf.data(), *n)); !w) {
      return Fail(w.error());
    }
  }
  if (auto e = out.End(); !e) {
    return Fail(e.error());
  }
  return body->TakeRest();
}

http::Request Framing(const std::string& transfer_encoding, const std::string& content_length) {
  http::Request r;
  if (!transfer_encoding.empty()) {
    r.headers["transfer-encoding"] = transfer_encoding;
  } else if (!content_length.empty()) {
    r.headers["content-length"] = content_length;
  }
  return r;
}

bool Contains(const std::string& header_value, const std::string& token) {
  return AsciiLower(header_value).find(token) != std::string::npos;
}

}  // namespace

PortRelay::PortRelay(DaemonApi& api, std::string domain, std::string public_dir)
    : api_(api), domain_(AsciiLower(domain)), public_(std::move(public_dir)) {}

PortRelay::~PortRelay() = default;

bool PortRelay::Wants(const http::Request& req) const {
  return HostTarget(req, domain_).has_value() || PathTarget(req).has_value();
}

std::string PortRelay::HostName(const std::string& id, int port) const {
  return domain_.empty() ? "" : std::to_string(port) + "-" + id + "." + domain_;
}

void PortRelay::Handle(http::Request req, http::RawConnection conn) {
  ++api_.in_flight_;
  UniqueFd refused;
  auto work = [this, req = std::move(req), buffered = std::move(conn.buffered),
               resume = std::move(conn.resume)](int fd) mutable {
    Exchange(req, fd, std::move(buffered), resume);
    --api_.in_flight_;
  };
  if (auto started = threads_.Start(std::move(conn.fd), std::move(work), &refused); !started) {
    --api_.in_flight_;
    static_cast<void>(
        http::WriteResponse(refused.Get(), JsonErr(started.error()), std::chrono::seconds(5)));
  }
}

void PortRelay::Exchange(const http::Request& req, int fd, std::string buffered,
                         const std::function<void(UniqueFd, std::string)>& resume) {
  const auto idle = api_.health_.deadlines().stream_idle;
  auto answer = [fd, idle](const http::Response& r) { http::AnswerAndClose(fd, r, idle); };
  auto t = HostTarget(req, domain_);
  if (!t) {
    t = PathTarget(req);
  }
  if (!t) {
    return answer(JsonErrStatus(404, "no such endpoint: " + req.method + " " + req.path));
  }
  if (t->port == 0) {
    return answer(JsonErr({ErrorCode::kInvalidArgument,
                           "port must be a number from 1 to 65535, got '" + t->port_text + "'"}));
  }
  if (api_.draining_) {
    return answer(JsonErrStatus(503, "agentboxd is shutting down"));
  }
  const std::string& id = t->id;
  const std::string port = std::to_string(t->port);
  auto entry = api_.Find(id, DaemonApi::Caller{"", true});
  if (!entry && api_.HasSharedBackend() && ValidSandboxId(id)) {
    api_.FindShared(id);  // another replica's sandbox on a shared backend (blocks: fine here)
    entry = api_.Find(id, DaemonApi::Caller{"", true});
  }
  if (!entry) {
    return answer(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  // Who may pass: the sandbox's owner (API key, or the daemon's unix socket), the holder of the
  // port's access token (query parameter, then its cookie), or anyone when the port is public.
  const auto caller = api_.Authenticate(req);
  const bool owner = caller && (caller->admin || caller->owner == entry->info.spec.owner);
  const std::string token = PortAccessToken(entry->info.guest_token, id, t->port);
  const auto query_token = req.QueryParam(kPortTokenParam);
  const auto cookie_token = CookieValue(req.Header("cookie"), kPortTokenCookie);
  const bool query_ok = !token.empty() && query_token && SecretEquals(*query_token, token);
  const bool cookie_ok = !token.empty() && cookie_token && SecretEquals(*cookie_token, token);
  if (!owner && !query_ok && !cookie_ok && !public_.Contains(id, t->port)) {
    if (caller) {  // another key's sandbox is indistinguishable from a missing one
      return answer(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
    }
    return answer(JsonErr(
        {ErrorCode::kUnauthorized,
         "port " + port + " of sandbox '" + id +
             "' is private: send the owner's API key (Authorization: Bearer KEY), or the port's "
             "access token (?" +
             kPortTokenParam +
             "=TOKEN, from GET /v1/sandboxes/{id}/ports/{port}), or make the port public"}));
  }
  // The owner's API key is agentboxd's credential: it never reaches the sandbox.
  const bool strip_authorization = caller && req.peer != "unix";
  if (!entry->info.guest_endpoint.starts_with("unix:")) {
    return answer(JsonErr({ErrorCode::kUnavailable,
                           "sandbox '" + id +
                               "' has no guest to reach its ports through (its backend runs each "
                               "command as a job)"}));
  }
  // The gate and the unresponsive-guest probe, as for every relayed call.
  std::promise<std::optional<http::Response>> gate;
  auto gated = gate.get_future();
  auto once = std::make_shared<std::once_flag>();
  api_.health_.BeforeCall(
      entry->info, "port",
      [&gate, once](http::Response r) {
        std::call_once(*once, [&] { gate.set_value(std::move(r)); });
      },
      [&gate, once] { std::call_once(*once, [&] { gate.set_value(std::nullopt); }); });
  if (auto refused = gated.get(); refused) {
    return answer(*refused);
  }
  const auto start = Clock::now();
  const std::string& backend = entry->info.backend;
  auto count = [&](int status, const Error* err) {
    if (err) {
      api_.CountRelayed(backend, "port", Fail(*err), start);
      return;
    }
    http::ClientResponse cr;
    cr.status = status;
    api_.CountRelayed(backend, "port", cr, start);
  };
  auto guest = http::ConnectUnixNoFollow(entry->info.guest_endpoint.substr(5));
  if (!guest) {
    count(0, &guest.error());
    return answer(JsonErr(guest.error()));
  }
  const int up = guest->Get();
  // 1. The guest connects to the port inside the sandbox and turns this connection into a pipe.
  const std::string connect =
      "GET /api/v1/port/connect?port=" + port +
      " HTTP/1.1\r\nHost: guest\r\nX-Access-Token: " + entry->info.guest_token +
      "\r\nConnection: Upgrade\r\nUpgrade: agentbox-port\r\n\r\n";
  std::string ubuf;
  auto connected =
      http::WriteAll(up, connect, idle).and_then([&] { return ReadHead(up, ubuf, idle); });
  if (!connected) {
    count(0, &connected.error());
    return answer(JsonErr({connected.error().code == ErrorCode::kTimeout ? ErrorCode::kTimeout
                                                                         : ErrorCode::kUnavailable,
                           "the sandbox's guest did not open the connection to port " + port +
                               ": " + connected.error().message}));
  }
  api_.health_.Answered(id);
  if (connected->status != 101) {
    // The guest's refusal (502: nothing listens there), in the API's envelope: its body follows
    // and the guest closes the connection after it.
    std::string body = ubuf;
    char tmp[4096];
    for (;;) {
      auto n = http::ReadSome(up, tmp, sizeof(tmp), idle);
      if (!n || *n == 0 || body.size() > kMaxHead) {
        break;
      }
      body.append(tmp, *n);
    }
    count(connected->status, nullptr);
    http::Response r;
    r.status = connected->status;
    r.body = body;
    return answer(r);
  }
  // 2. The request, as the service should see it.
  std::string head = req.method + " " + t->upstream_target + " HTTP/1.1\r\n";
  static const std::vector<std::string> kHopByHop = {
      "connection", "keep-alive",      "proxy-connection",  "te", "trailer", "upgrade",
      "expect",     "x-forwarded-for", "x-forwarded-prefix"};
  for (const auto& [name, value] : req.headers) {
    if (std::find(kHopByHop.begin(), kHopByHop.end(), name) != kHopByHop.end() ||
        (name == "authorization" && strip_authorization)) {
      continue;
    }
    if (name == "cookie") {
      if (auto rest = CookieWithout(value, kPortTokenCookie); !rest.empty()) {
        head += "cookie: " + rest + "\r\n";
      }
      continue;
    }
    head += name + ": " + value + "\r\n";
  }
  const std::string forwarded_for = req.Header("x-forwarded-for");
  const std::string peer_ip = req.peer.substr(0, req.peer.rfind(':'));
  head +=
      "x-forwarded-for: " + (forwarded_for.empty() ? "" : forwarded_for + ", ") + peer_ip + "\r\n";
  if (req.Header("x-forwarded-proto").empty()) {
    head += std::string("x-forwarded-proto: ") + (req.secure ? "https" : "http") + "\r\n";
  }
  if (req.Header("x-forwarded-host").empty() && !req.Header("host").empty()) {
    head += "x-forwarded-host: " + req.Header("host") + "\r\n";
  }
  if (!t->prefix.empty()) {
    head += "x-forwarded-prefix: " + t->prefix + "\r\n";
  }
  const bool upgrade =
      !req.Header("upgrade").empty() && Contains(req.Header("connection"), "upgrade");
  head += upgrade ? "Connection: Upgrade\r\nUpgrade: " + req.Header("upgrade") + "\r\n\r\n"
                  : "Connection: close\r\n\r\n";
  bool client_keep = !Contains(req.Header("connection"), "close");
  std::string client_rest;
  if (auto w = http::WriteAll(up, head, idle); !w) {
    count(0, &w.error());
    return answer(
        JsonErr({ErrorCode::kUnavailable, "the port connection failed: " + w.error().message}));
  }
  // 3. Its body, streamed with its own framing (a 100-continue is answered here).
  auto sent = CopyBody(req, fd, std::move(buffered), up, idle);
  if (sent) {
    client_rest = std::move(*sent);
  } else if (sent.error().message.find("client") != std::string::npos ||
             sent.error().code == ErrorCode::kInvalidArgument) {
    count(0, &sent.error());
    if (sent.error().code == ErrorCode::kInvalidArgument) {
      answer(JsonErr(sent.error()));
    }
    return;  // the client went away or sent a broken body
  } else {
    client_keep = false;  // the service stopped reading: its answer may still come
  }
  // 4. The response: interim 1xx heads are passed on as they come.
  Result<Head> rh;
  for (;;) {
    rh = ReadHead(up, ubuf, idle);
    if (!rh || rh->status < 100 || rh->status >= 200 || rh->status == 101) {
      break;
    }
    if (auto w = http::WriteAll(fd, HeadText(*rh, {}, ""), idle); !w) {
      return;
    }
  }
  if (!rh) {
    count(0, &rh.error());
    return answer(rh.error().code == ErrorCode::kTimeout
                      ? JsonErrStatus(504, "the service on port " + port +
                                               " did not answer in time: " + rh.error().message)
                      : JsonErrStatus(502, "the service on port " + port +
                                               " sent no valid response: " + rh.error().message));
  }
  count(rh->status, nullptr);
  const std::string set_cookie =
      query_ok ? "Set-Cookie: " + std::string(kPortTokenCookie) + "=" + token +
                     "; Path=" + (t->prefix.empty() ? "/" : t->prefix + "/") +
                     "; HttpOnly; SameSite=Lax\r\n"
               : "";
  if (rh->status == 101) {
    // A WebSocket (or another upgraded protocol): one byte pipe from now on.
    if (!http::WriteAll(fd, HeadText(*rh, {}, set_cookie) + ubuf, idle) ||
        !http::WriteAll(up, client_rest, idle)) {
      return;
    }
    auto piped = http::PipeBoth(fd, up, kUpgradedIdle);
    Log(LogLevel::kDebug, "port.upgraded_end", "sandbox={} port={} ok={}", id, port,
        piped.has_value());
    return;
  }
  const std::string te = rh->Get("transfer-encoding");
  const std::string cl = rh->Get("content-length");
  const bool no_body = req.method == "HEAD" || rh->status == 204 || rh->status == 304;
  const bool delimited = no_body || Contains(te, "chunked") || (te.empty() && !cl.empty());
  const bool keep = client_keep && delimited;
  std::vector<std::string> drop = {"connection", "keep-alive", "proxy-connection"};
  if (Contains(te, "chunked")) {
    drop.push_back("content-length");
  }
  if (auto w = http::WriteAll(
          fd, HeadText(*rh, drop, set_cookie + (keep ? "" : "Connection: close\r\n")), idle);
      !w) {
    return;
  }
  Result<void> moved;
  if (!no_body && delimited) {
    moved = CopyBody(Framing(te, cl), up, std::move(ubuf), fd, idle).transform([](auto&&) {});
  } else if (!no_body) {
    moved = http::WriteAll(fd, ubuf, idle).and_then([&] { return CopyToEnd(up, fd, idle); });
  }
  if (!moved) {
    Log(LogLevel::kDebug, "port.response_cut", "sandbox={} port={} reason=\"{}\"", id, port,
        moved.error().message);
    return;
  }
  if (keep && resume) {
    // The connection goes back to the HTTP server for its next request (a descriptor of its
    // own: the transfer thread closes `fd`).
    const int again = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (again >= 0) {
      resume(UniqueFd(again), std::move(client_rest));
    }
  }
}

http::Response PortRelay::Control(const SandboxEntry& entry, const std::string& port_text,
                                  const http::Request& req) {
  if (req.method != "GET" && req.method != "POST") {
    return JsonErrStatus(405, "use GET or POST on /v1/sandboxes/{id}/ports/{port}");
  }
  const int port = ParsePortNumber(port_text);
  if (port == 0) {
    return JsonErr({ErrorCode::kInvalidArgument,
                    "port must be a number from 1 to 65535, got '" + port_text + "'"});
  }
  const std::string& id = entry.info.id;
  if (req.method == "POST") {
    const Json body = ParseUntrustedJson(req.body);
    if (!body.is_object()) {
      return JsonErr({ErrorCode::kInvalidArgument, "the body must be a JSON object"});
    }
    for (const auto& [k, v] : body.items()) {
      if (k != "public") {
        return JsonErr(FieldError(k.c_str(), "is not a field of this request (only \"public\")"));
      }
    }
    if (!body.contains("public") || !body["public"].is_boolean()) {
      return JsonErr(FieldError("public", "is required and must be true or false"));
    }
    if (auto set = public_.Set(id, port, body["public"].get<bool>()); !set) {
      return JsonErr(set.error());
    }
    Log(LogLevel::kInfo, "port.visibility", "sandbox={} port={} public={}", id, port,
        body["public"].get<bool>());
  }
  const std::string host = HostName(id, port);
  const std::string path = "/v1/sandboxes/" + id + "/ports/" + std::to_string(port) + "/";
  return JsonOk({{"sandbox_id", id},
                 {"port", port},
                 {"public", public_.Contains(id, port)},
                 {"path", path},
                 {"host", host.empty() ? Json(nullptr) : Json(host)},
                 {"access_token", PortAccessToken(entry.info.guest_token, id, port)},
                 {"token_parameter", kPortTokenParam}});
}

}  // namespace agentbox::daemon
