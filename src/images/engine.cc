#include "images/engine.h"

#include <curl/curl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>

#include "common/json_util.h"

namespace agentbox::images {
namespace {

// The version the docker backend pins too (Debian 12's dockerd 20.10 speaks 1.41).
constexpr const char* kApiVersion = "1.41";

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;

CurlPtr NewHandle(const std::string& socket, const std::string& path, char* errbuf) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CurlPtr c(curl_easy_init());
  if (!c) {
    return c;
  }
  const std::string url = std::string("http://docker/v") + kApiVersion + path;
  curl_easy_setopt(c.get(), CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.get(), CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  return c;
}

Error Unreachable(const std::string& socket, CURLcode code, const char* errbuf) {
  return Error(ErrorCode::kUnavailable,
               "the Docker engine at " + socket + " is not reachable to look up the image: " +
                   (errbuf[0] ? std::string(errbuf) : curl_easy_strerror(code)));
}

std::string Message(const std::string& body) {
  auto j = ParseUntrustedJson(body);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  return body.substr(0, 300);
}

size_t Append(char* p, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  if (s->size() > (4u << 20)) {
    return 0;
  }
  s->append(p, size * n);
  return size * n;
}

struct FdSink {
  int fd;
  long status = 0;
  CURL* curl;
  std::string error_body;
  int err = 0;
};

size_t WriteFd(char* p, size_t size, size_t n, void* arg) {
  auto* s = static_cast<FdSink*>(arg);
  if (s->status == 0) {
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
  }
  if (s->status != 200) {
    s->error_body.append(p, std::min<size_t>(size * n, 4096));
    return size * n;
  }
  size_t off = 0;
  while (off < size * n) {
    const ssize_t w = ::write(s->fd, p + off, size * n - off);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      s->err = errno;
      return 0;
    }
    off += static_cast<size_t>(w);
  }
  return size * n;
}

}  // namespace

bool ValidEngineReference(const std::string& ref) {
  if (ref.empty() || ref.size() > 512 || ref[0] == '-' || ref[0] == '/' || ref[0] == '.' ||
      ref[0] == ':') {
    return false;
  }
  return ref.find_first_not_of(
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
             "._-/:@") == std::string::npos &&
         ref.find("..") == std::string::npos && ref.find("//") == std::string::npos;
}

Result<std::string> EngineImageId(const std::string& socket, const std::string& ref) {
  char errbuf[CURL_ERROR_SIZE] = {};
  CurlPtr c = NewHandle(socket, "/images/" + ref + "/json", errbuf);
  if (!c) {
    return Fail(ErrorCode::kInternal, "curl_easy_init failed");
  }
  std::string body;
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &body);
  const CURLcode code = curl_easy_perform(c.get());
  if (code != CURLE_OK) {
    return Fail(Unreachable(socket, code, errbuf));
  }
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  if (status == 404) {
    return Fail(ErrorCode::kNotFound, "image '" + ref +
                                          "' not found: it is not in the local Docker engine "
                                          "(docker pull it), and it is not an absolute path");
  }
  if (status != 200) {
    return Fail(ErrorCode::kUnavailable,
                "the Docker engine could not inspect image '" + ref + "': " + Message(body));
  }
  auto j = ParseUntrustedJson(body);
  if (!j.is_object() || !j.contains("Id") || !j["Id"].is_string()) {
    return Fail(ErrorCode::kUnavailable,
                "the Docker engine's answer for image '" + ref + "' has no Id");
  }
  return j["Id"].get<std::string>();
}

Result<void> EngineExportImage(const std::string& socket, const std::string& ref, int fd,
                               std::chrono::milliseconds stall_timeout) {
  char errbuf[CURL_ERROR_SIZE] = {};
  CurlPtr c = NewHandle(socket, "/images/" + ref + "/get", errbuf);
  if (!c) {
    return Fail(ErrorCode::kInternal, "curl_easy_init failed");
  }
  FdSink sink{fd, 0, c.get(), "", 0};
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, WriteFd);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(
      c.get(), CURLOPT_LOW_SPEED_TIME,
      static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(stall_timeout).count()));
  const CURLcode code = curl_easy_perform(c.get());
  if (sink.err != 0) {
    return Fail(ErrnoError(sink.err, "write the export of image '" + ref + "'"));
  }
  if (code != CURLE_OK) {
    return Fail(Unreachable(socket, code, errbuf));
  }
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  if (status == 404) {
    return Fail(ErrorCode::kNotFound, "image '" + ref + "' not found in the local Docker engine");
  }
  if (status != 200) {
    return Fail(ErrorCode::kUnavailable, "the Docker engine could not export image '" + ref +
                                             "': " + Message(sink.error_body));
  }
  return {};
}

}  // namespace agentbox::images
