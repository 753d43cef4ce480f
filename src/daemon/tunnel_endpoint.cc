#include "daemon/tunnel_endpoint.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <optional>

#include "common/log.h"
#include "common/strings.h"
#include "http/tunnel_mux.h"

namespace agentbox::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using boost::system::error_code;
using Local = asio::local::stream_protocol;

struct TunnelEndpoint::Entry {
  explicit Entry(asio::io_context& io) : strand(asio::make_strand(io)), acceptor(strand) {}
  std::string id;
  std::string secret;
  std::string path;
  asio::strand<asio::io_context::executor_type> strand;
  Local::acceptor acceptor;
  std::shared_ptr<http::tunnel::Mux> mux;  // guarded by TunnelEndpoint::mu_
  uint64_t connections = 0;                // guarded by TunnelEndpoint::mu_
  std::chrono::milliseconds grace{0};
  // Connections accepted while no tunnel is up, waiting up to `grace` for the guest to redial;
  // guarded by TunnelEndpoint::mu_.
  std::map<uint64_t, Local::socket> waiting;
  uint64_t next_waiting = 0;
};

namespace {

// Answers `status` with an error envelope on a connection that is not (or no longer) HTTP-served
// and closes it.
template <class Socket>
void Refuse(std::shared_ptr<Socket> s, int status, const std::string& message) {
  auto msg = std::make_shared<std::string>(http::tunnel::CannedResponse(status, message));
  asio::async_write(*s, asio::buffer(*msg), [s, msg](error_code, size_t) {
    error_code ignored;
    beast::get_lowest_layer(*s).shutdown(asio::socket_base::shutdown_send, ignored);
    beast::get_lowest_layer(*s).close(ignored);
  });
}

void AcceptLoop(std::shared_ptr<TunnelEndpoint::Entry> e, std::mutex& mu);

std::string NotConnected(const std::string& id) {
  return "sandbox '" + id +
         "': its guest is not connected (the tunnel is down; the guest reconnects)";
}

}  // namespace

TunnelEndpoint::TunnelEndpoint(asio::io_context& io, Options options)
    : io_(io), opts_(std::move(options)) {
  ::mkdir(opts_.socket_dir.c_str(), 0700);
}

TunnelEndpoint::~TunnelEndpoint() {
  std::map<std::string, std::shared_ptr<Entry>> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries.swap(entries_);
  }
  for (auto& [id, e] : entries) {
    error_code ignored;
    e->acceptor.close(ignored);
    ::unlink(e->path.c_str());
    if (e->mux) {
      e->mux->Shutdown("daemon stopping");
    }
  }
}

namespace {

void AcceptLoop(std::shared_ptr<TunnelEndpoint::Entry> e, std::mutex& mu) {
  e->acceptor.async_accept([e, &mu](error_code ec, Local::socket s) {
    if (ec == asio::error::operation_aborted || !e->acceptor.is_open()) {
      return;
    }
    if (!ec) {
      ::fcntl(s.native_handle(), F_SETFD, FD_CLOEXEC);
      std::shared_ptr<http::tunnel::Mux> mux;
      uint64_t ticket = 0;
      {
        std::lock_guard<std::mutex> lock(mu);
        mux = e->mux;
        if (!mux && e->grace.count() > 0) {
          ticket = ++e->next_waiting;
          e->waiting.emplace(ticket, std::move(s));
        }
      }
      if (mux) {
        mux->OpenStream(std::move(s));
      } else if (ticket == 0) {
        Refuse(std::make_shared<Local::socket>(std::move(s)), 503, NotConnected(e->id));
      } else {
        // A guest that just lost its link usually redials within a few hundred milliseconds:
        // hold the request that long rather than fail it (Accept hands it to the new tunnel).
        auto timer = std::make_shared<asio::steady_timer>(e->strand, e->grace);
        timer->async_wait([e, &mu, ticket, timer](error_code) {
          std::optional<Local::socket> late;
          {
            std::lock_guard<std::mutex> lock(mu);
            auto it = e->waiting.find(ticket);
            if (it != e->waiting.end()) {
              late.emplace(std::move(it->second));
              e->waiting.erase(it);
            }
          }
          if (late) {
            Refuse(std::make_shared<Local::socket>(std::move(*late)), 503, NotConnected(e->id));
          }
        });
      }
    }
    AcceptLoop(e, mu);
  });
}

}  // namespace

