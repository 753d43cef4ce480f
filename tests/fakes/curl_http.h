#pragma once

// Plain HTTP with libcurl for the tests that drive agentboxd (and the GCP emulator) as separate
// processes: one call over TCP or a unix socket, a free loopback port, a daemon's log, the URL a
// child prints on its stdout. Header-only: those tests link libcurl, not the fakes library.

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace agentbox::test_support {

struct Reply {
  long status = 0;
  std::string body;
  std::string headers;  // the response's header lines as they came, status line included
  nlohmann::json json;
  nlohmann::json data() const {
    return json.is_object() && json.contains("data") ? json["data"] : nlohmann::json();
  }
  std::string message() const { return json.is_object() ? json.value("message", "") : ""; }
};

inline size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

// One HTTP call over TCP (url) or a unix socket (socket non-empty, url's host ignored). The body
// goes with every method but GET and DELETE; `curl_rc`, when given, gets libcurl's result. A call
// takes at most `timeout_s` seconds.
inline Reply CurlHttp(const std::string& socket, const std::string& method, const std::string& url,
                      const std::string& body = "", const std::vector<std::string>& headers = {},
                      CURLcode* curl_rc = nullptr, long timeout_s = 120) {
  CURL* c = curl_easy_init();
  Reply r;
  curl_slist* h = nullptr;
  for (const auto& x : headers) {
    h = curl_slist_append(h, x.c_str());
  }
  if (!socket.empty()) {
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
  }
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method != "GET" && method != "DELETE") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
  const CURLcode rc = curl_easy_perform(c);
  if (curl_rc != nullptr) {
    *curl_rc = rc;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  r.json = nlohmann::json::parse(r.body, nullptr, false);
  return r;
}

// A TCP port of 127.0.0.1 that was free a moment ago (for an address that must be known before
// the daemon listens on it).
inline int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// The whole of a file ("" when it cannot be read): a daemon's log.
inline std::string ReadLog(const std::string& path) {
  std::string out;
  if (FILE* f = fopen(path.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
      out.append(buf, n);
    }
    fclose(f);
  }
  return out;
}

// The http:// URL in the first line a child writes to `fd` (the read end of its stdout; closed
// here), or "" when that line has none.
inline std::string ReadListenUrl(int fd) {
  std::string line;
  char c;
  while (line.find('\n') == std::string::npos && read(fd, &c, 1) == 1) {
    line += c;
  }
  close(fd);
  const size_t at = line.find("http://");
  return at == std::string::npos ? "" : line.substr(at, line.find_first_of("\r\n", at) - at);
}

}  // namespace agentbox::test_support
