#pragma once

// One HTTP request to a daemon over its unix socket, for the tests that start agentboxd as a
// separate process (header-only: those tests link libcurl, not the fakes library).

#include <curl/curl.h>

#include <string>
#include <utility>

namespace agentbox::test_support {

// Returns {status, body}; status 0 when no answer came within `timeout_seconds`. Bodies are sent
// as JSON on every method but GET.
inline std::pair<long, std::string> UnixCall(const std::string& socket, const std::string& method,
                                             const std::string& path, const std::string& body,
                                             long timeout_seconds) {
  CURL* c = curl_easy_init();
  std::string out;
  long status = 0;
  const std::string url = "http://agentboxd" + path;
  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  }
  auto collect = +[](char* p, size_t s, size_t n, void* to) -> size_t {
    static_cast<std::string*>(to)->append(p, s * n);
    return s * n;
  };
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_seconds);
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  return {status, out};
}

}  // namespace agentbox::test_support
