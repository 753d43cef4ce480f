#include "backends/docker/engine_client.h"

#include <curl/curl.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "common/json_util.h"

namespace agentbox::docker {
namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// curl_global_init is not thread-safe in older libcurl; run it once before any handle exists.
void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Sets the options every engine request shares. `body` must outlive the transfer.
CurlPtr NewHandle(const std::string& socket, std::string_view method, std::string_view path,
                  const std::string& body, curl_slist* headers, char* errbuf) {
  InitCurlOnce();
  CurlPtr c(curl_easy_init());
  if (!c) {
    return c;
  }
  const std::string url = "http://docker/v" + std::string(kApiVersion) + std::string(path);
  curl_easy_setopt(c.get(), CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_CUSTOMREQUEST, std::string(method).c_str());
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.get(), CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  if (method == "POST" || method == "PUT" || !body.empty()) {
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    // CURLOPT_POSTFIELDS switched the method to POST; keep the one asked for.
    curl_easy_setopt(c.get(), CURLOPT_CUSTOMREQUEST, std::string(method).c_str());
  }
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers);
  return c;
}

Error TransportError(const std::string& socket, CURL* c, CURLcode code, const char* errbuf) {
  long os_errno = 0;
  curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
  std::string why = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(code);
  if (code == CURLE_COULDNT_CONNECT && os_errno != 0) {
    why = std::strerror(static_cast<int>(os_errno));
  }
  return Error(ErrorCode::kUnavailable,
               "the Docker engine at " + socket + " is not reachable: " + why +
                   " (is dockerd running? scripts/start-dockerd.sh starts it)",
               static_cast<int>(os_errno));
}

size_t AppendBody(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

struct LineSink {
  std::string pending;
  const std::function<void(std::string_view)>* on_line;
};

size_t SplitLines(char* p, size_t size, size_t n, void* arg) {
  auto* sink = static_cast<LineSink*>(arg);
  sink->pending.append(p, size * n);
  size_t start = 0;
  for (size_t nl; (nl = sink->pending.find('\n', start)) != std::string::npos; start = nl + 1) {
    if (nl > start) {
      (*sink->on_line)(std::string_view(sink->pending).substr(start, nl - start));
    }
  }
  sink->pending.erase(0, start);
  return size * n;
}

}  // namespace

Result<std::string> SocketFromDockerHost(std::string_view docker_host) {
  if (docker_host.empty()) {
    return std::string(kDefaultSocket);
  }
  constexpr std::string_view kUnix = "unix://";
  if (!docker_host.starts_with(kUnix) || docker_host.size() <= kUnix.size() ||
      docker_host[kUnix.size()] != '/') {
    return Fail(ErrorCode::kInvalidArgument,
                "DOCKER_HOST=" + std::string(docker_host) +
                    " is not supported: the docker backend talks to the engine over a unix "
                    "socket, unix:///path/to/docker.sock");
  }
  return std::string(docker_host.substr(kUnix.size()));
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

EngineClient::EngineClient(std::string socket_path) : socket_path_(std::move(socket_path)) {}

Result<EngineResponse> EngineClient::Call(std::string_view method, std::string_view path,
                                          std::string_view json_body,
                                          std::chrono::milliseconds timeout) const {
  const std::string body(json_body);
  SlistPtr headers(curl_slist_append(nullptr, "Content-Type: application/json"));
  char errbuf[CURL_ERROR_SIZE] = {};
  CurlPtr c = NewHandle(socket_path_, method, path, body, headers.get(), errbuf);
  if (!c) {
    return Fail(ErrorCode::kInternal, "curl_easy_init failed");
  }
  EngineResponse r;
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &r.body);
  const CURLcode code = curl_easy_perform(c.get());
  if (code != CURLE_OK) {
    return Fail(TransportError(socket_path_, c.get(), code, errbuf));
  }
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

Result<long> EngineClient::Stream(std::string_view method, std::string_view path,
                                  const std::function<void(std::string_view)>& on_line,
                                  std::chrono::milliseconds stall_timeout) const {
  const std::string body;
  SlistPtr headers(curl_slist_append(nullptr, "Content-Type: application/json"));
  char errbuf[CURL_ERROR_SIZE] = {};
  CurlPtr c = NewHandle(socket_path_, method, path, body, headers.get(), errbuf);
  if (!c) {
    return Fail(ErrorCode::kInternal, "curl_easy_init failed");
  }
  LineSink sink{"", &on_line};
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, SplitLines);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &sink);
  // "Stalled": under one byte per second for stall_timeout.
  curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(
      c.get(), CURLOPT_LOW_SPEED_TIME,
      static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(stall_timeout).count()));
  const CURLcode code = curl_easy_perform(c.get());
  if (!sink.pending.empty()) {
    on_line(sink.pending);
  }
  if (code != CURLE_OK) {
    return Fail(TransportError(socket_path_, c.get(), code, errbuf));
  }
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  return status;
}

std::string EngineMessage(std::string_view body) {
  auto j = ParseUntrustedJson(body);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  std::string s(body.substr(0, 500));
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

Error EngineError(const EngineResponse& r, std::string_view what) {
  ErrorCode code = ErrorCode::kUnavailable;
  switch (r.status) {
    case 400:
      code = ErrorCode::kInvalidArgument;
      break;
    case 404:
      code = ErrorCode::kNotFound;
      break;
    case 409:
      code = ErrorCode::kConflict;
      break;
    default:
      break;
  }
  return Error(code, std::string(what) + ": " + EngineMessage(r.body) + " (engine answered " +
                         std::to_string(r.status) + ")");
}

}  // namespace agentbox::docker
