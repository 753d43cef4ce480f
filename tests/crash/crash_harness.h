#pragma once

// The crash-consistency suite's harness (docs/reliability.md): agentboxd-crashtest started and
// killed, requests over its unix socket, and what a sandbox can leave on the host, counted.
#include <curl/curl.h>
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace crash {

using Json = nlohmann::json;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

inline size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

struct Reply {
  long status = 0;  // 0: no answer (the daemon died, or nobody listens)
  std::string body;
  std::string headers;
  Json json() const { return Json::parse(body, nullptr, false); }
  Json data() const {
    const Json j = json();
    return j.is_object() && j.contains("data") ? j["data"] : Json();
  }
};

// One HTTP request over a unix socket.
inline Reply Http(const std::string& socket, const std::string& method, const std::string& url,
                  const std::string& body = "", const std::vector<std::string>& headers = {},
                  long timeout_s = 60) {
  CURL* c = curl_easy_init();
  Reply r;
  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_slist* list = curl_slist_append(nullptr, "Content-Type: application/json");
  for (const auto& h : headers) {
    list = curl_slist_append(list, h.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  }
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  return r;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") {
        out.push_back(name);
      }
    }
    closedir(d);
  }
  return out;
}

// agentboxd-crashtest over a state directory of its own.
class Daemon {
 public:
  Daemon(std::string binary, std::string backend) : binary_(std::move(binary)), backend_(std::move(backend)) {
    char tmpl[] = "/tmp/agentbox-crash-XXXXXX";
    if (mkdtemp(tmpl) != nullptr) {
      dir_ = tmpl;
    }
  }
  ~Daemon() {
    Stop();
    if (!dir_.empty() && getenv("AGENTBOX_CRASH_KEEP") == nullptr) {
      int rc = system(("rm -rf '" + dir_ + "'").c_str());
      (void)rc;
    }
  }

  // Starts the daemon; `crash_at` is its AGENTBOX_TEST_CRASH_AT. Waits until /healthz answers
  // unless it is expected to crash on its own (`wait` false). False when it did not come up.
  bool Start(const std::string& crash_at, int pool_size, bool wait = true) {
    pid_ = fork();
    if (pid_ == 0) {
      for (const char* k : {"SANDBOX_BACKEND", "AGENTBOX_FALLBACK_CHAIN", "AGENTBOX_WARM_POOL_SIZE_JAIL",
                            "AGENTBOX_WARM_POOL_SIZE_DOCKER", "AGENTBOX_TEST_CRASH_AT"}) {
        unsetenv(k);
      }
      setenv("AGENTBOX_FALLBACK_CHAIN", backend_.c_str(), 1);
      // Only the backend under test pools: another backend's refills would add sandboxes.
      setenv("AGENTBOX_WARM_POOL_SIZE", "0", 1);
      std::string upper = backend_;
      for (char& ch : upper) {
        ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      }
      setenv(("AGENTBOX_WARM_POOL_SIZE_" + upper).c_str(), std::to_string(pool_size).c_str(), 1);
      setenv("AGENTBOX_DEFAULT_DISK_BYTES", "67108864", 1);  // a disk per sandbox: mount + loop
      setenv("AGENTBOX_MIN_FREE_BYTES", "0", 1);
      if (!crash_at.empty()) {
        setenv("AGENTBOX_TEST_CRASH_AT", crash_at.c_str(), 1);
      }
      FILE* f = freopen(log().c_str(), "a", stderr);
      (void)f;
      execl(binary_.c_str(), binary_.c_str(), "--env-file", "/dev/null", "--backend",
            backend_.c_str(), "--listen", ("unix:" + socket()).c_str(), "--state-dir",
            state().c_str(), nullptr);
      _exit(127);
    }
    if (!wait) {
      return true;
    }
    for (auto deadline = SteadyClock::now() + 30s; SteadyClock::now() < deadline;
         std::this_thread::sleep_for(20ms)) {
      if (Call("GET", "/healthz").status == 200) {
        return true;
      }
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
    }
    return false;
  }

  // Waits until the daemon is gone; true if SIGKILL ended it (a crash point, or the test).
  bool WaitKilled(std::chrono::seconds wait = 60s) {
    if (pid_ <= 0) {
      return false;
    }
    int status = 0;
    for (auto deadline = SteadyClock::now() + wait; SteadyClock::now() < deadline;
         std::this_thread::sleep_for(20ms)) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      }
    }
    return false;
  }

  void Kill9() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
    }
  }

  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  Reply Call(const std::string& method, const std::string& path, const std::string& body = "",
             const std::vector<std::string>& headers = {}, long timeout_s = 60) const {
    return Http(socket(), method, "http://agentboxd" + path, body, headers, timeout_s);
  }

  // Sandboxes the daemon lists (the local socket is admin: every owner, pooled ones too when the
  // pool is off).
  std::vector<Json> List() const {
    std::vector<Json> out;
    const Json d = Call("GET", "/v1/sandboxes").data();
    if (d.is_object() && d["sandboxes"].is_array()) {
      for (const auto& s : d["sandboxes"]) {
        out.push_back(s);
      }
    }
    return out;
  }
  std::set<std::string> ListedIds() const {
    std::set<std::string> ids;
    for (const auto& s : List()) {
      ids.insert(s.value("id", ""));
    }
    return ids;
  }

  // Listed sandboxes a client created (not a warm pool's unclaimed ones).
  std::set<std::string> ClientIds() const {
    std::set<std::string> ids;
    for (const auto& s : List()) {
      if (!s.contains("labels") || !s["labels"].contains("agentbox.pool")) {
        ids.insert(s.value("id", ""));
      }
    }
    return ids;
  }

  // A command runs in the sandbox and prints what it should.
  bool Works(const std::string& id) const {
    const Reply r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                         R"j({"command":"echo alive-$((40+2))","wait_seconds":20})j");
    const Json d = r.data();
    return r.status == 200 && d.is_object() && d.value("returncode", -1) == 0 &&
           d.value("output", "").find("alive-42") != std::string::npos;
  }

  // Value of a counter line `name{labels}` in /metrics (0 when absent).
  double Metric(const std::string& series) const {
    const std::string text = Call("GET", "/metrics").body;
    const size_t at = text.find("\n" + series + " ");
    return at == std::string::npos ? 0 : std::atof(text.c_str() + at + series.size() + 2);
  }

  std::string LogText() const { return ReadFile(log()); }

  const std::string& dir() const { return dir_; }
  std::string state() const { return dir_ + "/state"; }
  std::string backend_state() const { return state() + "/" + backend_; }
  std::string socket() const { return dir_ + "/d.sock"; }
  std::string log() const { return dir_ + "/agentboxd.log"; }
  pid_t pid() const { return pid_; }

 private:
  std::string binary_, backend_, dir_;
  pid_t pid_ = -1;
};

