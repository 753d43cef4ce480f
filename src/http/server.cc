#include "http/server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <optional>

#include "common/log.h"
#include "common/strings.h"
#include "http/server_connection.h"
#include "http/tls_bridge.h"

namespace agentbox::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

std::string Request::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

std::optional<std::string> Request::QueryParam(const std::string& name) const {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) {
      amp = query.size();
    }
    std::string_view kv = std::string_view(query).substr(pos, amp - pos);
    size_t eq = kv.find('=');
    std::string key = PercentDecode(kv.substr(0, eq), true);
    if (key == name) {
      return eq == std::string_view::npos ? std::string() : PercentDecode(kv.substr(eq + 1), true);
    }
    pos = amp + 1;
  }
  return std::nullopt;
}

namespace {

using detail::Connection;

template <class Protocol>
class Acceptor : public std::enable_shared_from_this<Acceptor<Protocol>> {
 public:
  // `tls`: serve HTTPS (tcp only).
  Acceptor(asio::io_context& io, Dispatcher& d, const ServerOptions& opts, bool tls = false)
      : acceptor_(io), io_(io), d_(d), opts_(opts), tls_(tls) {}

  Result<void> Open(const typename Protocol::endpoint& ep) {
    beast::error_code ec;
    acceptor_.open(ep.protocol(), ec);
    if (!ec) {
      // Children spawned by the process (shells, jails) must never inherit server sockets.
      ::fcntl(acceptor_.native_handle(), F_SETFD, FD_CLOEXEC);
      if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
        acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
      }
      acceptor_.bind(ep, ec);
    }
    if (!ec) {
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      return Fail(ErrorCode::kUnavailable, "cannot listen: " + ec.message());
    }
    return {};
  }

  void Accept() {
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      if (tls_) {
        // On a strand of its own: an ssl::stream's operations must never run concurrently, and
        // the tunnel endpoint keeps using this strand for the WebSocket.
        acceptor_.async_accept(
            asio::make_strand(io_),
            [self = this->shared_from_this()](beast::error_code ec, asio::ip::tcp::socket s) {
              if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) {
                return;
              }
              if (!ec) {
                std::string peer = Prepare(s);
                std::make_shared<Connection<TlsSocket>>(TlsSocket(std::move(s), *self->opts_.tls),
                                                        self->d_, self->opts_, std::move(peer))
                    ->Start();
              }
              self->Accept();
            });
        return;
      }
    }
    // Each connection on a strand of its own: a streamed response reads (WatchClient) while it
    // writes, and their handlers must not run at once on the I/O threads.
    acceptor_.async_accept(
        asio::make_strand(io_),
        [self = this->shared_from_this()](beast::error_code ec, typename Protocol::socket s) {
          if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) {
            return;
          }
          if (!ec) {
            std::string peer = Prepare(s);
            std::make_shared<Connection<typename Protocol::socket>>(std::move(s), self->d_,
                                                                    self->opts_, std::move(peer))
                ->Start();
          }
          self->Accept();
        });
  }

  void Close() {
    beast::error_code ignored;
    acceptor_.close(ignored);
  }

  typename Protocol::acceptor acceptor_;

 private:
  // Close-on-exec and, for TCP, no delay; returns the peer's name for Request::peer.
  static std::string Prepare(typename Protocol::socket& s) {
    ::fcntl(s.native_handle(), F_SETFD, FD_CLOEXEC);
    std::string peer = "unix";
    if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
      beast::error_code pec;
      auto ep = s.remote_endpoint(pec);
      peer = pec ? "tcp" : ep.address().to_string() + ":" + std::to_string(ep.port());
      s.set_option(asio::ip::tcp::no_delay(true), pec);
    }
    return peer;
  }

  asio::io_context& io_;
  Dispatcher& d_;
  const ServerOptions& opts_;
  bool tls_ = false;
};

}  // namespace

struct Server::Impl {
  asio::io_context& io;
  Dispatcher& dispatcher;
  ServerOptions options;
  std::vector<std::shared_ptr<Acceptor<asio::local::stream_protocol>>> unix_acceptors;
  std::vector<std::shared_ptr<Acceptor<asio::ip::tcp>>> tcp_acceptors;
  std::vector<std::string> unix_paths;
};

