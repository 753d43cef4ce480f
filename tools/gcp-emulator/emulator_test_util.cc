#include "emulator_test_util.h"

#include <curl/curl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "backends/docker/engine_client.h"
#include "common/fs_util.h"
#include "common/strings.h"

namespace agentbox::gcpemu::testing {
namespace {

size_t Append(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

size_t HeaderLine(char* p, size_t s, size_t n, void* out) {
  std::string line(p, s * n);
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ')) {
      v.erase(0, 1);
    }
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n')) {
      v.pop_back();
    }
    static_cast<HttpResult*>(out)->headers.emplace_back(AsciiLower(line.substr(0, colon)), v);
  }
  return s * n;
}

}  // namespace

std::string HttpResult::Header(const std::string& lower) const {
  for (const auto& [k, v] : headers) {
    if (k == lower) {
      return v;
    }
  }
  return "";
}

HttpResult Http(const std::string& method, const std::string& url, const std::string& body,
                std::vector<std::string> headers, const std::string& bearer) {
  HttpResult r;
  CURL* c = curl_easy_init();
  curl_slist* list = nullptr;
  if (!bearer.empty()) {
    headers.push_back("Authorization: Bearer " + bearer);
  }
  headers.push_back("Expect:");
  for (const auto& h : headers) {
    list = curl_slist_append(list, h.c_str());
  }
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, HeaderLine);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  }
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  return r;
}

double EmulatorProcess::Start(const std::vector<std::string>& extra_args) {
  int out[2];
  if (::pipe(out) != 0) {
    return -1;
  }
  std::vector<std::string> args = {AGENTBOX_GCP_EMULATOR, "--listen", "tcp:127.0.0.1:0", "--data",
                                   data_dir_};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  const auto t0 = std::chrono::steady_clock::now();
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out[1]);
  std::string line;
  char ch = 0;
  pollfd p{out[0], POLLIN, 0};
  while (::poll(&p, 1, 5000) > 0 && ::read(out[0], &ch, 1) == 1 && ch != '\n') {
    line += ch;
  }
  ::close(out[0]);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const std::string prefix = "listening on ";
  if (!line.starts_with(prefix)) {
    return -1;
  }
  url_ = line.substr(prefix.size());
  return ms;
}

void EmulatorProcess::Stop() {
  if (pid_ <= 0) {
    return;
  }
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    ::usleep(50 * 1000);
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool DockerAvailable() {
  docker::EngineClient engine(std::string(docker::kDefaultSocket));
  auto r = engine.Call("GET", "/_ping", "", std::chrono::seconds(3));
  return r && r->status == 200;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/gcpemu-test.XXXXXX";
  path_ = ::mkdtemp(tmpl);
}

TempDir::~TempDir() { RemoveTree(path_); }

}  // namespace agentbox::gcpemu::testing
