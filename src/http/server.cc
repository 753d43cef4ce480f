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

// The most one write of a response body hands the kernel at once. A large body (a 5 MB file
// listing, a 64 MiB file read) written in one go kept an I/O thread in the kernel copying it for
// milliseconds while other sandboxes' calls waited; in slices, their handlers run in between.
constexpr size_t kWriteSlice = 256 * 1024;

// What one read of a request body asks the socket for. Beast reads at most the buffer's free
// capacity, and the buffer only grew to hold the header: bodies came in reads of a few KiB, each
// a trip through the reactor (the same in the daemon's guest client: docs/reliability.md §4).
// Reserved while a body is read, given back before the connection waits for its next request.
constexpr size_t kBodyReadSize = 64 * 1024;
constexpr size_t kHeaderReadSize = 16 * 1024;

template <class Socket>
inline constexpr bool kIsTls = std::is_same_v<Socket, TlsSocket>;

template <class Socket>
class Connection : public std::enable_shared_from_this<Connection<Socket>> {
 public:
  Connection(Socket socket, Dispatcher& d, const ServerOptions& opts, std::string peer)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        d_(d),
        opts_(opts),
        peer_(std::move(peer)) {}

  // Bytes already read from the connection (handed back by a raw exchange): parsed first.
  void Prefill(const std::string& bytes) {
    auto b = buffer_.prepare(bytes.size());
    asio::buffer_copy(b, asio::buffer(bytes));
    buffer_.commit(bytes.size());
  }

  // The connection is the plaintext of a TLS connection (tls_bridge.h): Request::secure.
  void MarkSecure() { secure_ = true; }

  void Start() {
    if constexpr (kIsTls<Socket>) {
      StartTls();
    } else {
      ReadHeader();
    }
  }

 private:
  // The TCP socket under TLS (the socket itself otherwise): closing and half-closing act on it.
  auto& Lowest() { return beast::get_lowest_layer(socket_); }

  // TLS: the first bytes tell a ClientHello from a plain HTTP request, which gets a plain-text
  // 400 naming the mistake instead of a handshake failure the client cannot read.
  void StartTls() {
    ArmTimer(std::chrono::seconds(10));
    beast::async_detect_ssl(
        Lowest(), buffer_, [self = this->shared_from_this()](beast::error_code ec, bool tls) {
          if (ec) {
            ++self->timer_gen_;
            self->timer_.cancel();
            return;
          }
          if (!tls) {
            ++self->timer_gen_;
            self->timer_.cancel();
            self->RefusePlainHttp();
            return;
          }
          self->socket_.async_handshake(asio::ssl::stream_base::server, self->buffer_.data(),
                                        [self](beast::error_code hec, size_t used) {
                                          ++self->timer_gen_;
                                          self->timer_.cancel();
                                          if (hec) {
                                            Log(LogLevel::kDebug, "http.tls_handshake_failed",
                                                "peer={} error=\"{}\"", self->peer_, hec.message());
                                            beast::error_code ignored;
                                            self->Lowest().close(ignored);
                                            return;
                                          }
                                          self->buffer_.consume(used);
                                          self->ReadHeader();
                                        });
        });
  }

