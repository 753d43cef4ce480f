// Helpers of the cloudrun end-to-end tests: plain HTTP with libcurl, child processes, a private
// agentbox-gcp-emulator and agentboxd binaries with their own state directories.
#pragma once

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace agentbox::cloudrun_e2e {

using Json = nlohmann::json;
using namespace std::chrono_literals;

struct Reply {
  long status = 0;
  std::string body;
  Json json;
  Json data() const { return json.is_object() && json.contains("data") ? json["data"] : Json(); }
  std::string message() const { return json.is_object() ? json.value("message", "") : ""; }
};

inline size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

// One HTTP call over TCP (url) or a unix socket (socket non-empty, url's host ignored).
inline Reply Http(const std::string& socket, const std::string& method, const std::string& url,
                  const std::string& body = "", const std::vector<std::string>& headers = {}) {
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
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
  curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  r.json = Json::parse(r.body, nullptr, false);
  return r;
}

inline pid_t Spawn(const std::vector<std::string>& args, const std::string& log,
                   int stdout_fd = -1) {
  std::vector<char*> argv;
  std::vector<std::string> copy = args;
  for (auto& a : copy) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    if (stdout_fd >= 0) {
      dup2(stdout_fd, STDOUT_FILENO);
    }
    FILE* f = freopen(log.c_str(), "a", stderr);
    (void)f;
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

inline void Stop(pid_t& pid) {
  if (pid > 0) {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
}

// A TCP port of 127.0.0.1 that was free a moment ago (for a daemon's public URL, which must be
// known before it listens).
inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

// A private emulator: Cloud Run + Cloud Storage on a free port.
class Emulator {
 public:
  explicit Emulator(const std::string& dir) {
    int out[2];
    if (pipe(out) != 0) {
      return;
    }
    pid_ =
        Spawn({AGENTBOX_GCP_EMULATOR_BIN, "--listen", "tcp:127.0.0.1:0", "--data", dir + "/data"},
              dir + "/emulator.log", out[1]);
    close(out[1]);
    std::string line;
    char c;
    while (line.find('\n') == std::string::npos && read(out[0], &c, 1) == 1) {
      line += c;
    }
    close(out[0]);
    if (size_t at = line.find("http://"); at != std::string::npos) {
      url_ = line.substr(at, line.find_first_of("\r\n", at) - at);
    }
  }
  ~Emulator() { Stop(pid_); }
  const std::string& url() const { return url_; }
  Reply Call(const std::string& method, const std::string& path, const Json& body = Json()) {
    return Http("", method, url_ + path, body.is_null() ? "" : body.dump(),
                {"Authorization: Bearer e2e", "Content-Type: application/json"});
  }
  bool CreateBucket(const std::string& name) {
    return Call("POST", "/storage/v1/b?project=e2e-project", {{"name", name}}).status == 200;
  }
  void Faults(const Json& f) { EXPECT_EQ(Call("PUT", "/emulator/v1/faults", f).status, 200); }

 private:
  pid_t pid_ = -1;
  std::string url_;
};

// One agentboxd with its own state directory.
class Daemon {
 public:
  // `listen`: more --listen addresses than the unix socket (e.g. the tunnel's tcp:127.0.0.1:P).
  Daemon(const std::string& dir, const std::map<std::string, std::string>& cfg,
         const std::vector<std::string>& listen = {})
      : dir_(dir) {
    mkdir(dir.c_str(), 0700);
    socket_ = dir + "/agentboxd.sock";
    const std::string conf = dir + "/agentboxd.conf";
    FILE* f = fopen(conf.c_str(), "w");
    for (const auto& [k, v] : cfg) {
      fprintf(f, "%s=%s\n", k.c_str(), v.c_str());
    }
    fclose(f);
    std::vector<std::string> args = {AGENTBOXD_BIN, "--listen",     "unix:" + socket_,
                                     "--state-dir", dir + "/state", "--env-file",
                                     "/dev/null",   "--config",     conf};
    for (const auto& l : listen) {
      args.insert(args.end(), {"--listen", l});
    }
    pid_ = Spawn(args, dir + "/agentboxd.log");
    for (auto deadline = std::chrono::steady_clock::now() + 20s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
      if (Call("GET", "/healthz").status == 200) {
        ready_ = true;
        break;
      }
    }
  }
  ~Daemon() { Stop(pid_); }
  bool ready() const { return ready_; }
  std::string log() const {
    std::string out;
    if (FILE* f = fopen((dir_ + "/agentboxd.log").c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        out.append(buf, n);
      }
      fclose(f);
    }
    return out;
  }
  Reply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return Http(socket_, method, "http://agentboxd" + path, body);
  }
  Reply Api(const std::string& id, const std::string& op, const Json& body) {
    return Call("POST", "/v1/sandboxes/" + id + "/api/v1/" + op, body.dump());
  }
  // file/upload of `content` to `path`, as multipart/form-data.
  Reply Upload(const std::string& id, const std::string& path, const std::string& content) {
    const std::string b = "agentbox-e2e-boundary";
    const std::string body = "--" + b +
                             "\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n" + path +
                             "\r\n--" + b +
                             "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n"
                             "Content-Type: application/octet-stream\r\n\r\n" +
                             content + "\r\n--" + b + "--\r\n";
    return Http(socket_, "POST", "http://agentboxd/v1/sandboxes/" + id + "/api/v1/file/upload",
                body, {"Content-Type: multipart/form-data; boundary=" + b});
  }
  Reply Create(const Json& body = Json::object()) {
    Json b = body;
    b["ttl_s"] = 600;
    return Call("POST", "/v1/sandboxes", b.dump());
  }

 private:
  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
  bool ready_ = false;
};

}  // namespace agentbox::cloudrun_e2e