Server::Server(asio::io_context& io, Dispatcher& dispatcher, ServerOptions options)
    : impl_(new Impl{io, dispatcher, std::move(options), {}, {}, {}}) {}

Server::~Server() {
  Stop();
  for (const auto& p : impl_->unix_paths) {
    ::unlink(p.c_str());
  }
}

Result<std::string> Server::Listen(const std::string& spec) {
  if (spec.starts_with("unix:")) {
    std::string path = spec.substr(5);
    if (path.empty() || path.size() >= 108) {
      return Fail(ErrorCode::kInvalidArgument,
                  "unix socket path must be 1..107 bytes: '" + path + "'");
    }
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return Fail(ErrorCode::kInvalidArgument, "'" + path + "' exists and is not a socket");
      }
      ::unlink(path.c_str());
    }
    auto a = std::make_shared<Acceptor<asio::local::stream_protocol>>(impl_->io, impl_->dispatcher,
                                                                      impl_->options);
    const mode_t old = ::umask(0117);  // socket file 0660: the file mode is the access control
    auto r = a->Open(asio::local::stream_protocol::endpoint(path));
    ::umask(old);
    if (!r) {
      return Fail(ErrorCode::kUnavailable, "unix:" + path + ": " + r.error().message);
    }
    a->Accept();
    impl_->unix_acceptors.push_back(a);
    impl_->unix_paths.push_back(path);
    return "unix:" + path;
  }
  const bool tls = spec.starts_with("tls:");
  if (tls && !impl_->options.tls) {
    return Fail(
        ErrorCode::kInvalidArgument,
        "'" + spec + "' needs a TLS certificate and key (AGENTBOX_TLS_CERT, AGENTBOX_TLS_KEY)");
  }
  if (spec.starts_with("tcp:") || tls) {
    const std::string scheme = tls ? "tls" : "tcp";
    std::string rest = spec.substr(4);
    size_t colon = rest.rfind(':');
    if (colon == std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument,
                  scheme + " listen address must be " + scheme + ":HOST:PORT");
    }
    std::string host = rest.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (host == "localhost" || host.empty()) {
      host = "127.0.0.1";
    }
    int port = -1;
    try {
      port = std::stoi(rest.substr(colon + 1));
    } catch (...) {
      port = -1;
    }
    if (port < 0 || port > 65535) {
      return Fail(ErrorCode::kInvalidArgument, "invalid port in '" + spec + "'");
    }
    beast::error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (ec) {
      return Fail(ErrorCode::kInvalidArgument, "invalid address '" + host + "' (numeric only)");
    }
    auto a = std::make_shared<Acceptor<asio::ip::tcp>>(impl_->io, impl_->dispatcher, impl_->options,
                                                       tls);
    if (auto r = a->Open({addr, static_cast<unsigned short>(port)}); !r) {
      return Fail(ErrorCode::kUnavailable, spec + ": " + r.error().message);
    }
    a->Accept();
    impl_->tcp_acceptors.push_back(a);
    auto ep = a->acceptor_.local_endpoint(ec);
    std::string h = ep.address().to_string();
    if (ep.address().is_v6()) {
      h = "[" + h + "]";
    }
    return scheme + ":" + h + ":" + std::to_string(ep.port());
  }
  return Fail(
      ErrorCode::kInvalidArgument,
      "listen address must be unix:PATH, tcp:HOST:PORT or tls:HOST:PORT, got '" + spec + "'");
}

void Server::Adopt(asio::local::stream_protocol::socket socket, const std::string& peer) {
  std::make_shared<Connection<asio::local::stream_protocol::socket>>(
      std::move(socket), impl_->dispatcher, impl_->options, peer)
      ->Start();
}

void Server::Stop() {
  for (auto& a : impl_->unix_acceptors) {
    a->Close();
  }
  for (auto& a : impl_->tcp_acceptors) {
    a->Close();
  }
}

}  // namespace agentbox::http
