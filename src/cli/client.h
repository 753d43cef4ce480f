#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::cli {

inline constexpr const char* kDefaultSocket = "/run/agentbox/agentboxd.sock";

// Where agentboxd listens and how to authenticate to it.
struct Endpoint {
  std::string unix_socket;  // used when base_url is empty; the socket's file mode is the auth
  std::string base_url;     // "http(s)://HOST:PORT" without a trailing slash; needs api_key
  std::string api_key;      // sent as "Authorization: Bearer KEY" when non-empty
  // https://: PEM CA certificates the daemon's certificate must chain to (empty: the system's
  // CAs). The certificate and its host name are always verified.
  std::string ca_file;

  // "unix:/run/agentbox/agentboxd.sock" or the base URL: how error messages name the daemon.
  std::string Describe() const;
};

// Resolves the endpoint from flags first, then $AGENTBOX_URL / $AGENTBOX_SOCKET /
// $AGENTBOX_API_KEY / $AGENTBOX_CA_FILE, then the default socket. `url` may also be "unix:PATH".
Endpoint ResolveEndpoint(const std::string& url_flag, const std::string& socket_flag,
                         const std::string& key_flag, const std::string& ca_flag = "");

// One HTTP exchange with the daemon. `envelope` is the parsed {success, message, data} body, or
// null when the body was not JSON.
struct Reply {
  long status = 0;
  std::string body;
  Json envelope;

  bool ok() const { return status >= 200 && status < 300; }
  // The envelope's `data` (null when absent).
  const Json& data() const;
  // "<message from the envelope> (HTTP 404)"; falls back to the raw body or the status alone.
  std::string ErrorMessage() const;
};

// A blocking client of agentboxd's REST API over libcurl. It keeps one connection to the daemon
// alive across calls (the shell polls several times a second). Not thread-safe: one per thread.
//
// Every call returns an Error only when the exchange itself failed (daemon unreachable, transfer
// broken, interrupted); its message is ready to print after "agentbox: ". HTTP error statuses are
// a Reply with !ok(), except in Call() which turns them into an Error with ErrorMessage().
class DaemonClient {
 public:
  explicit DaemonClient(Endpoint endpoint);
  ~DaemonClient();
  DaemonClient(const DaemonClient&) = delete;
  DaemonClient& operator=(const DaemonClient&) = delete;

  const Endpoint& endpoint() const { return endpoint_; }

  // `path` starts with "/v1/..."; `body` is sent as JSON when non-null. With `interruptible`,
  // a SIGINT received while waiting (see interrupt.h) aborts the transfer: the result is then an
  // Error and InterruptPending() is true.
  // `headers`: extra request headers, "Name: value".
  Result<Reply> Send(const std::string& method, const std::string& path, const Json* body,
                     bool interruptible = false, const std::vector<std::string>& headers = {});

  // Send() that also fails on a non-2xx status; returns the envelope's `data`.
  Result<Json> Call(const std::string& method, const std::string& path, const Json* body = nullptr,
                    bool interruptible = false, const std::vector<std::string>& headers = {});

  // Called now and then during a bulk transfer with the bytes moved so far (sent for a POST,
  // received for a GET).
  using Progress = std::function<void(uint64_t bytes)>;
  // Fills up to `n` bytes of `buf`; 0 at the end of the body; an Error aborts the transfer.
  using BodyReader = std::function<Result<size_t>(char* buf, size_t n)>;

  // POSTs `local_file` to `path` (a file/upload endpoint, query included) as a raw body
  // (application/octet-stream), streamed from disk: never read into memory; on a connection of
  // its own where the endpoint allows (raw_post.h). Returns `data`.
  Result<Json> Upload(const std::string& path, const std::string& local_file,
                      const Progress& progress = nullptr);

  // POSTs a body pulled from `read` (`size` bytes, or sent chunked when negative) with
  // `content_type`. Returns `data`.
  Result<Json> PostBody(const std::string& path, const std::string& content_type,
                        const BodyReader& read, int64_t size, const Progress& progress = nullptr);

  // POSTs a chunked body that `produce` writes through the sink it is given, on a connection of
  // its own (raw_post.h; only where CanPostRaw(endpoint()): not over TLS). An error from
  // `produce` cuts the body (never ended as whole) and is returned. Returns `data`.
  using ChunkSink = std::function<Result<void>(std::string_view bytes)>;
  Result<Json> PostChunked(const std::string& path, const std::string& content_type,
                           const std::function<Result<void>(const ChunkSink&)>& produce,
                           const Progress& progress = nullptr);

  // GETs `path` on a connection of its own (raw_post.h; only where CanPostRaw(endpoint())) and
  // hands a 2xx body to `consume` as a source to read from (in this thread, so the reading
  // paces the transfer), after `on_header` saw its headers. Errors as GetBody; an error from
  // `consume` is returned.
  using Source = std::function<Result<size_t>(char* buf, size_t n)>;
  Result<void> GetStream(
      const std::string& path,
      const std::function<void(const std::string&, const std::string&)>& on_header,
      const std::function<Result<void>(const Source&)>& consume,
      const Progress& progress = nullptr);

  // GETs `path` (a file/download endpoint) and writes the body to `fd` as it arrives. A non-2xx
  // answer writes nothing to `fd` and becomes an Error with the envelope's message.
  Result<void> Download(const std::string& path, int fd, const Progress& progress = nullptr);

  // GETs `path` and hands a 2xx body to `on_data` as it arrives (an Error from it aborts the
  // transfer and is returned); `on_headers` sees the response headers (lower-case names) first.
  Result<void> GetBody(
      const std::string& path, const std::function<Result<void>(std::string_view)>& on_data,
      const std::function<void(const std::string&, const std::string&)>& on_header = nullptr,
      const Progress& progress = nullptr);

  // GETs `path` (an event stream) and hands the body to `on_data` as it arrives, until the
  // server ends it, `on_data` returns false, or `stop()` turns true (polled at least once a
  // second). A stream that stays silent for kStreamIdleSeconds (the daemon sends a keep-alive
  // every 15 s) counts as broken. Returns the status: a non-2xx answer is a Reply whose body is
  // the error envelope, and `on_data` never sees it. An Error means the transfer itself failed
  // or broke (the stream may be resumed by the caller).
  static constexpr long kStreamIdleSeconds = 45;
  // With `body`, the request is a POST of that JSON (e.g. /v1/images/pull's progress lines).
  Result<Reply> Stream(const std::string& path,
                       const std::function<bool(std::string_view)>& on_data,
                       const std::function<bool()>& stop, const Json* body = nullptr);

 private:
  struct Impl;  // owns the libcurl handle
  Endpoint endpoint_;
  std::unique_ptr<Impl> impl_;
};

// The sandbox's guest API root: "/v1/sandboxes/<id>/api/v1/" with `id` percent-escaped.
std::string GuestPath(const std::string& sandbox_id, const std::string& endpoint);
// Percent-escapes `s` for a URL path segment or query value.
std::string UrlEscape(const std::string& s);

}  // namespace agentbox::cli
