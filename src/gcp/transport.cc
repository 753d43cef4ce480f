#include "gcp/transport.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <ctime>
#include <mutex>
#include <random>
#include <thread>

#include "common/log.h"
#include "common/metrics.h"
#include "gcp/auth.h"

namespace agentbox::gcp {
namespace {

using std::chrono::milliseconds;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

struct CurlSlist {
  curl_slist* list = nullptr;
  ~CurlSlist() { curl_slist_free_all(list); }
  void Add(const std::string& line) { list = curl_slist_append(list, line.c_str()); }
};

// State of one attempt, shared with libcurl's callbacks.
struct Attempt {
  const HttpRequest* req = nullptr;
  HttpResponse resp;
  uint64_t delivered = 0;  // bytes handed to the sink
  bool aborted = false;
  bool headers_seen = false;
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (after 100 Continue): start over
    a->resp.headers.clear();
    auto sp = line.find(' ');
    a->resp.status =
        sp == std::string_view::npos ? 0 : std::atoi(std::string(line.substr(sp + 1, 3)).c_str());
    return size * n;
  }
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    a->resp.headers.emplace_back(Lower(Trim(line.substr(0, colon))),
                                 std::string(Trim(line.substr(colon + 1))));
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  std::string_view chunk(data, size * n);
  if (a->req->sink && a->resp.status >= 200 && a->resp.status < 300) {
    if (!a->headers_seen) {
      a->headers_seen = true;
      if (a->req->on_headers) {
        a->req->on_headers(a->resp);
      }
    }
    if (!a->req->sink(chunk)) {
      a->aborted = true;
      return 0;  // CURLE_WRITE_ERROR
    }
    a->delivered += chunk.size();
    return chunk.size();
  }
  a->resp.body.append(chunk);
  return chunk.size();
}

bool RetryableStatus(int status, bool idempotent) {
  if (status == 429 || status == 503) {
    return true;
  }
  return idempotent && (status == 408 || status == 500 || status == 502 || status == 504);
}

// A failure before any byte of the request could have reached the service.
bool NotSent(CURLcode rc) {
  return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
         rc == CURLE_COULDNT_RESOLVE_PROXY;
}

bool RetryableTransport(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

// Host and path of a URL without its query string (never log tokens in upload_id etc.).
std::string UrlForLog(const std::string& url) { return url.substr(0, url.find('?')); }

}  // namespace

std::string HttpResponse::Header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) {
      return v;
    }
  }
  return "";
}

milliseconds ParseRetryAfter(std::string_view value, std::chrono::system_clock::time_point now) {
  value = Trim(value);
  if (value.empty()) {
    return milliseconds(-1);
  }
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) {
      return milliseconds(-1);
    }
    return std::chrono::seconds(std::stol(std::string(value)));
  }
  std::tm tm{};
  std::string s(value);
  if (strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) == nullptr) {
    return milliseconds(-1);
  }
  // In seconds first: a date millennia away would overflow system_clock's nanoseconds (UBSan,
  // found by fuzz_gcp_answers). More than a day away is nonsense: no hint.
  const auto delta = std::chrono::seconds(timegm(&tm)) -
                     std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch());
  if (delta.count() > 86400) {
    return milliseconds(-1);
  }
  return delta.count() < 0 ? milliseconds(0) : std::chrono::duration_cast<milliseconds>(delta);
}

struct HttpTransport::Pool {
  std::mutex mu;
  std::vector<CURL*> idle;
  size_t max_idle = 8;
  std::atomic<uint64_t> attempts{0};