// Ids of agentbox containers of `backend_state` (docker), from the engine.
inline std::set<std::string> ContainerIds(const std::string& backend_state) {
  std::set<std::string> ids;
  const Json filters = {{"label", {"agentbox.state-dir=" + backend_state}}};
  char* escaped = curl_easy_escape(nullptr, filters.dump().c_str(), 0);
  const Reply r = Http("/var/run/docker.sock", "GET",
                       std::string("http://docker/v1.41/containers/json?all=1&filters=") + escaped);
  curl_free(escaped);
  const Json list = r.json();
  if (list.is_array()) {
    for (const auto& c : list) {
      if (c.contains("Labels") && c["Labels"].is_object()) {
        ids.insert(c["Labels"].value("agentbox.id", ""));
      }
    }
  }
  return ids;
}

// Sandbox ids the backend's state directory holds (directories, id slots) and, for docker, the
// engine: everything the invariant is then checked for.
inline std::set<std::string> KnownIds(const Daemon& d, const std::string& backend) {
  std::set<std::string> ids;
  for (const auto& name : Entries(d.backend_state())) {
    if (name[0] != '.') {
      ids.insert(name);
    }
  }
  for (const auto& slot : Entries(d.backend_state() + "/.slots")) {
    char target[256];
    const ssize_t n = readlink((d.backend_state() + "/.slots/" + slot).c_str(), target, 255);
    if (n > 0) {
      ids.insert(std::string(target, static_cast<size_t>(n)));
    }
  }
  if (backend == "docker") {
    for (const auto& id : ContainerIds(d.backend_state())) {
      ids.insert(id);
    }
  }
  return ids;
}

// What is left on the host of sandbox `id` of this daemon: processes, cgroups, mounts, loop
// devices, id slots, directories, containers. Empty when nothing.
inline std::vector<std::string> Leftovers(const Daemon& d, const std::string& backend,
                                          const std::string& id) {
  std::vector<std::string> out;
  const std::string dir = d.backend_state() + "/" + id;
  if (access(dir.c_str(), F_OK) == 0) {
    out.push_back("directory " + dir);
  }
  for (const auto& slot : Entries(d.backend_state() + "/.slots")) {
    char target[256];
    const ssize_t n = readlink((d.backend_state() + "/.slots/" + slot).c_str(), target, 255);
    if (n > 0 && std::string(target, static_cast<size_t>(n)) == id) {
      out.push_back("id slot " + slot);
    }
  }
  for (const auto& pid : Entries("/proc")) {
    if (pid.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::string cmd = ReadFile("/proc/" + pid + "/cmdline");
    for (char& ch : cmd) {
      ch = ch == '\0' ? ' ' : ch;
    }
    if (cmd.find(dir + "/") != std::string::npos) {
      out.push_back("process " + pid + ": " + cmd);
    }
  }
  for (const char* controller : {"memory", "pids", "cpu", "unified", "systemd"}) {
    // Sandboxes' groups sit under the daemon's own group, which is this test's.
    std::string own;
    std::istringstream cg(ReadFile("/proc/self/cgroup"));
    for (std::string line; std::getline(cg, line);) {
      const size_t a = line.find(':');
      const size_t b = line.find(':', a + 1);
      const std::string names = line.substr(a + 1, b - a - 1);
      const std::string c = controller;
      if ((c == "unified" && names.empty()) || names == c || names == "name=" + c ||
          names.find(c + ",") == 0 || names.ends_with("," + c)) {
        own = line.substr(b + 1);
      }
    }
    const std::string group = std::string("/sys/fs/cgroup/") + controller +
                              (own == "/" ? "" : own) + "/agentbox/" + id;
    if (access(group.c_str(), F_OK) == 0) {
      out.push_back("cgroup " + group);
    }
  }
  std::istringstream mounts(ReadFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream fields(line);
    std::string f1, f2, f3, f4, point;
    fields >> f1 >> f2 >> f3 >> f4 >> point;
    if (point == dir || point.starts_with(dir + "/")) {
      out.push_back("mount " + point);
    }
  }
  for (const auto& dev : Entries("/sys/block")) {
    const std::string backing = ReadFile("/sys/block/" + dev + "/loop/backing_file");
    if (backing.starts_with(dir + "/")) {
      out.push_back("loop device " + dev + " on " + backing);
    }
  }
  if (backend == "docker" && ContainerIds(d.backend_state()).count(id) != 0) {
    out.push_back("container agentbox-" + id);
  }
  return out;
}

}  // namespace crash
