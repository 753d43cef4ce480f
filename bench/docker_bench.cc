// The docker backend beside plain Docker, side by side in one run (docs/benchmarks.md):
//
//   1. create -> first exec, cold: DockerBackend::Create (container create + start + guest
//      health) and the first `shell/exec true` over the guest's socket, against
//      `docker run --rm --network none IMAGE true` (peers.md: 195 ms);
//   2. exec round trip: `shell/exec true` to a running sandbox's guest over one keep-alive
//      connection, against `docker exec CONTAINER true` on the same container (peers.md: 69 ms).
//
// It also times Probe() (GET /_ping + image inspect), which the selector pays whenever its
// cached probe has expired. The two sides alternate iteration by iteration so that load from
// elsewhere hits both alike.
//
//   agentbox-docker-bench [--creates N] [--execs M] [--image REF] [--docker-cli PATH]
//
// Needs a Docker engine (DOCKER_HOST or /var/run/docker.sock) and the image. Prints figures; it
// is a benchmark program, not a test.
#include <curl/curl.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "backends/docker/docker_backend.h"
#include "common/log.h"

extern char** environ;

namespace {

using namespace agentbox;
using namespace agentbox::docker;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Pct(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// Runs argv to completion with stdout/stderr discarded; returns its exit status or -1.
int Run(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    return -1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

// One keep-alive connection to a guest.
class GuestConn {
 public:
  explicit GuestConn(const SandboxInfo& info)
      : sock_(info.guest_endpoint.substr(5)), c_(curl_easy_init()) {
    headers_ = curl_slist_append(nullptr, ("X-Access-Token: " + info.guest_token).c_str());
    headers_ = curl_slist_append(headers_, "Content-Type: application/json");
    curl_easy_setopt(c_, CURLOPT_UNIX_SOCKET_PATH, sock_.c_str());
    curl_easy_setopt(c_, CURLOPT_URL, "http://guest/api/v1/shell/exec");
    curl_easy_setopt(c_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(c_, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c_, CURLOPT_WRITEDATA, &out_);
  }
  ~GuestConn() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(c_);
  }
  // shell/exec `true` in session s; true when it completed with returncode 0.
  bool ExecTrue() {
    static const std::string body = R"({"id":"s","command":"true","wait_seconds":30})";
    out_.clear();
    curl_easy_setopt(c_, CURLOPT_POSTFIELDS, body.c_str());
    if (curl_easy_perform(c_) != CURLE_OK) {
      return false;
    }
    return out_.find("\"returncode\":0") != std::string::npos;
  }

 private:
  std::string sock_;
  CURL* c_;
  curl_slist* headers_ = nullptr;
  std::string out_;
};

std::string Line(const char* cmd) {
  std::string out;
  if (FILE* f = ::popen(cmd, "r")) {
    char buf[256];
    if (std::fgets(buf, sizeof(buf), f)) {
      out = buf;
    }
    ::pclose(f);
  }
  while (!out.empty() && out.back() == '\n') {
    out.pop_back();
  }
  return out;
}

void Report(const char* what, const std::vector<double>& ours, const char* peer_name,
            const std::vector<double>& peer) {
  std::printf("| %s | %.1f (p90 %.1f) | %s %.1f (p90 %.1f) | %.2fx |\n", what, Median(ours),
              Pct(ours, 0.9), peer_name, Median(peer), Pct(peer, 0.9),
              Median(ours) > 0 ? Median(peer) / Median(ours) : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  int creates = 10;
  int execs = 30;
  std::string image = "agentbox/base:latest";
  std::string cli = ::access("/usr/bin/docker", X_OK) == 0 ? "/usr/bin/docker" : "docker";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--creates") {
      creates = std::atoi(argv[i + 1]);
    } else if (a == "--execs") {
      execs = std::atoi(argv[i + 1]);
    } else if (a == "--image") {
      image = argv[i + 1];
    } else if (a == "--docker-cli") {
      cli = argv[i + 1];
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  SetLogLevel(LogLevel::kWarn);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  char tmpl[] = "/tmp/agentbox-docker-bench-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  DockerBackendOptions o;
  o.state_dir = std::string(tmpl) + "/docker";
  const char* host = std::getenv("DOCKER_HOST");
  auto sock = SocketFromDockerHost(host ? host : "");
  if (!sock) {
    std::fprintf(stderr, "%s\n", sock.error().message.c_str());
    return 1;
  }
  o.socket_path = *sock;
  o.guest_binary = AGENTBOX_GUEST_BINARY;
  o.default_image = image;
  DockerBackend backend(o);
  if (ProbeResult p = backend.Probe(); !p.usable) {
    std::fprintf(stderr, "docker backend not usable: %s\n", p.reason.c_str());
    return 1;
  }

  std::time_t now = std::time(nullptr);
  char date[64];
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::printf(
      "date: %s\nnproc: %ld\ncpu: %s\nkernel: %s\nengine: %s\ndocker cli: %s (%s)\n", date,
      ::sysconf(_SC_NPROCESSORS_ONLN),
      Line("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'").c_str(),
      Line("uname -r").c_str(),
      Line(("'" + cli + "' version --format '{{.Server.Version}}' 2>/dev/null").c_str()).c_str(),
      cli.c_str(),
      Line(("'" + cli + "' version --format '{{.Client.Version}}' 2>/dev/null").c_str()).c_str());
  std::printf("load average before: %s\n", Line("cut -d' ' -f1-3 /proc/loadavg").c_str());

  std::vector<double> probe_ms;
  for (int i = 0; i < 20; ++i) {
    const auto t0 = Clock::now();
    (void)backend.Probe();
    probe_ms.push_back(Ms(Clock::now() - t0));
  }

  // Warm both paths once (image layers in the page cache, CLI binary loaded).
  Run({cli, "run", "--rm", "--network", "none", image, "true"});

  std::vector<double> create_ms, first_exec_ms, total_ms, destroy_ms, run_ms;
  for (int i = 0; i < creates; ++i) {
    const std::string id = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(i);
    const auto t0 = Clock::now();
    auto info = backend.Create(id, SandboxSpec{});
    if (!info) {
      std::fprintf(stderr, "create failed: %s\n", info.error().message.c_str());
      return 1;
    }
    const auto t1 = Clock::now();
    {
      GuestConn g(*info);
      if (!g.ExecTrue()) {
        std::fprintf(stderr, "first exec failed\n");
        return 1;
      }
    }
    const auto t2 = Clock::now();
    if (auto r = backend.Destroy(id); !r) {
      std::fprintf(stderr, "destroy failed: %s\n", r.error().message.c_str());
      return 1;
    }
    const auto t3 = Clock::now();
    create_ms.push_back(Ms(t1 - t0));
    first_exec_ms.push_back(Ms(t2 - t1));
    total_ms.push_back(Ms(t2 - t0));
    destroy_ms.push_back(Ms(t3 - t2));

    const auto r0 = Clock::now();
    if (Run({cli, "run", "--rm", "--network", "none", image, "true"}) != 0) {
      std::fprintf(stderr, "docker run failed\n");
      return 1;
    }
    run_ms.push_back(Ms(Clock::now() - r0));
  }

  const std::string id = "bench-" + std::to_string(::getpid()) + "-exec";
  auto info = backend.Create(id, SandboxSpec{});
  if (!info) {
    std::fprintf(stderr, "create failed: %s\n", info.error().message.c_str());
    return 1;
  }
  std::vector<double> guest_ms, docker_exec_ms;
  {
    GuestConn g(*info);
    g.ExecTrue();  // the session's first command starts its shell: not a round trip
    for (int i = 0; i < execs; ++i) {
      const auto t0 = Clock::now();
      if (!g.ExecTrue()) {
        std::fprintf(stderr, "exec failed\n");
        return 1;
      }
      guest_ms.push_back(Ms(Clock::now() - t0));
      const auto d0 = Clock::now();
      if (Run({cli, "exec", ContainerName(id), "true"}) != 0) {
        std::fprintf(stderr, "docker exec failed\n");
        return 1;
      }
      docker_exec_ms.push_back(Ms(Clock::now() - d0));
    }
  }
  (void)backend.Destroy(id);
  (void)RemoveTree(tmpl);

  std::printf("load average after: %s\n\n", Line("cut -d' ' -f1-3 /proc/loadavg").c_str());
  std::printf(
      "| measure (ms, median of n) | agentbox docker backend | plain Docker | Docker / agentbox "
      "|\n");
  std::printf("|---|---|---|---|\n");
  Report(("create -> first exec, cold (n=" + std::to_string(creates) + ")").c_str(), total_ms,
         "`docker run --rm --network none IMAGE true`", run_ms);
  Report(("exec round trip (n=" + std::to_string(execs) + ")").c_str(), guest_ms,
         "`docker exec CONTAINER true`", docker_exec_ms);
  std::printf(
      "\nof create -> first exec: create (container create + start + guest health) %.1f, "
      "first exec %.1f; destroy %.1f (not timed above)\n",
      Median(create_ms), Median(first_exec_ms), Median(destroy_ms));
  std::printf("Probe() (GET /_ping + default image inspect): %.2f ms median of 20\n",
              Median(probe_ms));
  return 0;
}
