// Bulk transfers through agentboxd: uploads, downloads and archives are relayed between the
// client's connection and the sandbox's guest with splice(2) on a transfer thread, in both
// directions at once. Nothing is spooled or buffered beyond two pipes: the guest's own reading
// paces the client (backpressure both ways), and either side going away ends both connections
// at once, so the guest discards a partial upload.
#include <future>

#include "common/log.h"
#include "common/strings.h"
#include "daemon/api_detail.h"
#include "daemon/daemon_api.h"
#include "http/envelope.h"
#include "http/raw_io.h"

namespace agentbox::daemon {

using detail::Clock;
using detail::SplitPath;

namespace {

// "/v1/sandboxes/{id}/api/v1/file/{upload,download,archive}" -> {id, op}, or nothing.
std::optional<std::pair<std::string, std::string>> BulkRoute(const http::Request& req) {
  auto parts = SplitPath(req.path);
  if (parts.size() != 7 || parts[0] != "v1" || parts[1] != "sandboxes" || parts[3] != "api" ||
      parts[4] != "v1" || parts[5] != "file") {
    return std::nullopt;
  }
  const std::string& op = parts[6];
  const std::string& m = req.method;
  if ((op == "upload" && m == "POST") || (op == "download" && m == "GET") ||
      (op == "archive" && (m == "GET" || m == "POST"))) {
    return std::make_pair(parts[2], "file/" + op);
  }
  return std::nullopt;
}

// The request head sent to the guest: the client's framing and content headers, the guest's
// token instead of the client's credentials, and "Connection: close" (the relay ends with the
// response).
std::string GuestHead(const http::Request& req, const std::string& op, const std::string& token) {
  std::string h = req.method + " /api/v1/" + op + (req.query.empty() ? "" : "?" + req.query) +
                  " HTTP/1.1\r\nHost: guest\r\nX-Access-Token: " + token + "\r\n";
  for (const char* name : {"content-type", "content-length", "transfer-encoding"}) {
    if (auto v = req.Header(name); !v.empty()) {
      h += std::string(name) + ": " + v + "\r\n";
    }
  }
  h += "Connection: close\r\n\r\n";
  return h;
}

}  // namespace

bool DaemonApi::WantsRaw(const http::Request& req) {
  return ports_->Wants(req) || BulkRoute(req).has_value();
}

bool DaemonApi::WantsRawOverTls(const http::Request& req) { return ports_->Wants(req); }

void DaemonApi::HandleRaw(http::Request req, http::RawConnection conn) {
  if (ports_->Wants(req)) {  // a sandbox's port (port_relay.cc)
    return ports_->Handle(std::move(req), std::move(conn));
  }
  ++in_flight_;
  UniqueFd refused;
  auto work = [this, req = std::move(req), buffered = std::move(conn.buffered)](int fd) mutable {
    RelayBulk(req, fd, std::move(buffered));
    --in_flight_;
  };
  if (auto started = bulk_.Start(std::move(conn.fd), std::move(work), &refused); !started) {
    --in_flight_;
    static_cast<void>(
        http::WriteResponse(refused.Get(), JsonErr(started.error()), std::chrono::seconds(5)));
  }
}

void DaemonApi::RelayBulk(const http::Request& req, int fd, std::string buffered) {
  const auto idle = health_.deadlines().stream_idle;
  auto answer = [fd, idle](const http::Response& r) { http::AnswerAndClose(fd, r, idle); };
  auto route = BulkRoute(req);
  auto caller = Authenticate(req);
  if (!caller) {
    return answer(JsonErr(
        {ErrorCode::kUnauthorized, "missing or invalid API key (Authorization: Bearer KEY)"}));
  }
  if (draining_) {
    return answer(JsonErrStatus(503, "agentboxd is shutting down"));
  }
  const auto& [id, op] = *route;
  // A sandbox that is moving to another backend: wait for the move (this thread is the
  // transfer's own), then relay to wherever the sandbox is now.
  if (!gate_.AdmitWaiting(
          id, std::chrono::milliseconds(static_cast<int64_t>(opts_.migration_hold_s * 1000)))) {
    return answer(MovingResponse(id, "is still moving to another backend"));
  }
  struct Admission {
    MigrationGate& gate;
    const std::string& id;
    ~Admission() { gate.Leave(id); }
  } admission{gate_, id};
  auto entry = Find(id, *caller);
  if (!entry && HasSharedBackend() && ValidSandboxId(id)) {
    FindShared(id);  // another replica's sandbox on a shared backend (blocks: fine here)
    entry = Find(id, *caller);
  }
  if (!entry) {
    return answer(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  if (!entry->info.guest_endpoint.starts_with("unix:")) {
    return answer(
        JsonErr({ErrorCode::kUnavailable, "sandbox '" + id + "' has no reachable guest endpoint"}));
  }
  // The gate and the unresponsive-guest probe, as for every relayed call.
  std::promise<std::optional<http::Response>> gate;
  auto gated = gate.get_future();
  auto once = std::make_shared<std::once_flag>();
  health_.BeforeCall(
      entry->info, op,
      [&gate, once](http::Response r) {
        std::call_once(*once, [&] { gate.set_value(std::move(r)); });
      },
      [&gate, once] { std::call_once(*once, [&] { gate.set_value(std::nullopt); }); });
  if (auto refused = gated.get(); refused) {
    return answer(*refused);
  }
  const auto start = Clock::now();
  auto guest = http::ConnectUnixNoFollow(entry->info.guest_endpoint.substr(5));
  if (!guest) {
    CountRelayed(entry->info.backend, op, Fail(guest.error()), start);
    return answer(JsonErr(guest.error()));
  }
  // 100-continue is answered here: the guest is told nothing of it.
  if (AsciiLower(req.Header("expect")) == "100-continue") {
    if (!http::WriteAll(fd, "HTTP/1.1 100 Continue\r\n\r\n", idle)) {
      return;
    }
  }
  if (auto w = http::WriteAll(guest->Get(), GuestHead(req, op, entry->info.guest_token) + buffered,
                              idle);
      !w) {
    CountRelayed(entry->info.backend, op, Fail(w.error()), start);
    return answer(
        JsonErr({ErrorCode::kUnavailable, "guest connection failed: " + w.error().message}));
  }
  bool answered = false;
  auto relayed = http::Proxy(fd, guest->Get(), idle, [&](int status) {
    answered = true;
    health_.Answered(entry->info.id);
    http::ClientResponse cr;
    cr.status = status;
    CountRelayed(entry->info.backend, op, cr, start);
  });
  if (!relayed) {
    if (!answered) {
      CountRelayed(entry->info.backend, op, Fail(relayed.error()), start);
      if (relayed.error().code != ErrorCode::kUnavailable ||
          relayed.error().message.starts_with("the guest")) {
        answer(relayed.error().code == ErrorCode::kTimeout
                   ? JsonErrStatus(504, "the guest did not answer the " + op +
                                            " in time: " + relayed.error().message)
                   : JsonErr(relayed.error()));
      }
    }
    Log(LogLevel::kInfo, "relay.bulk_cut", "sandbox={} op={} reason={}", id, op,
        relayed.error().message);
    return;
  }
  Log(LogLevel::kDebug, "relay.bulk", "sandbox={} op={} status={} up={} down={}", id, op,
      relayed->status, relayed->to_upstream, relayed->to_client);
  // The guest may have answered before the whole body arrived (a refusal: 409, 413): the
  // client may still be sending, and closing now would fail its send before it reads the answer
  // (CI saw curl report the 100 Continue as the status of a refused archive).
  http::DrainBeforeClose(fd);
}

}  // namespace agentbox::daemon