  CURL* Take() {
    {
      std::lock_guard lock(mu);
      if (!idle.empty()) {
        CURL* h = idle.back();
        idle.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }
  // curl_easy_reset keeps the handle's connection cache, so the next request on it reuses the
  // keep-alive connection.
  void Give(CURL* h, bool healthy) {
    if (healthy) {
      curl_easy_reset(h);
      std::lock_guard lock(mu);
      if (idle.size() < max_idle) {
        idle.push_back(h);
        return;
      }
    }
    curl_easy_cleanup(h);
  }
  ~Pool() {
    for (CURL* h : idle) {
      curl_easy_cleanup(h);
    }
  }
};

HttpTransport::HttpTransport(std::shared_ptr<TokenSource> tokens, TransportOptions options)
    : tokens_(std::move(tokens)), options_(std::move(options)), pool_(std::make_unique<Pool>()) {
  GlobalInit();
  pool_->max_idle = options_.max_idle_handles;
  if (options_.metrics != nullptr) {
    options_.metrics->Describe("agentbox_gcp_requests_total", "counter",
                               "HTTP attempts to Google APIs by API, method and status code.");
    options_.metrics->Describe("agentbox_gcp_request_duration_seconds", "histogram",
                               "Duration of one HTTP attempt to a Google API.");
    options_.metrics->Describe("agentbox_gcp_retries_total", "counter",
                               "Google API calls retried (429, 5xx, connection failures).");
  }
}

HttpTransport::~HttpTransport() = default;

uint64_t HttpTransport::attempts() const { return pool_->attempts.load(); }

Result<HttpResponse> HttpTransport::Send(const HttpRequest& req) {
  const auto start = std::chrono::steady_clock::now();
  const RetryPolicy& policy = options_.retry;
  thread_local std::mt19937_64 rng{std::random_device{}()};
  milliseconds backoff = policy.initial_backoff;
  milliseconds slept_by_hook(0);  // injected sleeps take no real time but count against `total`
  bool reauthenticated = false;   // a 401 already led to a fresh token

  for (int attempt = 1;; ++attempt) {
    std::string bearer;
    if (req.authenticate && tokens_) {
      auto token = tokens_->Token();
      if (!token) {
        return Fail(token.error());
      }
      bearer = std::move(*token);
    }

    CURL* h = pool_->Take();
    if (h == nullptr) {
      return Fail(ErrorCode::kInternal, "libcurl: cannot create a handle");
    }
    pool_->attempts.fetch_add(1);
    Attempt a;
    a.req = &req;
    CurlSlist headers;
    bool has_content_type = false;
    for (const auto& [k, v] : req.headers) {
      headers.Add(k + ": " + v);
      has_content_type = has_content_type || Lower(k) == "content-type";
    }
    if (!bearer.empty()) {
      headers.Add("Authorization: Bearer " + bearer);
    }
    headers.Add("Expect:");  // no 100-continue round trip
    if (!has_content_type) {
      headers.Add("Content-Type:");  // libcurl would add a form content type to POSTs
    }

    curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.stall_timeout.count()));
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &OnBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    if (!req.idempotent) {
      // libcurl silently re-sends a request whose reused connection died before any answer
      // (it assumes the server had closed it while idle). That is wrong when the request may
      // have been acted on, so a non-idempotent call always gets a connection of its own.
      curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
    }
    if (req.method == "GET") {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (req.method == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (req.method == "DELETE" && req.body.empty()) {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
      // POST, PUT, PATCH (and DELETE with a body): the body always goes with a Content-Length.
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.data());
      if (req.method != "POST") {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
      }
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);

    const auto attempt_start = std::chrono::steady_clock::now();
    CURLcode rc = curl_easy_perform(h);
    pool_->Give(h, rc == CURLE_OK);
    if (options_.metrics != nullptr) {
      const std::string& api = options_.metrics_api;
      options_.metrics->Increment(
          "agentbox_gcp_requests_total",
          {{"api", api},
           {"method", req.method},
           {"code", rc == CURLE_OK ? std::to_string(a.resp.status) : std::string("error")}});
      options_.metrics->Observe(
          "agentbox_gcp_request_duration_seconds", {{"api", api}},
          std::chrono::duration<double>(std::chrono::steady_clock::now() - attempt_start).count());
    }

    const auto elapsed =
        std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start) +
        slept_by_hook;
    milliseconds delay(0);
    std::string why;
    if (rc == CURLE_OK) {
      if (a.resp.status == 401 && !bearer.empty() && !reauthenticated) {
        // The token was revoked or expired early: fetch a new one and try once more at once.
        reauthenticated = true;
        tokens_->Invalidate();
        Log(LogLevel::kInfo, "gcp.token_rejected", "method={} url={} source=\"{}\"", req.method,
            UrlForLog(req.url), tokens_->Describe());
        continue;
      }
      if (!RetryableStatus(a.resp.status, req.idempotent)) {
        a.resp.attempts = attempt;
        return std::move(a.resp);
      }
      why = fmt::format("status={}", a.resp.status);
      delay = ParseRetryAfter(a.resp.Header("retry-after"), std::chrono::system_clock::now());
    } else {
      if (a.aborted) {
        return Fail(ErrorCode::kInternal,
                    fmt::format("{} {}: aborted by the reader", req.method, UrlForLog(req.url)));
      }
      bool retry = RetryableTransport(rc) && (req.idempotent || NotSent(rc)) && a.delivered == 0;
      std::string what = fmt::format("{} {}: {} (attempt {})", req.method, UrlForLog(req.url),
                                     curl_easy_strerror(rc), attempt);
      if (!retry || attempt >= policy.max_attempts) {
        return Fail(ErrorCode::kUnavailable, what);
      }
      why = fmt::format("error=\"{}\"", curl_easy_strerror(rc));
    }

    // Full-jitter-ish backoff: uniform in [backoff/2, backoff], at least what Retry-After asks.
    std::uniform_int_distribution<int64_t> dist(backoff.count() / 2,
                                                std::max<int64_t>(backoff.count(), 1));
    milliseconds wait(dist(rng));
    if (delay.count() > wait.count()) {
      wait = delay;
    }
    backoff = std::min(policy.max_backoff,
                       milliseconds(static_cast<int64_t>(static_cast<double>(backoff.count()) *
                                                         policy.multiplier)));
    if (attempt >= policy.max_attempts || elapsed + wait > policy.total) {
      Log(LogLevel::kWarn, "gcp.retry_exhausted", "method={} url={} {} attempts={} elapsed_ms={}",
          req.method, UrlForLog(req.url), why, attempt, elapsed.count());
      if (rc == CURLE_OK) {
        a.resp.attempts = attempt;
        return std::move(a.resp);
      }
      return Fail(ErrorCode::kUnavailable,
                  fmt::format("{} {}: {} after {} attempts", req.method, UrlForLog(req.url),
                              curl_easy_strerror(rc), attempt));
    }
    Log(LogLevel::kInfo, "gcp.retry", "method={} url={} {} attempt={} wait_ms={}", req.method,
        UrlForLog(req.url), why, attempt, wait.count());
    if (options_.metrics != nullptr) {
      options_.metrics->Increment("agentbox_gcp_retries_total", {{"api", options_.metrics_api}});
    }
    if (options_.sleep) {
      options_.sleep(wait);
      slept_by_hook += wait;
    } else {
      std::this_thread::sleep_for(wait);
    }
  }
}

}  // namespace agentbox::gcp
