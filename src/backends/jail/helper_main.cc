// agentbox-jail: the single-threaded helper that builds one jail and supervises it.
//
//   agentbox-jail run CONFIG_FILE   builds the jail described by CONFIG_FILE (a JailConfig as
//                                   JSON), starts its first process, prints one JSON line on
//                                   stdout ({"ok":true,"init_pid":N,"cgroups":[...]} or
//                                   {"ok":false,"error":"..."}), then stays as the jail's parent
//                                   until the jail ends, copying the jail's output to stderr (the
//                                   sandbox's log, capped), and removes its cgroups.
//   agentbox-jail probe [DIR]       prints {"usable":..,"reason":..,"limitations":[..],
//                                   "overlay_root":{"ok":..,"how":..,"error":..}}; the overlay
//                                   root is tried in a scratch directory made (and removed) in
//                                   DIR (the state directory: its filesystem holds the uppers).
//
// The jail dies with this process (PR_SET_PDEATHSIG), and SIGTERM/SIGINT/SIGHUP here kill it:
// the helper's pid stands for the whole sandbox. stdout is left open after the report so the
// starter sees EOF exactly when the helper (and with it the jail) is gone.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "backends/jail/contain.h"
#include "backends/jail/jail_config.h"
#include "backends/jail/rootfs.h"
#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"

namespace {

using agentbox::DumpJson;
using agentbox::Json;
using agentbox::LogLevel;

volatile sig_atomic_t g_init_pid = 0;

void KillJail(int) {
  if (g_init_pid > 0) {
    ::kill(g_init_pid, SIGKILL);
  }
}

void PrintLine(const Json& j) {
  const std::string line = DumpJson(j) + "\n";
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(STDOUT_FILENO, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;  // nobody is reading: the jail still runs and is found again from its state
    }
    off += static_cast<size_t>(n);
  }
}

int Run(const char* config_path) {
  const auto started = std::chrono::steady_clock::now();
  std::ifstream in(config_path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    PrintLine({{"ok", false}, {"error", std::string("cannot read ") + config_path}});
    return 2;
  }
  auto json = agentbox::ParseJsonObject(text.str());
  if (!json) {
    PrintLine({{"ok", false}, {"error", json.error().message}});
    return 2;
  }
  auto cfg = agentbox::jail::JailConfigFromJson(*json);
  if (!cfg) {
    PrintLine({{"ok", false}, {"error", cfg.error().message}});
    return 2;
  }
  // Signals that would end the helper end the jail first, so its cgroups are removed below.
  struct sigaction sa {};
  sa.sa_handler = KillJail;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    ::sigaction(sig, &sa, nullptr);
  }
  ::signal(SIGPIPE, SIG_IGN);

  auto jail = agentbox::jail::Contain(*cfg);
  if (!jail) {
    agentbox::Log(LogLevel::kError, "jail.failed", "id={} error=\"{}\"", cfg->id,
                  jail.error().message);
    PrintLine({{"ok", false}, {"error", jail.error().message}});
    return 1;
  }
  g_init_pid = jail->pid();
  agentbox::Log(
      LogLevel::kInfo, "jail.started", "id={} init_pid={} setup_ms={:.2f}", cfg->id, jail->pid(),
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
          .count());
  PrintLine({{"ok", true}, {"init_pid", jail->pid()}, {"cgroups", jail->cgroup_paths()}});
  const int status = jail->Wait(STDERR_FILENO, cfg->log_cap_bytes);
  g_init_pid = 0;
  agentbox::Log(LogLevel::kInfo, "jail.ended", "id={} {}={}", cfg->id,
                WIFSIGNALED(status) ? "signal" : "exit_code",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  return 0;
}

int Probe(const char* scratch_parent) {
  const auto p = agentbox::jail::ProbeContain();
  Json overlay = Json::object();
  if (p.usable) {
    std::string tmpl = std::string(scratch_parent) + "/.probe-XXXXXX";
    std::string error;
    if (::mkdtemp(tmpl.data()) == nullptr) {
      error = std::string("cannot make a scratch directory in ") + scratch_parent + ": " +
              std::strerror(errno);
    } else {
      error = agentbox::jail::ProbeOverlayRoot(tmpl);
      (void)agentbox::RemoveTree(tmpl);
    }
    overlay = {{"ok", error.empty()},
               {"how", agentbox::jail::OverlayRootDescription(::geteuid() == 0)},
               {"error", error}};
  }
  PrintLine({{"usable", p.usable},
             {"reason", p.reason},
             {"limitations", p.limitations},
             {"overlay_root", overlay}});
  return p.usable ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "run") == 0) {
    return Run(argv[2]);
  }
  if ((argc == 2 || argc == 3) && std::strcmp(argv[1], "probe") == 0) {
    return Probe(argc == 3 ? argv[2] : "/tmp");
  }
  std::fprintf(stderr, "usage: agentbox-jail run CONFIG_FILE | agentbox-jail probe [DIR]\n");
  return 2;
}
