#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "http/tls.h"

namespace agentbox::http {

struct Request {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path + query as sent
  std::string path;                            // decoded path without query
  std::string query;                           // raw query string without '?'
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;                            // buffered body (empty for streamed requests)
  std::string peer;                            // "unix" or "ip:port"
  bool secure = false;                         // came over TLS (a "tls:" listener)

  // Header value or empty.
  std::string Header(const std::string& lower_name) const;
  // Percent-decoded query parameter, if present.
  std::optional<std::string> QueryParam(const std::string& name) const;
};

// Produces a response body incrementally: a download proxied from a guest, Server-Sent Events.
class BodySource {
 public:
  virtual ~BodySource() = default;
  // Delivers the next piece by calling `cb(bytes, last)` exactly once, from any thread; `bytes`
  // stays valid until the next Next() call or destruction. An error ends the response by closing
  // the connection. Destroying the source (client gone) must cancel what it waits for.
  using Callback = std::function<void(Result<std::string_view> bytes, bool last)>;
  virtual void Next(Callback cb) = 0;
  // The client went away while a Next() was pending (the server saw its connection close): end
  // what that Next() waits for soon; its callback is still called, once. Any thread. Default:
  // nothing (the callback comes with the next piece, whose write then fails).
  virtual void Cancel() {}
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When valid, the body is streamed from this file descriptor (file_size bytes) instead.
  std::shared_ptr<UniqueFd> file;
  uint64_t file_size = 0;
  // When set, the body is sent with chunked transfer encoding, pulled from this source.
  std::shared_ptr<BodySource> stream;
};

// Call exactly once, from any thread; the response is written on the connection's thread.
using Respond = std::function<void(Response)>;

// Receives a request body incrementally (uploads): nothing is buffered by the server.
class BodySink {
 public:
  virtual ~BodySink() = default;
  // Bytes of the body in order. An error aborts the request: its status is answered and the
  // connection is closed.
  virtual Result<void> OnData(std::string_view bytes) = 0;
  // The whole body arrived.
  virtual void OnEnd(Respond respond) = 0;
};

// A connection taken out of the server after its request head (bulk transfers, see raw_io.h):
// the descriptor is non-blocking and close-on-exec, and `buffered` holds what the server had
// already read past the head (the start of the body).
struct RawConnection {
  UniqueFd fd;
  std::string buffered;
  // Hands a connection back to the server once the raw exchange is over and the connection is
  // still good for more requests (keep-alive): `buffered` is what was read past that exchange
  // (the start of the next request). Callable once, from any thread.
  std::function<void(UniqueFd fd, std::string buffered)> resume;
};

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // Called with the headers of every request first. Returning true takes the connection out of
  // the server: HandleRaw() then owns it, reads the body and writes the whole response itself.
  virtual bool WantsRaw(const Request& /*req*/) { return false; }
  virtual void HandleRaw(Request /*req*/, RawConnection /*conn*/) {}
  // On TLS connections, whose bytes are ciphertext, WantsRaw is not asked: a request for which
  // this returns true still goes to HandleRaw, with a descriptor carrying the connection's
  // plaintext (tls_bridge.h). Default: none (they take the streamed path).
  virtual bool WantsRawOverTls(const Request& /*req*/) { return false; }
  // Called with the headers only. Return a sink to stream the body into, or nullptr to have the
  // body buffered (up to ServerOptions::max_body_bytes) and passed to Handle(). To refuse
  // before the body is read, return nullptr and answer from Handle().
  virtual std::unique_ptr<BodySink> StreamBody(const Request& req) = 0;
  virtual void Handle(Request req, Respond respond) = 0;
};

// The connection of a request that asked to switch protocols ("Upgrade: websocket"), taken out of
// the HTTP server: whoever receives it owns it.
// A TLS connection ("tls:" addresses) comes with its handshake done; its executor is a strand of
// the server's io_context (every operation on an ssl::stream must be serialised).
using UpgradedSocket = std::variant<boost::asio::ip::tcp::socket,
                                    boost::asio::local::stream_protocol::socket, TlsSocket>;

struct ServerOptions {
  uint64_t max_body_bytes = 16ull << 20;   // buffered bodies; more -> 413
  uint64_t max_stream_bytes = 1ull << 30;  // streamed bodies; more -> 413
  // A connection waiting this long for the next request (keep-alive) or for more of a request
  // (headers or body) is closed, so idle or trickling clients cannot hold sockets forever.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(300)};
  std::chrono::milliseconds read_timeout{std::chrono::seconds(60)};
  // Builds the error body for protocol-level failures (413, 400) in the API's envelope.
  std::function<std::string(int status, const std::string& message)> error_body;
  // When set, a request carrying "Upgrade: websocket" is handed over here with its connection
  // (its body, if any, unread) instead of going to the Dispatcher: agentboxd's tunnel endpoint.
  std::function<void(Request req, UpgradedSocket socket)> upgrade;
  // Certificate and key for "tls:" addresses (MakeServerTlsContext); without it they are refused.
  TlsContextPtr tls;
};

// Accepts connections on unix sockets, TCP and TLS endpoints and speaks HTTP/1.1 with keep-alive.
// All I/O runs on the given io_context's threads; Dispatcher methods are called there.
class Server {
 public:
  Server(boost::asio::io_context& io, Dispatcher& dispatcher, ServerOptions options);
  ~Server();
  // "unix:/path/sock" (an existing socket file is replaced; mode 0660), "tcp:HOST:PORT" (numeric
  // address or "localhost"; port 0 picks a free port) or "tls:HOST:PORT" (HTTPS with
  // ServerOptions::tls; a plain HTTP request there gets a plain-text 400 saying so). Returns the
  // bound address in the same syntax.
  Result<std::string> Listen(const std::string& spec);
  // Serves HTTP on an already connected unix socket (one end of a tunnel stream); `peer` is what
  // Request::peer says.
  void Adopt(boost::asio::local::stream_protocol::socket socket, const std::string& peer);
  // Stops accepting; open connections finish their current request.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentbox::http
