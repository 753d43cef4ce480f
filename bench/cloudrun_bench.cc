// The cloudrun backend's own cost in job mode, against a private agentbox-gcp-emulator with no
// injected delay (docs/benchmarks.md "cloudrun"):
//   * per exec: total time of shell/exec minus the execution's own run time (the emulator's
//     createTime -> completionTime, i.e. the container's start, run-once and exit), p50/p90;
//   * a file operation (file/read of 1 KiB, file/write of 1 KiB) served from Cloud Storage;
//   * the size of a typical session snapshot (the run-once result the next command reads);
//   * Google API calls per exec (Storage + Run, counted by the clients' transports).
// The backend runs in this process exactly as in agentboxd (its guest API on a unix socket);
// requests go to that socket with libcurl, so agentboxd's own forwarding hop (one unix-socket
// relay) is not included.
#include <curl/curl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "backends/cloudrun/cloudrun_backend.h"
#include "backends/cloudrun/gcp_cloud.h"
#include "backends/cloudrun/layout.h"
#include "common/config.h"
#include "common/json_util.h"
#include "common/log.h"

namespace {

using agentbox::Json;
using Clock = std::chrono::steady_clock;

size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

struct Http {
  CURL* c = curl_easy_init();
  ~Http() { curl_easy_cleanup(c); }
  // POST/GET over a unix socket (when given) or TCP; returns the parsed body.
  Json Call(const std::string& socket, const std::string& method, const std::string& url,
            const std::string& body, const std::vector<std::string>& headers, long* status) {
    std::string out;
    curl_slist* h = nullptr;
    for (const auto& x : headers) {
      h = curl_slist_append(h, x.c_str());
    }
    curl_easy_reset(c);
    if (!socket.empty()) {
      curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
    }
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method != "GET") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    return Json::parse(out, nullptr, false);
  }
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Rfc3339Ms(const std::string& s) {
  std::tm tm{};
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  double ms = static_cast<double>(timegm(&tm)) * 1000;
  if (rest && *rest == '.') {
    ms += std::stod(std::string("0") + rest) * 1000;
  }
  return ms;
}

void Report(const std::string& name, std::vector<double> v, const char* unit = "ms") {
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) { return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]; };
  std::printf("%-44s p50 %8.2f %s  p90 %8.2f %s  min %8.2f  max %8.2f  n %zu\n", name.c_str(),
              pct(0.5), unit, pct(0.9), unit, v.front(), v.back(), v.size());
}

}  // namespace