Result<TunnelEndpoint::Registration> TunnelEndpoint::Register(const std::string& id,
                                                              const std::string& secret) {
  if (!secret.empty() && (secret.size() < 32 || secret.find('.') != std::string::npos)) {
    return Fail(ErrorCode::kInvalidArgument,
                "tunnel secret of sandbox '" + id + "' must be at least 32 characters without '.'");
  }
  auto e = std::make_shared<Entry>(io_);
  e->grace = opts_.reconnect_grace;
  e->id = id;
  e->secret = secret.empty() ? RandomId(48) : secret;
  e->path = opts_.socket_dir + "/" + id + ".sock";
  if (e->path.size() >= 108) {
    return Fail(ErrorCode::kInvalidArgument, "tunnel socket path too long: '" + e->path + "'");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.count(id)) {
      return Fail(ErrorCode::kConflict, "sandbox '" + id + "' has a tunnel registered already");
    }
    ::unlink(e->path.c_str());
    error_code ec;
    e->acceptor.open(Local(), ec);
    if (!ec) {
      ::fcntl(e->acceptor.native_handle(), F_SETFD, FD_CLOEXEC);
      e->acceptor.bind(Local::endpoint(e->path), ec);
    }
    if (!ec) {
      ::chmod(e->path.c_str(), 0600);
      e->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      return Fail(ErrorCode::kUnavailable,
                  "cannot open tunnel socket '" + e->path + "': " + ec.message());
    }
    entries_[id] = e;
  }
  AcceptLoop(e, mu_);
  Log(LogLevel::kInfo, "tunnel.registered", "sandbox={} socket={}", id, e->path);
  return Registration{id + "." + e->secret, "unix:" + e->path};
}

void TunnelEndpoint::Unregister(const std::string& id) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) {
      return;
    }
    e = it->second;
    entries_.erase(it);
  }
  asio::dispatch(e->strand, [e] {
    error_code ignored;
    e->acceptor.close(ignored);
  });
  ::unlink(e->path.c_str());
  std::shared_ptr<http::tunnel::Mux> mux;
  {
    std::lock_guard<std::mutex> lock(mu_);
    mux = std::move(e->mux);
  }
  if (mux) {
    mux->Shutdown("sandbox '" + id + "' destroyed");
  }
  cv_.notify_all();
  Log(LogLevel::kInfo, "tunnel.unregistered", "sandbox={}", id);
}

bool TunnelEndpoint::Registered(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.count(id) > 0;
}

bool TunnelEndpoint::Connected(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it != entries_.end() && it->second->mux != nullptr;
}

bool TunnelEndpoint::WaitConnected(const std::string& id, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    auto it = entries_.find(id);
    return it == entries_.end() || it->second->mux != nullptr;
  }) && entries_.count(id) > 0;
}

void TunnelEndpoint::Drop(const std::string& id) {
  std::shared_ptr<http::tunnel::Mux> mux;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) {
      mux = it->second->mux;
    }
  }
  if (mux) {
    mux->Shutdown("tunnel dropped by the daemon");
  }
}

void TunnelEndpoint::Upgrade(http::Request req, http::UpgradedSocket socket) {
  std::visit([&](auto& s) { Accept(std::move(req), std::move(s)); }, socket);
}

