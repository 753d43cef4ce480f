#pragma once

// The tunnel's multiplexing, shared by the guest (agentbox-guest serve --connect) and the daemon
// (TunnelEndpoint): many byte streams over one WebSocket connection. Each stream carries the raw
// bytes of one HTTP/1.1 connection (requests one way, responses the other), so both ends reuse
// their ordinary HTTP server and client unchanged: keep-alive, chunked bodies, 100-continue,
// streamed uploads and downloads and Server-Sent Events all work without the tunnel knowing
// HTTP. docs/tunnel.md describes the wire format and why it was chosen.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/error.h"

namespace agentbox::http::tunnel {

// One binary WebSocket message = one frame: type (1 byte), stream id (4 bytes, big-endian),
// payload (the rest; WebSocket already delimits messages, so no length field).
enum class FrameType : uint8_t {
  kOpen = 1,    // the daemon opened stream `id` (a new HTTP connection to the guest)
  kData = 2,    // payload = bytes of the stream, in order
  kEof = 3,     // the sender will send no more bytes on this stream (half close)
  kReset = 4,   // the stream is dead (payload: reason); the receiver closes its end
  kWindow = 5,  // payload = 4-byte big-endian credit: the receiver wrote that many bytes
};

struct Frame {
  FrameType type = FrameType::kData;
  uint32_t stream = 0;
  std::string_view payload;
};

std::string EncodeFrame(FrameType type, uint32_t stream, std::string_view payload = {});
// kInvalidArgument for a message shorter than 5 bytes or of an unknown type.
Result<Frame> DecodeFrame(std::string_view message);

// Bytes a sender may have in flight per stream before the receiver has written them on: bounds
// the memory of each stream and keeps one slow stream from stalling the others.
inline constexpr uint32_t kStreamWindow = 256 * 1024;

// One WebSocket connection, whatever carries it (TCP, unix socket, TLS). Calls are made on the
// Mux's strand, one Read and one Write outstanding at a time.
class Link {
 public:
  virtual ~Link() = default;
  using Done = std::function<void(boost::system::error_code)>;
  virtual void Read(boost::beast::flat_buffer& buf, Done done) = 0;
  virtual void Write(const std::string& message, Done done) = 0;
  // Ends the connection at once (pending operations fail).
  virtual void Close() = 0;
};

// Wraps a connected and handshaken boost::beast::websocket::stream<...> as a Link. Completions run
// on `executor` (the Mux's strand): the stream's own executor may be the bare io_context, and a
// std::function callback carries no executor of its own.
template <class Ws>
class WsLink : public Link {
 public:
  WsLink(std::unique_ptr<Ws> ws, boost::asio::any_io_executor executor)
      : ws_(std::move(ws)), ex_(std::move(executor)) {
    ws_->binary(true);
  }
  void Read(boost::beast::flat_buffer& buf, Done done) override {
    ws_->async_read(
        buf, boost::asio::bind_executor(ex_, [done = std::move(done)](boost::system::error_code ec,
                                                                      size_t) { done(ec); }));
  }
  void Write(const std::string& message, Done done) override {
    ws_->async_write(
        boost::asio::buffer(message),
        boost::asio::bind_executor(
            ex_, [done = std::move(done)](boost::system::error_code ec, size_t) { done(ec); }));
  }
  void Close() override {
    boost::system::error_code ignored;
    boost::beast::get_lowest_layer(*ws_).close(ignored);
  }

 private:
  std::unique_ptr<Ws> ws_;
  boost::asio::any_io_executor ex_;
};

// Carries streams over one Link. Each stream is bridged to a local unix stream socket: bytes read
// from it go to the peer, bytes from the peer are written to it, with per-stream credit (kWindow).
// All state lives on one strand; public methods may be called from any thread.
//
// When the link ends every stream ends with it: the daemon side answers a request that had no
// response byte yet with `502` and an error envelope naming the broken tunnel (so a request in
// flight gets a clear error, never a hang); other streams are closed.
class Mux : public std::enable_shared_from_this<Mux> {
 public:
  using UnixSocket = boost::asio::local::stream_protocol::socket;
  enum class Role { kDaemon, kGuest };
  struct Hooks {
    // Guest side: the daemon opened a stream; return the local socket to bridge it to.
    std::function<Result<UnixSocket>(uint32_t id)> on_open;
    // The link ended (read or write error, or Shutdown); called once, on the strand.
    std::function<void(const std::string& why)> on_closed;
  };

  // `link` must complete its operations on `strand` (WsLink's executor).
  Mux(boost::asio::strand<boost::asio::io_context::executor_type> strand,
      std::unique_ptr<Link> link, Role role, Hooks hooks);
  ~Mux();

  void Start();
  // Daemon side: carries a newly accepted local connection as a new stream.
  void OpenStream(UnixSocket local);
  // Ends the link and every stream (`why` goes into the 502 of requests in flight).
  void Shutdown(const std::string& why);
  size_t StreamCount() const { return stream_count_.load(); }

 private:
  struct Stream;
  void ReadLink();
  void OnMessage();
  void Send(std::string frame);
  void Pump();
  void ReadLocal(const std::shared_ptr<Stream>& s);
  void WriteLocal(const std::shared_ptr<Stream>& s);
  void MaybeFinish(const std::shared_ptr<Stream>& s);
  void CloseStream(const std::shared_ptr<Stream>& s, bool send_reset, const std::string& why);
  void Fail(const std::string& why);
  void AddStream(uint32_t id, UnixSocket local);

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  std::unique_ptr<Link> link_;
  Role role_;
  Hooks hooks_;
  boost::beast::flat_buffer in_;
  std::deque<std::string> out_;
  bool writing_ = false;
  bool closed_ = false;
  uint32_t next_id_ = 1;
  std::map<uint32_t, std::shared_ptr<Stream>> streams_;
  std::atomic<size_t> stream_count_{0};
};

// The HTTP/1.1 response bytes of a tunnel-level error (`status`, JSON error envelope, connection
// close): what a local client reads when its request cannot be carried.
std::string CannedResponse(int status, const std::string& message);

}  // namespace agentbox::http::tunnel
