#pragma once

// Bulk uploads on a connection of their own, written by hand instead of through libcurl, for
// agentboxd's plain endpoints (its unix socket, or http://). libcurl pulls every block of a body
// through a read callback into its own buffer and copies it again, in small blocks with a
// callback each. Here a file goes in 256 KiB blocks read straight into the buffer that is sent,
// and a generated body (a packed tree) as one chunk per block the packer hands over.
// TLS endpoints keep libcurl (DaemonClient::PostBody): nothing can be spliced into TLS.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cli/client.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::cli {

// Whether RawPost can reach `ep` (a unix socket or an http:// URL).
bool CanPostRaw(const Endpoint& ep);

// One POST with a body, then its response; the connection ends with it ("Connection: close").
// Every wait polls at least every 200 ms for Ctrl-C (interrupt.h) and gives up after five
// minutes without progress. Not thread-safe.
class RawPost {
 public:
  using Progress = DaemonClient::Progress;

  // Connects and sends the request head: `length` bytes of body follow, or a chunked body when
  // `length` is negative (a GET has none: length 0). `content_type` empty: no such header.
  static Result<RawPost> Open(const Endpoint& ep, const std::string& method,
                              const std::string& path, const std::string& content_type,
                              int64_t length);

  // Sends `size` bytes of `fd` from its current offset (read(2) in 256 KiB blocks).
  Result<void> SendFrom(int fd, uint64_t size, const Progress& progress);
  // Sends `bytes` as one chunk (chunked bodies; empty writes are skipped).
  Result<void> WriteChunk(std::string_view bytes);
  // Ends a chunked body (the last chunk) when `end_chunked`, then reads the response. Also
  // after a send failed: the server may have answered early (an error) and closed; its answer
  // is then the better report.
  Result<Reply> Finish(bool end_chunked);

  uint64_t sent() const { return sent_; }

  // The response's status line and headers (warnings are printed on stderr); the body follows
  // through ReadBody (Content-Length, chunked, or up to the end of the connection).
  Result<Reply> ReadHead();
  // Up to `n` bytes of the response body; 0 at its end.
  Result<size_t> ReadBody(char* buf, size_t n);
  // Reads the rest of the body (at most 4 MiB) into `head`, with its envelope parsed.
  Result<Reply> ReadRest(Reply head);
  // The response headers, names in lower case.
  const std::vector<std::pair<std::string, std::string>>& headers() const { return headers_; }

 private:
  RawPost(UniqueFd fd, std::string describe) : fd_(std::move(fd)), describe_(std::move(describe)) {}
  Result<void> WriteAll(std::string_view bytes);
  Result<void> WaitFor(short events);
  Result<size_t> Recv(char* buf, size_t n);
  Result<bool> Fill();  // false at the end of the connection

  UniqueFd fd_;
  std::string describe_;
  uint64_t sent_ = 0;  // body bytes
  std::string in_;     // received, not yet consumed from pos_
  size_t pos_ = 0;
  std::vector<std::pair<std::string, std::string>> headers_;
  bool chunked_ = false;
  bool sized_ = false;
  bool in_chunk_ = false;
  bool body_done_ = false;
  uint64_t left_ = 0;  // of the body (sized) or of the current chunk (chunked)
};

// POSTs `size` bytes of the open file `fd` to `path` on `ep`. Returns the response.
Result<Reply> RawPostFile(const Endpoint& ep, const std::string& path,
                          const std::string& content_type, int fd, uint64_t size,
                          const DaemonClient::Progress& progress);

// POSTs a chunked body that `produce` writes through the sink it is given (each call one
// chunk). An error from `produce` ends the request without the last chunk, so the server never
// takes a cut body as whole, and is returned unless the server's answer explains it better.
using ChunkSink = std::function<Result<void>(std::string_view bytes)>;
Result<Reply> RawPostChunked(const Endpoint& ep, const std::string& path,
                             const std::string& content_type,
                             const std::function<Result<void>(const ChunkSink&)>& produce,
                             const DaemonClient::Progress& progress);

// GETs `path` on a connection of its own and, when the answer is 2xx, gives `on_header` its
// headers (lower-case names) and then `consume` a source of its body (dechunked); `consume`'s
// error is returned. A non-2xx answer is returned as it is, body and envelope read, without
// calling either.
using HeaderFn = std::function<void(const std::string& name, const std::string& value)>;
using BodySource = std::function<Result<size_t>(char* buf, size_t n)>;
Result<Reply> RawGetStream(const Endpoint& ep, const std::string& path, const HeaderFn& on_header,
                           const std::function<Result<void>(const BodySource&)>& consume,
                           const DaemonClient::Progress& progress);

}  // namespace agentbox::cli
