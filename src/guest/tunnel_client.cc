#include "guest/tunnel_client.h"

#include <sys/socket.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <random>

#include "common/log.h"
#include "common/unique_fd.h"

namespace agentbox::guest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using asio::ip::tcp;
using boost::system::error_code;

Result<TunnelUrl> ParseTunnelUrl(const std::string& url) {
  TunnelUrl u;
  std::string rest;
  if (url.starts_with("ws://")) {
    rest = url.substr(5);
  } else if (url.starts_with("wss://")) {
    u.tls = true;
    rest = url.substr(6);
  } else {
    return Fail(ErrorCode::kInvalidArgument,
                "--connect must be ws://HOST[:PORT]/PATH or wss://..., got '" + url + "'");
  }
  const size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = hostport.rfind(':');
  if (!hostport.empty() && hostport.front() == '[') {
    const size_t close = hostport.find(']');
    if (close == std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument, "unbalanced '[' in --connect URL '" + url + "'");
    }
    u.host = hostport.substr(1, close - 1);
    colon = hostport.find(':', close);
  } else {
    u.host = hostport.substr(0, colon);
  }
  u.port = colon == std::string::npos ? (u.tls ? "443" : "80") : hostport.substr(colon + 1);
  if (u.host.empty() || u.port.empty() ||
      u.port.find_first_not_of("0123456789") != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "no host or a bad port in --connect URL '" + url + "'");
  }
  return u;
}

using PlainWs = websocket::stream<tcp::socket>;
using TlsWs = websocket::stream<http::TlsSocket>;

// One connection attempt: resolve, connect (with a deadline), TLS handshake (wss://), WebSocket
// handshake.
template <class Ws>
struct TunnelClient::Attempt : std::enable_shared_from_this<Attempt<Ws>> {
  static constexpr bool kTls = std::is_same_v<Ws, TlsWs>;
  using std::enable_shared_from_this<Attempt<Ws>>::shared_from_this;

  explicit Attempt(TunnelClient& c)
      : client(c), resolver(c.strand_), ws(MakeWs(c)), deadline(c.strand_) {}

  static std::unique_ptr<Ws> MakeWs(TunnelClient& c) {
    if constexpr (kTls) {
      return std::make_unique<Ws>(c.strand_, *c.tls_);
    } else {
      return std::make_unique<Ws>(c.strand_);
    }
  }

  void Run() {
    deadline.expires_after(std::chrono::seconds(10));
    deadline.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) {
        self->timed_out = true;
        error_code ignored;
        self->resolver.cancel();
        beast::get_lowest_layer(*self->ws).close(ignored);
      }
    });
    // A numeric address needs no resolver (getaddrinfo in a static binary wants the host's NSS
    // libraries for names).
    error_code aec;
    const auto addr = asio::ip::make_address(client.url_.host, aec);
    if (!aec) {
      Connect(tcp::resolver::results_type::create(
          tcp::endpoint(addr, static_cast<unsigned short>(std::stoi(client.url_.port))),
          client.url_.host, client.url_.port));
      return;
    }
    resolver.async_resolve(
        client.url_.host, client.url_.port,
        [self = shared_from_this()](error_code ec, tcp::resolver::results_type results) {
          if (ec) {
            self->Done("cannot resolve '" + self->client.url_.host + "': " + ec.message());
            return;
          }
          self->Connect(std::move(results));
        });
  }

  void Connect(tcp::resolver::results_type results) {
    asio::async_connect(beast::get_lowest_layer(*ws), results,
                        [self = shared_from_this()](error_code cec, const tcp::endpoint&) {
                          if (cec) {
                            self->Done("cannot connect: " + cec.message());
                            return;
                          }
                          error_code ignored;
                          beast::get_lowest_layer(*self->ws).set_option(tcp::no_delay(true),
                                                                        ignored);
                          if constexpr (kTls) {
                            self->TlsHandshake();
                          } else {
                            self->Handshake();
                          }
                        });
  }

  // The daemon's certificate must chain to --ca-file (or a system CA) and name the URL's host;
  // a failure is reported with OpenSSL's verification result and retried like any other.
  void TlsHandshake() {
    auto& tls = ws->next_layer();
    if (auto r = http::SetTlsPeerName(tls, client.url_.host); !r) {
      Done(r.error().message);
      return;
    }
    tls.async_handshake(asio::ssl::stream_base::client, [self = shared_from_this()](error_code ec) {
      if (ec) {
        const std::string ca = self->client.opts_.ca_file.empty()
                                   ? "the system's CAs"
                                   : "--ca-file " + self->client.opts_.ca_file;
        self->Done("TLS handshake failed: " + http::TlsHandshakeError(self->ws->next_layer(), ec) +
                   " (the daemon's certificate is checked against " + ca + " and must name '" +
                   self->client.url_.host + "')");
        return;
      }
      self->Handshake();
    });
  }

  void Handshake() {
    websocket::stream_base::timeout t;
    t.handshake_timeout = std::chrono::seconds(10);
    t.idle_timeout = client.opts_.idle_timeout;
    t.keep_alive_pings = true;
    ws->set_option(t);
    ws->set_option(websocket::stream_base::decorator(
        [token = client.opts_.token](websocket::request_type& req) {
          req.set(beast::http::field::authorization, "Bearer " + token);
          req.set(beast::http::field::user_agent, "agentbox-guest");
        }));
    ws->async_handshake(res, client.url_.host + ":" + client.url_.port, client.url_.target,
                        [self = shared_from_this()](error_code ec) {
                          if (ec) {
                            std::string why = "handshake failed: " + ec.message();
                            if (self->res.result_int() != 0) {
                              why += " (HTTP " + std::to_string(self->res.result_int()) + " " +
                                     self->res.body() + ")";
                            }
                            self->Done(why);
                            return;
                          }
                          self->deadline.cancel();
                          self->client.Up(std::make_unique<http::tunnel::WsLink<Ws>>(
                              std::move(self->ws), self->client.strand_));
                        });
  }

  void Done(std::string why) {
    deadline.cancel();
    if (timed_out) {
      why = "no tunnel within 10 s (" + why + ")";
    }
    client.Retry(why);
  }

  TunnelClient& client;
  tcp::resolver resolver;
  std::unique_ptr<Ws> ws;
  asio::steady_timer deadline;
  websocket::response_type res;
  bool timed_out = false;
};