  // TLS: from this request on, the connection's plaintext goes through one end of a socketpair
  // (tls_bridge.h), whose other end is the raw connection; handed back, that end is served as a
  // plain connection with the same peer.
  void BridgeRaw() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      SendError(503, "cannot relay this request: socketpair failed", true);
      return;
    }
    UniqueFd relay_end(sv[0]);
    asio::local::stream_protocol::socket plain(socket_.get_executor());
    beast::error_code ec;
    plain.assign(asio::local::stream_protocol(), sv[1], ec);
    if (ec) {
      ::close(sv[1]);
      SendError(503, "cannot relay this request: " + ec.message(), true);
      return;
    }
    ::fcntl(relay_end.Get(), F_SETFL, ::fcntl(relay_end.Get(), F_GETFL) | O_NONBLOCK);
    RawConnection raw;
    raw.buffered = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    raw.fd = std::move(relay_end);
    raw.resume = [ex = socket_.get_executor(), &d = d_, &opts = opts_, peer = peer_](
                     UniqueFd fd, std::string buffered) {
      auto owned = std::make_shared<UniqueFd>(std::move(fd));
      asio::post(ex, [ex, &d, &opts, peer, owned, buffered = std::move(buffered)] {
        asio::local::stream_protocol::socket s(ex);
        beast::error_code aec;
        s.assign(asio::local::stream_protocol(), owned->Release(), aec);
        if (aec) {
          return;
        }
        auto c = std::make_shared<Connection<asio::local::stream_protocol::socket>>(std::move(s), d,
                                                                                    opts, peer);
        c->Prefill(buffered);
        c->MarkSecure();  // still the TLS connection, through the bridge
        c->Start();
      });
    };
    ++timer_gen_;
    timer_.cancel();
    StartTlsBridge(std::move(socket_), std::move(plain), peer_);
    d_.HandleRaw(std::move(req_), std::move(raw));
  }

  void RefusePlainHttp() {
    const std::string message =
        "this port speaks HTTPS (TLS): use https:// (and wss:// for tunnels)";
    const std::string body = opts_.error_body ? opts_.error_body(400, message) : message;
    auto out = std::make_shared<std::string>(
        "HTTP/1.1 400 Bad Request\r\nServer: agentbox\r\nContent-Type: " +
        std::string(opts_.error_body ? "application/json" : "text/plain") + "\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    asio::async_write(Lowest(), asio::buffer(*out),
                      [self = this->shared_from_this(), out](beast::error_code, size_t) {
                        beast::error_code ignored;
                        self->Lowest().shutdown(asio::socket_base::shutdown_send, ignored);
                        self->Lowest().close(ignored);
                      });
  }

  // Closes the socket if the pending read does not complete within `timeout`; the read then
  // fails with operation_aborted and the connection ends.
  void ArmTimer(std::chrono::milliseconds timeout) {
    timer_.expires_after(timeout);
    const uint64_t gen = ++timer_gen_;
    timer_.async_wait([weak = this->weak_from_this(), gen](beast::error_code ec) {
      auto self = weak.lock();
      // A stale expiry (the read completed and a newer wait was armed) must not close.
      if (ec || !self || gen != self->timer_gen_) {
        return;
      }
      beast::error_code ignored;
      self->Lowest().close(ignored);
    });
  }

  void ReadHeader() {
    if (buffer_.size() == 0 && buffer_.capacity() > kHeaderReadSize) {
      buffer_.shrink_to_fit();  // an idle connection keeps no body-sized buffer
    }
    ArmTimer(opts_.idle_timeout);
    header_parser_.emplace();
    header_parser_->header_limit(64 * 1024);
    // Body limits are applied after the headers, per route (buffered or streamed); Beast's
    // default of 1 MiB would otherwise reject large uploads while reading the headers.
    header_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    string_parser_.reset();
    stream_parser_.reset();
    sink_.reset();
    bhttp::async_read_header(
        socket_, buffer_, *header_parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    ++timer_gen_;
    timer_.cancel();
    if (ec) {
      if (ec != bhttp::error::end_of_stream && ec != asio::error::eof &&
          ec != asio::error::connection_reset && ec != asio::error::operation_aborted) {
        SendError(400, "malformed HTTP request: " + ec.message(), true);
      }
      return;
    }
    auto& h = header_parser_->get();
    req_ = Request{};
    req_.method = std::string(h.method_string());
    req_.target = std::string(h.target());
    const size_t q = req_.target.find('?');
    req_.path = PercentDecode(std::string_view(req_.target).substr(0, q), false);
    req_.query = q == std::string::npos ? "" : req_.target.substr(q + 1);
    for (const auto& f : h) {
      req_.headers[AsciiLower(f.name_string())] = std::string(f.value());
    }
    req_.peer = peer_;
    req_.secure = kIsTls<Socket> || secure_;
    keep_alive_ = h.keep_alive();
    // A raw relay moves the socket's bytes as they are: on TLS connections they are ciphertext,
    // so there only the requests the dispatcher wants raw over TLS are, through a bridge that
    // turns the connection into plaintext (tls_bridge.h); the others take the ordinary streamed
    // path. Raw requests come before the upgrade hook: a WebSocket to a sandbox's port is
    // relayed raw (daemon/port_relay.cc).
    if constexpr (kIsTls<Socket>) {
      if (d_.WantsRawOverTls(req_)) {
        return BridgeRaw();
      }
    } else {
      if (d_.WantsRaw(req_)) {
        RawConnection raw;
        raw.buffered = beast::buffers_to_string(buffer_.data());
        buffer_.consume(buffer_.size());
        beast::error_code rec;
        const auto protocol = socket_.local_endpoint(rec).protocol();
        if (rec) {
          return;
        }
        raw.fd.Reset(socket_.release(rec));
        if (rec) {
          return;
        }
        ::fcntl(raw.fd.Get(), F_SETFL, ::fcntl(raw.fd.Get(), F_GETFL) | O_NONBLOCK);
        raw.resume = [ex = socket_.get_executor(), &d = d_, &opts = opts_, peer = peer_, protocol,
                      secure = secure_](UniqueFd fd, std::string buffered) {
          auto owned = std::make_shared<UniqueFd>(std::move(fd));
          asio::post(
              ex, [ex, &d, &opts, peer, protocol, secure, owned, buffered = std::move(buffered)] {
                Socket s(ex);
                beast::error_code aec;
                s.assign(protocol, owned->Release(), aec);
                if (aec) {
                  return;
                }
                auto c = std::make_shared<Connection<Socket>>(std::move(s), d, opts, peer);
                c->Prefill(buffered);
                if (secure) {
                  c->MarkSecure();  // a TLS connection's plaintext (BridgeRaw) stays so
                }
                c->Start();
              });
        };
        d_.HandleRaw(std::move(req_), std::move(raw));
        return;
      }
    }
    if (opts_.upgrade &&
        AsciiLower(req_.Header("upgrade")).find("websocket") != std::string::npos) {
      opts_.upgrade(std::move(req_), UpgradedSocket(std::move(socket_)));
      return;
    }
    const bool expect_continue = AsciiLower(h[bhttp::field::expect]) == "100-continue";
    const bool has_body = h.chunked() || header_parser_->content_length().value_or(0) > 0;
    sink_ = d_.StreamBody(req_);
    auto length = header_parser_->content_length();  // boost::optional
    const uint64_t limit = sink_ ? opts_.max_stream_bytes : opts_.max_body_bytes;
    if (length && *length > limit) {
      SendError(413,
                "request body too large: " + std::to_string(*length) + " bytes (limit " +
                    std::to_string(limit) + ")",
                true);
      return;
    }
    if (sink_) {
      stream_parser_.emplace(std::move(*header_parser_));
      stream_parser_->body_limit(opts_.max_stream_bytes);
    } else {
      string_parser_.emplace(std::move(*header_parser_));
      string_parser_->body_limit(opts_.max_body_bytes);
    }
    header_parser_.reset();
    if (has_body) {
      buffer_.reserve(kBodyReadSize);
    }
    if (expect_continue) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(socket_, asio::buffer(kContinue),
                        [self = this->shared_from_this()](beast::error_code wec, size_t) {
                          if (!wec) {
                            self->ReadBody();
                          }
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (stream_parser_) {
      ReadStream();
      return;
    }
    ArmTimer(opts_.read_timeout);
    bhttp::async_read(socket_, buffer_, *string_parser_,
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        ++self->timer_gen_;
                        self->timer_.cancel();
                        if (ec == bhttp::error::body_limit) {
                          self->SendError(413,
                                          "request body too large (limit " +
                                              std::to_string(self->opts_.max_body_bytes) +
                                              " bytes)",
                                          true);
                          return;
                        }
                        if (ec) {
                          return;
                        }
                        self->req_.body = self->string_parser_->release().body();
                        self->string_parser_.reset();
                        self->d_.Handle(std::move(self->req_), self->MakeRespond());
                      });
  }

  void ReadStream() {
    auto& body = stream_parser_->get().body();
    body.data = chunk_;
    body.size = sizeof(chunk_);
    ArmTimer(opts_.read_timeout);
    bhttp::async_read(socket_, buffer_, *stream_parser_,
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        ++self->timer_gen_;
                        self->timer_.cancel();
                        self->OnStreamChunk(ec);
                      });
  }

  void OnStreamChunk(beast::error_code ec) {
    if (ec == bhttp::error::need_buffer) {
      ec = {};
    }
    if (ec == bhttp::error::body_limit) {
      SendError(
          413,
          "request body too large (limit " + std::to_string(opts_.max_stream_bytes) + " bytes)",
          true);
      return;
    }
    if (ec) {
      sink_.reset();  // client went away: the sink discards what it had
      return;
    }
    const size_t n = sizeof(chunk_) - stream_parser_->get().body().size;
    if (n > 0) {
      if (auto r = sink_->OnData(std::string_view(chunk_, n)); !r) {
        sink_.reset();
        SendError(HttpStatus(r.error().code), r.error().message, true);
        return;
      }
    }
    if (stream_parser_->is_done()) {
      auto sink = std::move(sink_);
      sink->OnEnd(MakeRespond());
      return;
    }
    ReadStream();
  }

  Respond MakeRespond() {
    auto self = this->shared_from_this();
    return [self](Response r) {
      asio::post(self->socket_.get_executor(),
                 [self, r = std::move(r)]() mutable { self->Write(std::move(r), false); });
    };
  }

  void SendError(int status, const std::string& message, bool close) {
    Response r;
    r.status = status;
    r.body = opts_.error_body ? opts_.error_body(status, message) : message;
    Write(std::move(r), close);
  }

  // Common response headers; returns whether the connection stays open afterwards.
  template <class Body>
  bool SetHeaders(bhttp::response<Body>& res, const Response& r, bool close) {
    res.set(bhttp::field::server, "agentbox");
    if (!r.content_type.empty()) {
      res.set(bhttp::field::content_type, r.content_type);
    }
    for (const auto& [k, v] : r.headers) {
      res.insert(k, v);  // a repeated name (one Warning per ignored field) is sent repeatedly
    }
    const bool keep = keep_alive_ && !close;
    res.keep_alive(keep);
    return keep;
  }

  template <class Body>
  void Finish(std::shared_ptr<bhttp::response<Body>> res, const Response& r, bool close) {
    const bool keep = SetHeaders(*res, r, close);
    res->prepare_payload();
    auto sr = std::make_shared<bhttp::response_serializer<Body>>(*res);
    sr->limit(kWriteSlice);
    bhttp::async_write(
        socket_, *sr,
        [self = this->shared_from_this(), res, sr, keep](beast::error_code ec, size_t) {
          if (ec) {
            return;
          }
          if (!keep) {
            self->LingerClose();
            return;
          }
          self->ReadHeader();
        });
  }

  // Closes gracefully: stop sending, then read and discard what the client still sends (the
  // rest of a refused body) for a short while, so that it sees our response instead of a reset
  // (RFC 9112 §9.6).
  void LingerClose() {
    beast::error_code ignored;
    Lowest().shutdown(asio::socket_base::shutdown_send, ignored);
    ArmTimer(std::chrono::seconds(2));
    Discard(0);
  }

  void Discard(uint64_t total) {
    socket_.async_read_some(asio::buffer(chunk_), [self = this->shared_from_this(), total](
                                                      beast::error_code ec, size_t n) {
      if (ec || total + n > (64u << 20)) {
        ++self->timer_gen_;
        self->timer_.cancel();
        beast::error_code ignored;
        self->Lowest().close(ignored);
        return;
      }
      self->Discard(total + n);
    });
  }

  void WriteStream(Response r, bool close) {
    auto res = std::make_shared<bhttp::response<bhttp::empty_body>>(
        static_cast<bhttp::status>(r.status), 11);
    const bool keep = SetHeaders(*res, r, close);
    res->chunked(true);
    auto sr = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*res);
    bhttp::async_write_header(socket_, *sr,
                              [self = this->shared_from_this(), res, sr, src = r.stream, keep](
                                  beast::error_code ec, size_t) {
                                if (ec) {
                                  return;
                                }
                                self->streaming_ = src;
                                self->WatchClient();
                                self->PumpStream(src, keep);
                              });
  }

  // While a streamed response waits for its source (an event stream may be silent for
  // minutes), reads from the client: end of file or an error there means the client is gone, so
  // the source is cancelled (BodySource::Cancel: a guest's relayed stream closes its guest
  // connection) and the connection closed now, instead of at the next piece, whose write would
  // fail. Before, abandoned event streams held a client and a guest connection each for up to
  // 45 s (docs/reliability.md §3). Only on a strand (plain connections are accepted on one),
  // where this read cannot run beside the stream's writes.
  void WatchClient() {
    if constexpr (!kIsTls<Socket>) {
      if (socket_.get_executor().template target<asio::strand<asio::io_context::executor_type>>() ==
          nullptr) {
        return;
      }
      watching_ = true;
      socket_.async_read_some(asio::buffer(watch_buf_), [self = this->shared_from_this()](
                                                            beast::error_code ec, size_t n) {
        self->watching_ = false;
        if (n > 0) {
          self->Prefill(std::string(self->watch_buf_, n));  // a pipelined request: kept
        }
        if (self->after_watch_) {  // the stream ended first: on to the next request
          auto next = std::move(self->after_watch_);
          self->after_watch_ = nullptr;
          next();
          return;
        }
        if (ec && ec != asio::error::operation_aborted) {
          if (auto src = std::move(self->streaming_)) {
            src->Cancel();
          }
          beast::error_code ignored;
          self->Lowest().close(ignored);
        }
        // Bytes of a next request: the client is there; they are parsed after the stream.
      });
    }
  }

  // The stream's last piece is written: stop watching, then `next`.
  void StreamEnded(std::function<void()> next) {
    streaming_.reset();
    if (!watching_) {
      next();
      return;
    }
    after_watch_ = std::move(next);
    beast::error_code ignored;
    Lowest().cancel(ignored);
  }

  void PumpStream(std::shared_ptr<BodySource> src, bool keep) {
    auto self = this->shared_from_this();
    src->Next([self, src, keep](Result<std::string_view> bytes, bool last) {
      // Copy now: the source may reuse its buffer once this callback returns.
      std::optional<std::string> data;
      if (bytes) {
        data.emplace(*bytes);
      }
      asio::post(self->socket_.get_executor(), [self, src, keep, data = std::move(data), last] {
        if (!data) {
          beast::error_code ignored;
          self->Lowest().close(ignored);  // a chunked body cannot carry an error: cut it
          return;
        }
        auto buf = std::make_shared<std::string>(std::move(*data));
        auto after = [self, src, keep, last, buf](beast::error_code ec, size_t) {
          if (ec) {
            return;  // client gone: dropping `src` cancels the producer
          }
          if (!last) {
            self->PumpStream(src, keep);
            return;
          }
          asio::async_write(
              self->socket_, bhttp::make_chunk_last(), [self, keep](beast::error_code wec, size_t) {
                if (wec || !keep) {
                  // No next request: stop watching too, or a client that never
                  // closes would hold the connection.
                  self->StreamEnded([self] {
                    beast::error_code ignored;
                    self->Lowest().shutdown(asio::socket_base::shutdown_send, ignored);
                  });
                  return;
                }
                self->StreamEnded([self] { self->ReadHeader(); });
              });
        };
        if (buf->empty()) {
          after({}, 0);
          return;
        }
        asio::async_write(self->socket_, bhttp::make_chunk(asio::buffer(*buf)), after);
      });
    });
  }

  void Write(Response r, bool close) {
    if (r.stream) {
      WriteStream(std::move(r), close);
      return;
    }
    if (r.file && r.file->Valid()) {
      auto res = std::make_shared<bhttp::response<bhttp::file_body>>(
          static_cast<bhttp::status>(r.status), 11);
      beast::file_posix f;
      f.native_handle(r.file->Release());
      beast::error_code ec;
      res->body().reset(std::move(f), ec);
      if (ec) {
        SendError(500, "cannot stream file: " + ec.message(), true);
        return;
      }
      Finish(res, r, close);
      return;
    }
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(
        static_cast<bhttp::status>(r.status), 11);
    res->body() = std::move(r.body);
    Finish(res, r, close);
  }

  Socket socket_;
  boost::asio::steady_timer timer_;
  uint64_t timer_gen_ = 0;
  Dispatcher& d_;
  const ServerOptions& opts_;
  std::string peer_;
  bool secure_ = false;  // MarkSecure
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::empty_body>> header_parser_;
  std::optional<bhttp::request_parser<bhttp::string_body>> string_parser_;
  std::optional<bhttp::request_parser<bhttp::buffer_body>> stream_parser_;
  std::unique_ptr<BodySink> sink_;
  Request req_;
  bool keep_alive_ = true;
  char chunk_[65536];
  // WatchClient: the streamed response's source, whether the watch's read is pending, and what
  // follows it once the stream ended first.
  std::shared_ptr<BodySource> streaming_;
  bool watching_ = false;
  std::function<void()> after_watch_;
  char watch_buf_[4096];
};

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
