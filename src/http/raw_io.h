#pragma once

// Bulk transfers on a raw connection: once a request's headers are parsed, the server can hand
// its socket to a transfer thread (Dispatcher::WantsRaw), which moves the body with large
// blocking-with-deadline reads and writes, splice(2) and sendfile(2) instead of 64 KiB
// event-loop round trips. Everything here works on non-blocking descriptors and waits with
// poll(2), so every wait is bounded by an idle limit. Transfers answer with "Connection: close":
// the connection ends with the response.

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"
#include "http/server.h"

namespace agentbox::http {

using Millis = std::chrono::milliseconds;

// Makes `fd` non-blocking (the raw helpers below wait with poll).
void SetNonBlocking(int fd);
// Lets up to 4 MiB wait in the socket's send queue (as far as privileges allow).
void WidenSendBuffer(int fd);
// poll(2) on `fds` until one is ready, again when a signal interrupts it; kTimeout
// ("<stalled> for N s") when none is within `timeout_ms` (negative: waits for ever).
Result<void> PollReady(pollfd* fds, nfds_t n, int timeout_ms, std::string_view stalled);

// Writes all of `bytes`; kUnavailable when the peer went away, kTimeout after `idle` without
// progress.
Result<void> WriteAll(int fd, std::string_view bytes, Millis idle);
// Reads up to `n` bytes (at least one, or 0 at end of stream).
Result<size_t> ReadSome(int fd, char* buf, size_t n, Millis idle);

// "HTTP/1.1 <status> <reason>" plus Server, Content-Type, the extra headers, Connection: close,
// and Content-Length (when `content_length` >= 0) or Transfer-Encoding: chunked (when -2).
// -1 sends neither (the body, if any, ends with the connection).
std::string ResponseHead(const Response& r, int64_t content_length);
// A complete response with r.body as its body.
Result<void> WriteResponse(int fd, const Response& r, Millis idle);
// Writes `r`, stops sending, and reads (discarding) whatever the client still sends until it
// stops, falls silent for two seconds, has sent 64 MiB, or 30 s have passed, so that a client
// still sending a refused body sees the answer instead of a reset (RFC 9112 §9.6). The caller
// closes `fd` afterwards.
void AnswerAndClose(int fd, const Response& r, Millis idle);
// The second half of AnswerAndClose, for an answer already sent (a relayed one): stops sending
// and drains what the client still sends, as above.
void DrainBeforeClose(int fd);

// Reads a request or response body from a raw connection: Content-Length or chunked framing,
// starting with the bytes the server had already read. Not thread-safe.
class BodyReader {
 public:
  // From a request's headers. Neither Content-Length nor chunked: an empty body. A body longer
  // than `limit` fails with kTooLarge as soon as that is known.
  static Result<BodyReader> ForRequest(const Request& req, int fd, std::string buffered,
                                       uint64_t limit, Millis idle);

  // Up to `n` bytes of the body; 0 at its end. A connection that ends first is kUnavailable
  // ("client went away"); broken chunk framing is kInvalidArgument.
  Result<size_t> Read(char* buf, size_t n);
  // Moves the rest of the body into `out` (a regular file or pipe), with splice(2) where the
  // bytes are still in the kernel, in writes of at most 64 KiB (common/page_cache_write.h).
  // Returns the bytes moved.
  Result<uint64_t> CopyTo(int out);
  // Bytes of the body delivered so far.
  uint64_t consumed() const { return consumed_; }
  // Content-Length when the request had one.
  std::optional<uint64_t> length() const { return chunked_ ? std::nullopt : std::optional(left_); }
  // Once the body has been read to its end: the bytes read past it (the start of whatever the
  // peer sent next, e.g. its next request on a kept-alive connection), handed over to the caller.
  std::string TakeRest() {
    std::string rest = buf_.substr(pos_);
    buf_.clear();
    pos_ = 0;
    return rest;
  }

 private:
  BodyReader() = default;
  // Makes left_ > 0 (parsing the next chunk header when chunked) or sets done_.
  Result<void> NextChunk();
  Result<void> Fill();  // reads more into buf_
  Result<void> Count(uint64_t n);

  int fd_ = -1;
  Millis idle_{0};
  uint64_t limit_ = 0;
  bool chunked_ = false;
  bool done_ = false;
  bool chunk_open_ = false;  // chunked: inside a chunk's data (left_ bytes to go)
  uint64_t left_ = 0;        // bytes left in the body (length) or in the current chunk
  uint64_t consumed_ = 0;
  std::string buf_;  // read but not yet delivered, from pos_
  size_t pos_ = 0;
};

// Sends a chunked body: each Write() is one chunk (empty writes are skipped), End() the last.
class ChunkedWriter {
 public:
  ChunkedWriter(int fd, Millis idle) : fd_(fd), idle_(idle) {}
  Result<void> Write(std::string_view bytes);
  Result<void> End();

 private:
  int fd_;
  Millis idle_;
};

// Sends `size` bytes of `file` from offset 0 to the socket with sendfile(2).
Result<void> SendFile(int sock, int file, uint64_t size, Millis idle);

// A pipe for splice(2) of `size` bytes (at most what the system allows: 1 MiB by default).
struct SplicePipe {
  static Result<SplicePipe> Open(int size = 1 << 20);
  UniqueFd r, w;
  size_t capacity = 65536;
};

// Relays a proxied HTTP exchange in both directions until the upstream ends its response
// (upstream was told "Connection: close"): client bytes to upstream, upstream bytes to client,
// with splice(2) through pipes. The upstream's response head is read first and passed to
// `on_head(status)` before it is forwarded. A client that goes away ends everything at once.
struct ProxyResult {
  int status = 0;  // the upstream's status, 0 when no head arrived
  uint64_t to_upstream = 0;
  uint64_t to_client = 0;
};
Result<ProxyResult> Proxy(int client, int upstream, Millis idle,
                          const std::function<void(int status)>& on_head);

}  // namespace agentbox::http

namespace agentbox::http {
// Connects to the unix socket at `path` without following a symlink in its last component (a
// sandbox can write the directory its guest socket lives in). Returns a non-blocking socket.
Result<UniqueFd> ConnectUnixNoFollow(const std::string& path);
}  // namespace agentbox::http
