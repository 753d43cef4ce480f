#pragma once

// One HTTP connection of http::Server (internal to server.cc): reads requests (headers, buffered
// or streamed bodies, 100-continue), hands them to the Dispatcher and writes the responses
// (buffered in slices, or streamed), with TLS detection and raw (upgraded) exchanges.

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

namespace agentbox::http::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

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

}  // namespace agentbox::http::detail
