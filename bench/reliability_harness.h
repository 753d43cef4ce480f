#pragma once

// Shared by the soak, churn and hostile-sandbox benchmarks (docs/reliability.md §3, §4): a
// keep-alive HTTP client over agentboxd's unix socket, samples of the daemon's resident memory,
// open descriptors and threads, latency percentiles, and the start every bench makes of its
// agentboxd (StartDaemon). The daemon itself, and what a sandbox can leave on the host, come from
// the crash suite's harness (tests/crash/crash_harness.h).
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "crash_harness.h"

namespace reliability {

using crash::Json;
using crash::SteadyClock;
using namespace std::chrono_literals;

struct Answer {
  long status = 0;  // 0: no answer (transport error, see `error`)
  std::string body;
  std::string error;
  double ms = 0;
  Json data() const {
    const Json j = Json::parse(body, nullptr, false);
    return j.is_object() && j.contains("data") ? j["data"] : Json();
  }
  std::string message() const {
    const Json j = Json::parse(body, nullptr, false);
    return j.is_object() && j.contains("message") && j["message"].is_string()
               ? j["message"].get<std::string>()
               : body.substr(0, 200);
  }
};

// One keep-alive connection to agentboxd's unix socket. Not thread-safe: one per client thread.
class Client {
 public:
  explicit Client(std::string socket) : socket_(std::move(socket)), c_(curl_easy_init()) {}
  ~Client() { curl_easy_cleanup(c_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // `body` is JSON unless `content_type` says otherwise; `max_keep` bounds what is kept of the
  // answer's body (the rest is counted in `received` and dropped). With `stop_at`, the answer
  // ends (the connection is dropped) once its body contains it: an event stream never ends.
  Answer Call(const std::string& method, const std::string& path, const std::string& body = "",
              long timeout_s = 60, const std::string& content_type = "application/json",
              size_t max_keep = 8 << 20, const std::string& stop_at = "") {
    Answer a;
    Sink sink{&a.body, max_keep, 0, stop_at, false};
    curl_easy_reset(c_);
    curl_easy_setopt(c_, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
    const std::string url = "http://agentboxd" + path;
    curl_easy_setopt(c_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_slist* headers = nullptr;
    if (method != "GET" && method != "DELETE") {
      headers = curl_slist_append(headers, ("Content-Type: " + content_type).c_str());
      curl_easy_setopt(c_, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(c_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
    curl_easy_setopt(c_, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c_, CURLOPT_WRITEFUNCTION, &Sink::Write);
    curl_easy_setopt(c_, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c_, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c_, CURLOPT_NOSIGNAL, 1L);
    const auto start = SteadyClock::now();
    const CURLcode rc = curl_easy_perform(c_);
    a.ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
    if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && sink.stopped)) {
      curl_easy_getinfo(c_, CURLINFO_RESPONSE_CODE, &a.status);
    } else {
      a.error = curl_easy_strerror(rc);
    }
    received_ = sink.total;
    curl_slist_free_all(headers);
    return a;
  }

  // Bytes of the last answer's body, kept or not.
  uint64_t received() const { return received_; }

 private:
  struct Sink {
    std::string* out;
    size_t keep;
    uint64_t total;
    std::string stop_at;
    bool stopped;
    static size_t Write(char* p, size_t s, size_t n, void* self) {
      auto* k = static_cast<Sink*>(self);
      const size_t len = s * n;
      k->total += len;
      if (k->out->size() < k->keep) {
        k->out->append(p, std::min(len, k->keep - k->out->size()));
      }
      if (!k->stop_at.empty() && k->out->find(k->stop_at) != std::string::npos) {
        k->stopped = true;
        return 0;  // ends the transfer
      }
      return len;
    }
  };
  std::string socket_;
  CURL* c_;
  uint64_t received_ = 0;
};

// The daemon's resources at one moment (from /proc/PID).
struct Sample {
  double t = 0;  // seconds since the run started
  long rss_kb = 0;
  long fds = 0;
  long threads = 0;
};

inline Sample SampleOf(pid_t pid, double t) {
  Sample s;
  s.t = t;
  std::istringstream status(crash::ReadFile("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:")) {
      s.rss_kb = std::atol(line.c_str() + 6);
    } else if (line.starts_with("Threads:")) {
      s.threads = std::atol(line.c_str() + 8);
    }
  }
  s.fds = static_cast<long>(crash::Entries("/proc/" + std::to_string(pid) + "/fd").size());
  return s;
}

// The q-quantile (0..1) of `v`, nearest rank; 0 when empty.
inline double Percentile(std::vector<double> v, double q) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(rank, v.size() - 1)];
}

inline std::string Quote(const std::string& s) { return Json(s).dump(); }

// The machine, for the figures (docs/reliability.md records it with each run).
inline std::string MachineLine() {
  std::string cpu;
  std::istringstream info(crash::ReadFile("/proc/cpuinfo"));
  for (std::string line; std::getline(info, line);) {
    if (line.starts_with("model name")) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);
  std::string load = crash::ReadFile("/proc/loadavg");
  load = load.substr(0, load.find(' ', load.find(' ', load.find(' ') + 1) + 1));
  return cpu + ", " + std::to_string(cores) + " cores, load " + load;
}

// Exit code for "skipped" (CTest's SKIP_RETURN_CODE).
constexpr int kSkipped = 77;

// Starts a bench's agentboxd `d` on `backend`. Returns 0 when it is up and /readyz says it runs
// `backend`; otherwise what main returns, after saying why: kSkipped when the jail backend cannot
// run here (it needs root for id ranges, cgroups and loop devices) or /readyz says `backend` is
// not usable, 2 when agentboxd did not start (its log on stderr).
inline int StartDaemon(crash::Daemon& d, const std::string& backend) {
  if (geteuid() != 0) {
    std::printf("SKIPPED: needs root (jail id ranges, cgroups, loop devices)\n");
    return kSkipped;
  }
  if (!d.Start("", 0)) {
    std::cerr << "agentboxd did not start: " << d.LogText() << "\n";
    return 2;
  }
  const Json ready = Json::parse(Client(d.socket()).Call("GET", "/readyz").body, nullptr, false);
  if (!ready.is_object() || ready["data"]["backend"] != backend) {
    std::printf("SKIPPED: backend %s is not usable here: %s\n", backend.c_str(),
                ready.dump().c_str());
    return kSkipped;
  }
  return 0;
}

}  // namespace reliability