TunnelClient::TunnelClient(asio::io_context& io, http::Server& server, TunnelClientOptions options)
    : io_(io),
      strand_(asio::make_strand(io)),
      server_(server),
      opts_(std::move(options)),
      timer_(strand_),
      backoff_(opts_.backoff_min) {}

TunnelClient::~TunnelClient() = default;

Result<void> TunnelClient::Start() {
  auto u = ParseTunnelUrl(opts_.url);
  if (!u) {
    return tl::unexpected(u.error());
  }
  if (u->tls) {
    auto ctx = http::MakeClientTlsContext(opts_.ca_file);
    if (!ctx) {
      return Fail(ErrorCode::kInvalidArgument, "wss:// " + ctx.error().message);
    }
    tls_ = *ctx;
  } else if (!opts_.ca_file.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "--ca-file is for wss:// URLs; '" + opts_.url + "' is not encrypted");
  }
  url_ = *u;
  asio::dispatch(strand_, [this] { Dial(); });
  return {};
}

void TunnelClient::Stop() {
  asio::dispatch(strand_, [this] {
    stopped_ = true;
    timer_.cancel();
    if (mux_) {
      mux_->Shutdown("guest stopping");
      mux_.reset();
    }
  });
}

void TunnelClient::Dial() {
  if (stopped_) {
    return;
  }
  if (url_.tls) {
    std::make_shared<Attempt<TlsWs>>(*this)->Run();
  } else {
    std::make_shared<Attempt<PlainWs>>(*this)->Run();
  }
}

void TunnelClient::Retry(const std::string& why) {
  if (stopped_) {
    return;
  }
  static thread_local std::minstd_rand rng{std::random_device{}()};
  const auto jitter = std::chrono::milliseconds(
      std::uniform_int_distribution<int64_t>(0, backoff_.count() / 4)(rng));
  const auto delay = backoff_ + jitter;
  Log(LogLevel::kWarn, "guest.tunnel_retry", "url={} in_ms={} reason=\"{}\"", opts_.url,
      delay.count(), why);
  backoff_ = std::min(backoff_ * 2, opts_.backoff_max);
  timer_.expires_after(delay);
  timer_.async_wait([this](error_code ec) {
    if (!ec) {
      Dial();
    }
  });
}

void TunnelClient::Up(std::unique_ptr<http::tunnel::Link> link) {
  if (stopped_) {
    link->Close();
    return;
  }
  backoff_ = opts_.backoff_min;
  ++connections_;
  Log(LogLevel::kInfo, "guest.tunnel_up", "url={} connection={}", opts_.url, connections_);
  http::tunnel::Mux::Hooks hooks;
  hooks.on_open = [this](uint32_t) -> Result<http::tunnel::Mux::UnixSocket> {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      return Fail(ErrnoError(errno, "socketpair"));
    }
    using Proto = asio::local::stream_protocol;
    Proto::socket served(io_);
    Proto::socket bridged(strand_);
    served.assign(Proto(), sv[0]);
    bridged.assign(Proto(), sv[1]);
    server_.Adopt(std::move(served), "tunnel");
    return bridged;
  };
  hooks.on_closed = [this](const std::string& why) {
    mux_.reset();
    Retry(why);
  };
  mux_ = std::make_shared<http::tunnel::Mux>(strand_, std::move(link),
                                             http::tunnel::Mux::Role::kGuest, std::move(hooks));
  mux_->Start();
}

}  // namespace agentbox::guest