template <class Socket>
void TunnelEndpoint::Accept(http::Request req, Socket socket) {
  auto sock = std::make_shared<Socket>(std::move(socket));
  if (req.path != "/v1/tunnel" || req.method != "GET") {
    Refuse(sock, 404,
           "no WebSocket endpoint at " + req.method + " " + req.path +
               " (guests connect to GET /v1/tunnel)");
    return;
  }
  const std::string auth = req.Header("authorization");
  const std::string token = auth.starts_with("Bearer ") ? auth.substr(7) : "";
  const size_t dot = token.rfind('.');
  const std::string id = dot == std::string::npos ? "" : token.substr(0, dot);
  const std::string secret = dot == std::string::npos ? "" : token.substr(dot + 1);
  std::shared_ptr<Entry> e;
  bool known_id = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    known_id = it != entries_.end();
    if (known_id && it->second->secret.size() == secret.size() &&
        CRYPTO_memcmp(it->second->secret.data(), secret.data(), secret.size()) == 0) {
      e = it->second;
    }
  }
  if (!e) {
    // The token is never logged. Its id part names the sandbox it claimed, logged only when it
    // is one (anything else may be part of a secret sent by mistake, e.g. an API key).
    Log(LogLevel::kWarn, "tunnel.rejected", "peer={} sandbox={} reason={}", req.peer,
        known_id ? id : "-", token.empty() ? "no_token" : "bad_token");
    Refuse(sock, 401, "tunnel refused: missing or wrong sandbox token");
    return;
  }
  using Ws = websocket::stream<Socket>;
  using Strand = asio::strand<asio::io_context::executor_type>;
  // Every operation of the WebSocket, its keep-alive timer included, must run on the Mux's
  // strand. A TLS connection was accepted on a strand already (http::Server), which it keeps: its
  // ssl::stream cannot change executors. A plain socket moves onto a new strand (the server
  // accepted it on the bare io_context).
  std::optional<Strand> strand_opt;
  std::unique_ptr<Ws> ws;
  if constexpr (std::is_same_v<Socket, http::TlsSocket>) {
    if (const Strand* st = sock->get_executor().template target<Strand>()) {
      strand_opt.emplace(*st);
      ws = std::make_unique<Ws>(std::move(*sock));
    }
  } else {
    strand_opt.emplace(asio::make_strand(io_));
    error_code pec;
    const auto protocol = sock->local_endpoint(pec).protocol();
    Socket on_strand(*strand_opt);
    if (!pec) {
      on_strand.assign(protocol, sock->release(pec));
    }
    if (!pec) {
      ws = std::make_unique<Ws>(std::move(on_strand));
    }
  }
  if (!ws) {
    Log(LogLevel::kWarn, "tunnel.accept_failed",
        "sandbox={} error=\"cannot move the connection "
        "onto a strand\"",
        e->id);
    return;
  }
  Strand strand = *strand_opt;
  websocket::stream_base::timeout t;
  t.handshake_timeout = std::chrono::seconds(10);
  t.idle_timeout = opts_.idle_timeout;
  t.keep_alive_pings = true;
  ws->set_option(t);
  auto breq = std::make_shared<beast::http::request<beast::http::empty_body>>(
      beast::http::verb::get, req.target, 11);
  for (const auto& [k, v] : req.headers) {
    breq->set(k, v);
  }
  Ws* raw = ws.get();
  raw->async_accept(
      *breq,
      asio::bind_executor(strand, [this, e, breq, strand, peer = req.peer,
                                   ws = std::shared_ptr<Ws>(std::move(ws))](error_code ec) mutable {
        if (ec) {
          Log(LogLevel::kWarn, "tunnel.handshake_failed", "sandbox={} peer={} error=\"{}\"", e->id,
              peer, ec.message());
          return;
        }
        // The Link owns the stream from here; unique ownership moves out of the shared_ptr
        // through a fresh object (the accept completed, nothing else refers to it).
        auto owned = std::make_unique<Ws>(std::move(*ws));
        http::tunnel::Mux::Hooks hooks;
        auto weak_mux = std::make_shared<std::weak_ptr<http::tunnel::Mux>>();
        hooks.on_closed = [this, e, weak_mux](const std::string& why) {
          {
            std::lock_guard<std::mutex> lock(mu_);
            if (e->mux && e->mux == weak_mux->lock()) {
              e->mux.reset();
            }
          }
          Log(LogLevel::kInfo, "tunnel.down", "sandbox={} reason=\"{}\"", e->id, why);
        };
        auto mux = std::make_shared<http::tunnel::Mux>(
            strand, std::make_unique<http::tunnel::WsLink<Ws>>(std::move(owned), strand),
            http::tunnel::Mux::Role::kDaemon, std::move(hooks));
        *weak_mux = mux;
        std::shared_ptr<http::tunnel::Mux> old;
        uint64_t n = 0;
        bool registered = false;
        std::map<uint64_t, Local::socket> waiting;
        {
          std::lock_guard<std::mutex> lock(mu_);
          auto it = entries_.find(e->id);
          registered = it != entries_.end() && it->second == e;
          if (registered) {
            old = std::move(e->mux);
            e->mux = mux;
            n = ++e->connections;
            waiting.swap(e->waiting);
          }
        }
        if (!registered) {
          mux->Shutdown("sandbox unregistered");
          return;
        }
        mux->Start();
        for (auto& [ticket, waiting_socket] : waiting) {
          mux->OpenStream(std::move(waiting_socket));
        }
        if (old) {
          old->Shutdown("replaced by a new tunnel from the guest");
        }
        cv_.notify_all();
        Log(LogLevel::kInfo, "tunnel.up", "sandbox={} peer={} connection={}", e->id, peer, n);
      }));
}

}  // namespace agentbox::daemon