int main(int argc, char** argv) {
  const int execs = argc > 1 ? std::atoi(argv[1]) : 30;
  const int file_ops = argc > 2 ? std::atoi(argv[2]) : 300;
  const std::string image = std::getenv("AGENTBOX_CLOUDRUN_IMAGE")
                                ? std::getenv("AGENTBOX_CLOUDRUN_IMAGE")
                                : "agentbox/base:latest";
  agentbox::SetLogLevel(agentbox::LogLevel::kWarn);
  char tmpl[] = "/tmp/agentbox-cloudrun-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);

  // The emulator, on a free port.
  int out[2];
  if (pipe(out) != 0) {
    return 1;
  }
  pid_t emu = fork();
  if (emu == 0) {
    dup2(out[1], STDOUT_FILENO);
    FILE* f = freopen((dir + "/emulator.log").c_str(), "a", stderr);
    (void)f;
    execl(AGENTBOX_GCP_EMULATOR_BIN, AGENTBOX_GCP_EMULATOR_BIN, "--listen", "tcp:127.0.0.1:0",
          "--data", (dir + "/data").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char ch;
  while (line.find('\n') == std::string::npos && read(out[0], &ch, 1) == 1) {
    line += ch;
  }
  const std::string url = line.substr(line.find("http://"), line.find('\n') - line.find("http://"));
  Http http;
  long status = 0;
  http.Call("", "POST", url + "/storage/v1/b?project=bench-project", R"({"name":"bench-bucket"})",
            {"Authorization: Bearer bench", "Content-Type: application/json"}, &status);
  if (status != 200) {
    std::cerr << "bucket create failed: " << status << "\n";
    return 1;
  }

  agentbox::Config::Sources src;
  src.use_environment = false;
  src.overrides = {
      {"SANDBOX_GCP_PROJECT", "bench-project"},
      {"SANDBOX_GCS_BUCKET", "bench-bucket"},
      {"AGENTBOX_CLOUDRUN_IMAGE", image},
      {"AGENTBOX_CLOUDRUN_ENDPOINT", url},
      {"STORAGE_EMULATOR_HOST", url},
      {"GOOGLE_OAUTH_ACCESS_TOKEN", "bench"},
      {"AGENTBOX_CLOUDRUN_POLL_MS",
       std::getenv("AGENTBOX_CLOUDRUN_POLL_MS") ? std::getenv("AGENTBOX_CLOUDRUN_POLL_MS") : "10"}};
  auto cfg = agentbox::Config::Load(src);
  auto opts = agentbox::cloudrun::OptionsFromConfig(*cfg, dir + "/state", AGENTBOX_GUEST_BINARY);
  auto cloud = agentbox::cloudrun::MakeGcpCloud(*cfg, opts->project, opts->region, opts->bucket);
  if (!opts || !cloud) {
    std::cerr << "configuration failed\n";
    return 1;
  }
  ::mkdir((dir + "/state").c_str(), 0700);
  int rc = 0;
  {
    agentbox::cloudrun::CloudRunBackend backend(*opts, *cloud);
    auto info = backend.Create("bench", agentbox::SandboxSpec{});
    if (!info) {
      std::cerr << "create failed: " << info.error().message << "\n";
      return 1;
    }
    const std::string sock = backend.SocketPath();
    const std::vector<std::string> hdr = {"X-Access-Token: " + info->guest_token,
                                          "Content-Type: application/json"};
    auto api = [&](const std::string& op, const Json& body) {
      long st = 0;
      Json r = http.Call(sock, "POST", "http://guest/api/v1/" + op, body.dump(), hdr, &st);
      if (st != 200) {
        std::cerr << op << " answered " << st << ": " << r.dump() << "\n";
        std::exit(1);
      }
      return r["data"];
    };
    // A typical session: a directory, a few exported variables, a function and an alias.
    api("shell/exec", {{"id", "s"},
                       {"command",
                        "mkdir -p /workspace/proj && cd /workspace/proj && export "
                        "VIRTUAL_ENV=/workspace/proj/.venv PROJECT=demo DEBUG=1 && COUNT=3 && "
                        "greet() { echo hello $1; } && alias ll='ls -la'"},
                       {"wait_seconds", 120}});

    std::vector<double> total;
    std::vector<double> own;
    std::vector<double> calls;
    const std::string job = "projects/bench-project/locations/us-central1/jobs/" +
                            agentbox::cloudrun::layout::JobId("bench");
    for (int i = 0; i < execs; ++i) {
      const uint64_t before = backend.GoogleCalls();
      const auto t0 = Clock::now();
      Json d = api("shell/exec",
                   {{"id", "s"}, {"command", "greet " + std::to_string(i)}, {"wait_seconds", 120}});
      total.push_back(Ms(Clock::now() - t0));
      if (d["output"] != "hello " + std::to_string(i) + "\n") {
        std::cerr << "unexpected output: " << d.dump() << "\n";
        return 1;
      }
      // Calls made after the answer (recording the execution name, deleting the replaced
      // snapshot) belong to this exec too: let them land before counting.
      usleep(100000);
      calls.push_back(static_cast<double>(backend.GoogleCalls() - before));
    }
    // The executions' own run times, from the emulator (newest first or not: match by time).
    long st = 0;
    Json list = http.Call("", "GET", url + "/v2/" + job + "/executions?pageSize=1000", "",
                          {"Authorization: Bearer bench"}, &st);
    std::vector<double> runs;
    for (const auto& e : list["executions"]) {
      runs.push_back(Rfc3339Ms(e.value("completionTime", "")) -
                     Rfc3339Ms(e.value("createTime", "")));
    }
    // The last `execs` executions by creation time are the timed ones.
    std::vector<std::pair<std::string, double>> by_time;
    for (const auto& e : list["executions"]) {
      by_time.push_back({e.value("createTime", ""), Rfc3339Ms(e.value("completionTime", "")) -
                                                        Rfc3339Ms(e.value("createTime", ""))});
    }
    std::sort(by_time.begin(), by_time.end());
    by_time.erase(by_time.begin(), by_time.end() - execs);
    for (int i = 0; i < execs; ++i) {
      own.push_back(total[static_cast<size_t>(i)] - by_time[static_cast<size_t>(i)].second);
    }

    std::vector<double> reads;
    std::vector<double> writes;
    std::string kib;
    for (int i = 0; kib.size() < 1024; ++i) {
      kib += "line " + std::to_string(i) + " of the benchmark file\n";
    }
    kib.resize(1024);
    api("file/write", {{"file", "/workspace/proj/f.txt"}, {"content", kib}});
    for (int i = 0; i < file_ops; ++i) {
      auto t0 = Clock::now();
      api("file/write", {{"file", "/workspace/proj/f.txt"}, {"content", kib}});
      writes.push_back(Ms(Clock::now() - t0));
      t0 = Clock::now();
      Json d = api("file/read", {{"file", "/workspace/proj/f.txt"}, {"max_length", 4096}});
      reads.push_back(Ms(Clock::now() - t0));
      if (d["content"] != kib) {
        std::cerr << "read returned something else\n";
        return 1;
      }
    }
    uint64_t before = backend.GoogleCalls();
    api("file/read", {{"file", "/workspace/proj/f.txt"}});
    const uint64_t read_calls = backend.GoogleCalls() - before;
    before = backend.GoogleCalls();
    api("file/write", {{"file", "/workspace/proj/f.txt"}, {"content", kib}});
    const uint64_t write_calls = backend.GoogleCalls() - before;

    Json state = api("shell/state", {{"id", "s"}});
    const std::string snapshot = agentbox::DumpJson(state["state"]);

    std::printf("cloudrun job mode against agentbox-gcp-emulator (%s), image %s, poll %s ms\n",
                url.c_str(), image.c_str(), src.overrides["AGENTBOX_CLOUDRUN_POLL_MS"].c_str());
    Report("shell/exec total (client)", total);
    Report("  execution's own run time (emulator)", [&] {
      std::vector<double> v;
      for (auto& p : by_time) {
        v.push_back(p.second);
      }
      return v;
    }());
    Report("  daemon's own cost (total - own run time)", own);
    Report("Google API calls per exec", calls, "  ");
    Report("file/read 1 KiB", reads);
    Report("file/write 1 KiB", writes);
    std::printf("Google API calls: file/read %llu, file/write %llu\n",
                static_cast<unsigned long long>(read_calls),
                static_cast<unsigned long long>(write_calls));
    std::printf("session snapshot (state JSON) %zu bytes: %s\n", snapshot.size(), snapshot.c_str());
    if (!backend.Destroy("bench")) {
      rc = 1;
    }
  }
  kill(emu, SIGTERM);
  waitpid(emu, nullptr, 0);
  std::string cmd = "rm -rf '" + dir + "'";
  rc |= system(cmd.c_str()) != 0;
  return rc;
}
