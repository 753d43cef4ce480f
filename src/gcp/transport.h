#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"

namespace agentbox::gcp {

class TokenSource;
struct HttpResponse;

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // absolute, already encoded
  std::vector<std::pair<std::string, std::string>> headers{};
  std::string body{};
  // Idempotent requests are retried on every retryable failure. Non-idempotent ones (run a job)
  // are retried only when the service surely did not act: 429, 503, or a connection that could
  // not be established. Creates keyed by a caller-chosen id are idempotent in this sense: a
  // repeat surfaces as 409/412, which the caller checks. A non-idempotent call goes on a fresh
  // connection (libcurl would otherwise re-send it by itself when a reused one died).
  bool idempotent = true;
  // Attach "Authorization: Bearer <token>" from the transport's TokenSource (if it has one).
  bool authenticate = true;
  // When set, a 2xx response body is handed to `sink` as it arrives instead of being buffered
  // (sink returns false to abort: the call then fails kInternal "aborted by the reader"). Once a
  // byte has reached the sink the call is not retried.
  std::function<bool(std::string_view)> sink{};
  // With a sink: called once per attempt with the 2xx status and headers, before the first body
  // byte reaches the sink (the body is empty then).
  std::function<void(const HttpResponse&)> on_headers{};
  // Per-attempt timeout (connect + transfer); 0 = none (large transfers), which still fail when
  // the transfer stalls (TransportOptions::stall_timeout).
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;                                          // empty when streamed to a sink
  // How many attempts the call took: more than one means an earlier one may have been acted on
  // although its answer was lost (a create answering 409/412 may be the caller's own).
  int attempts = 1;
  // First value of a header (name in lower case), "" when absent.
  std::string Header(std::string_view lower_name) const;
};

struct RetryPolicy {
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{std::chrono::seconds(10)};
  double multiplier = 2.0;
  // No new attempt starts after this much time since the first one (Retry-After included).
  std::chrono::milliseconds total{std::chrono::seconds(60)};
  int max_attempts = 10;
};

}  // namespace agentbox::gcp

namespace agentbox {
class Metrics;
}

namespace agentbox::gcp {

struct TransportOptions {
  RetryPolicy retry;
  size_t max_idle_handles = 8;  // libcurl easy handles kept (with their connections) for reuse
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  // An attempt that moves no byte for this long fails (and is retried like a reset).
  std::chrono::seconds stall_timeout{60};
  std::string user_agent = "agentbox-gcp/0.1";
  // Called instead of sleeping between retries (tests); nullptr sleeps.
  std::function<void(std::chrono::milliseconds)> sleep;
  // When set (it must outlive the transport), every attempt is counted in
  // agentbox_gcp_requests_total{api, method, code} (code: HTTP status, or "error" when no answer
  // came), timed in agentbox_gcp_request_duration_seconds{api}, and every retry counted in
  // agentbox_gcp_retries_total{api}. `api` is `metrics_api` ("storage", "run", "oauth", ...).
  Metrics* metrics = nullptr;
  std::string metrics_api = "google";
};

// HTTP over libcurl for Google APIs: a pool of easy handles reused across threads (each keeps
// its keep-alive connections); retries of 429, 408, 500, 502, 503, 504, connection failures and
// stalls with jittered exponential backoff honouring Retry-After (seconds or HTTP date) and
// bounded by RetryPolicy::total; the bearer token attached (a 401 invalidates the token and the
// call is tried once more with a new one). Thread-safe; calls block the calling thread (run
// them on workers).
class HttpTransport {
 public:
  // `tokens` may be null: requests go without Authorization (token endpoints, emulators).
  explicit HttpTransport(std::shared_ptr<TokenSource> tokens, TransportOptions options = {});
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // Sends `req`, retrying as described. Returns the final response whatever its status (a 4xx,
  // or the last 429/5xx when retries ran out); fails only when no response could be had
  // (kUnavailable "connection reset ..." after retries, kUnauthorized when no token).
  Result<HttpResponse> Send(const HttpRequest& req);

  const std::shared_ptr<TokenSource>& tokens() const { return tokens_; }
  const TransportOptions& options() const { return options_; }
  // How many attempts were made in total (tests and metrics).
  uint64_t attempts() const;

  struct Pool;

 private:
  std::shared_ptr<TokenSource> tokens_;
  TransportOptions options_;
  std::unique_ptr<Pool> pool_;
};

// Parses Retry-After (delta seconds or an IMF-fixdate) relative to `now`; -1 when absent/bad.
std::chrono::milliseconds ParseRetryAfter(std::string_view value,
                                          std::chrono::system_clock::time_point now);

}  // namespace agentbox::gcp
