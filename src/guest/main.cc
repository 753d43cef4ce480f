// agentbox-guest: the in-sandbox server (serve) and the one-command executor (run-once).
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include "common/guarded.h"
#include "common/log.h"
#include "common/log_budget.h"
#include "common/sched_slice.h"
#include "common/time_util.h"
#include "guest/core/read_only_root.h"
#include "guest/core/self_protect.h"
#include "guest/core/spawn.h"
#include "guest/guest_api.h"
#include "guest/run_once.h"
#include "guest/supervisor/service_supervisor.h"
#include "guest/supervisor_api.h"
#include "guest/tunnel_client.h"

namespace {

using namespace agentbox;
using namespace agentbox::guest;

bool IsDir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

struct ServeArgs {
  std::vector<std::string> listen;
  std::vector<std::string> services;  // NAME=COMMAND
  std::string connect;  // ws://... : serve through a tunnel to agentboxd (docs/tunnel.md)
  std::string ca_file;
  std::string token;
  std::string token_file;
  std::string workdir;
  std::string shell;
  std::string log_level = "info";
  uint64_t output_cap = 1 << 20;
  uint64_t max_body = 16ull << 20;
  uint64_t max_upload = 1ull << 30;
  uint64_t max_file = 64ull << 20;
  size_t max_sessions = 256;
  uint64_t log_budget = 16ull << 20;
  int file_threads = 2;
  bool prewarm = true;
};

int Serve(ServeArgs a) {
  // First, before any thread or child exists: the sandbox's processes must not be able to
  // trace, stop or read the guest (its children become dumpable again when they exec).
  if (auto r = ProtectFromSandbox(); !r) {
    std::cerr << "agentbox-guest: " << r.error().message << "\n";
    return 2;
  }
  if (a.log_level == "debug") {
    SetLogLevel(LogLevel::kDebug);
  } else if (a.log_level == "warn") {
    SetLogLevel(LogLevel::kWarn);
  }
  // The guest's stderr is a file on the host (jail.log, the container's log) and the sandbox's
  // requests make the guest write to it: bounded, so that it cannot fill the host's disk.
  SetLogBudget(a.log_budget, 4096);
  // A short scheduler slice, inherited by everything the sandbox runs (its shells, processes):
  // a CPU-bound loop in one sandbox then yields to another's woken work within 0.1 ms
  // (common/sched_slice.h). Best effort: older kernels keep their default.
  (void)RequestSchedulerSlice(kShortSchedulerSlice);
  if (a.token.empty() && !a.token_file.empty()) {
    std::ifstream in(a.token_file);
    std::getline(in, a.token);
    if (a.token.empty()) {
      std::cerr << "agentbox-guest: token file '" << a.token_file << "' is empty or unreadable\n";
      return 2;
    }
  }
  if (a.token.empty()) {
    if (const char* t = std::getenv("AGENTBOX_GUEST_TOKEN")) {
      a.token = t;
    }
  }
  ::unsetenv("AGENTBOX_GUEST_TOKEN");  // never inherited by sessions
  std::vector<ServiceSpec> services;
  for (const auto& flag : a.services) {
    auto s = ParseServiceFlag(flag);
    if (!s) {
      std::cerr << "agentbox-guest: " << s.error().message << "\n";
      return 2;
    }
    services.push_back(std::move(*s));
  }
  if (const char* env = std::getenv("AGENTBOX_SERVICES"); env && *env) {
    auto parsed = ParseServicesJson(env);
    if (!parsed) {
      std::cerr << "agentbox-guest: " << parsed.error().message << "\n";
      return 2;
    }
    services.insert(services.end(), parsed->begin(), parsed->end());
  }
  ::unsetenv("AGENTBOX_SERVICES");  // the guest's configuration, not the sessions' environment
  if (auto r = CheckServices(services); !r) {
    std::cerr << "agentbox-guest: " << r.error().message << "\n";
    return 2;
  }
  const double started_unix = NowUnix();
  auto shell = DetectShell(a.shell);
  if (!shell) {
    std::cerr << "agentbox-guest: " << shell.error().message << "\n";
    return 2;
  }
  std::string workdir = a.workdir;
  if (workdir.empty()) {
    char buf[4096];
    workdir = IsDir("/workspace") ? "/workspace" : (::getcwd(buf, sizeof(buf)) ? buf : "/");
  }
  if (!IsDir(workdir)) {
    std::cerr << "agentbox-guest: workdir '" << workdir << "' is not a directory\n";
    return 2;
  }

  boost::asio::io_context io(1);
  ChildReaper reaper(io);
  SessionState initial;
  initial.shell = shell->kind;
  initial.cwd = workdir;
  for (const auto& kv : CurrentEnvironment()) {
    const size_t eq = kv.find('=');
    if (eq != std::string::npos && eq > 0) {
      initial.env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  initial.env.erase("PWD");
  initial.env.erase("OLDPWD");
  if (!initial.env.count("PATH")) {
    initial.env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  }
  SessionConfig scfg;
  scfg.shell = *shell;
  scfg.output_cap = a.output_cap;
  const char* user = std::getenv("USER");
  scfg.user = user ? user : (::geteuid() == 0 ? "root" : "user");
  char host[256] = "sandbox";
  ::gethostname(host, sizeof(host) - 1);
  scfg.hostname = host;
  SessionManager sessions(io, reaper, scfg, initial, a.max_sessions);
  ProcessManager processes(io, reaper, *shell, a.output_cap, 1024);
  std::vector<std::string> exec_env;
  for (const auto& [k, v] : initial.env) {
    exec_env.push_back(k + "=" + v);
  }
  ExecManager exec(io, reaper, std::move(exec_env));

  GuestOptions go;
  go.token = a.token;
  go.output_cap = a.output_cap;
  go.max_sessions = a.max_sessions;
  go.file_threads = a.file_threads;
  go.files.base_dir = workdir;
  go.files.max_file_bytes = a.max_file;
  go.files.max_upload_bytes = a.max_upload;
  go.files.can_escalate = ::geteuid() == 0;
  GuestApi api(io, reaper, sessions, processes, exec, go);
  ServiceSupervisor supervisor(io, processes, sessions, std::move(services));
  SupervisorApi supervisor_api(supervisor, started_unix);
  api.SetSupervisor(&supervisor_api);

  http::ServerOptions so;
  so.max_body_bytes = a.max_body;
  so.max_stream_bytes = a.max_upload + (1 << 20);  // multipart framing on top of the file
  so.error_body = &GuestApi::ErrorBody;
  http::Server server(io, api, so);
  if (a.prewarm) {
    // Before listening: bash initialises on the other core while the guest finishes starting
    // and its client waits for the socket, so the first command finds a ready shell.
    sessions.EnablePrewarm();
  }
  if (a.listen.empty() && a.connect.empty()) {
    a.listen.push_back("tcp:127.0.0.1:8080");
  }
  for (const auto& l : a.listen) {
    auto bound = server.Listen(l);
    if (!bound) {
      std::cerr << "agentbox-guest: " << bound.error().message << "\n";
      return 2;
    }
    Log(LogLevel::kInfo, "guest.listening", "address={} shell={} workdir={} auth={}", *bound,
        shell->path, workdir, a.token.empty() ? "none" : "token");
  }

  std::unique_ptr<TunnelClient> tunnel;
  if (!a.connect.empty()) {
    if (a.token.empty()) {
      std::cerr << "agentbox-guest: --connect needs a token (--token-file or --token)\n";
      return 2;
    }
    tunnel = std::make_unique<TunnelClient>(io, server,
                                            TunnelClientOptions{a.connect, a.token, a.ca_file});
    if (auto r = tunnel->Start(); !r) {
      std::cerr << "agentbox-guest: " << r.error().message << "\n";
      return 2;
    }
    Log(LogLevel::kInfo, "guest.connecting", "url={} shell={} workdir={}", a.connect, shell->path,
        workdir);
  }

  (void)supervisor.StartAll();  // each start (or failure) is logged; status reports it

  // SIGTERM/SIGINT from the host (docker stop, the jail helper) stop the guest; the same
  // signals sent to pid 1 by the sandbox's own processes are ignored.
  ShutdownSignals stop(io, {SIGTERM, SIGINT});
  stop.AsyncWait([&](int sig) {
    Log(LogLevel::kInfo, "guest.stopping", "signal={}", sig);
    server.Stop();
    if (tunnel) {
      tunnel->Stop();
    }
    sessions.ShutdownAll();
    processes.KillAll();
    exec.KillAll();
    io.stop();
  });
  RunGuarded(io, "guest.io");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // A read-only root, or CAP_SYS_ADMIN taken away, asked for by the platform's configuration
  // (cloudrun: the job's environment), before anything else runs, so every process of the
  // sandbox starts under it; a sandbox that asked for either never runs without it.
  if (auto r = HardenIfAsked(); !r) {
    std::cerr << "agentbox-guest: " << r.error().message << "\n";
    return 125;
  }
  // `exec PATH ARGS...` runs another agentbox-guest (or any program) in this process: a Cloud
  // Run job keeps the guest it was created with as its command, and a newer daemon runs its own
  // guest through it, so sandboxes survive daemon upgrades.
  if (argc >= 3 && std::string(argv[1]) == "exec") {
    ::execv(argv[2], argv + 2);
    std::cerr << "agentbox-guest exec " << argv[2] << ": " << std::strerror(errno) << "\n";
    return 127;
  }
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"agentbox-guest: the sandbox API server that runs inside every sandbox"};
  app.require_subcommand(1);

  ServeArgs sa;
  auto* serve = app.add_subcommand("serve", "serve the guest API (sandbox-api.md §1)");
  serve->add_option("--listen", sa.listen, "unix:PATH or tcp:HOST:PORT (repeatable)");
  serve->add_option("--token", sa.token,
                    "require this X-Access-Token (or set AGENTBOX_GUEST_TOKEN)");
  serve->add_option("--token-file", sa.token_file, "read the token from this file");
  serve->add_option("--connect", sa.connect,
                    "also serve through a tunnel to agentboxd at this ws:// or wss:// URL, "
                    "authenticated by the token (docs/tunnel.md)");
  serve->add_option("--ca-file", sa.ca_file,
                    "wss://: PEM CA certificates agentboxd's certificate must chain to (default: "
                    "the system's CAs); its host name or IP is always verified");
  serve->add_option("--service", sa.services,
                    "NAME=COMMAND: a service started with the guest and reported, stopped and "
                    "restarted by /api/v1/supervisor/* (repeatable; also AGENTBOX_SERVICES, a "
                    "JSON object NAME -> COMMAND)");
  serve->add_option("--workdir", sa.workdir, "initial cwd of sessions and base of relative paths");
  serve->add_option("--shell", sa.shell, "shell to run sessions in (default: bash, else sh)");
  serve->add_option("--output-cap", sa.output_cap, "bytes of output kept per session/process");
  serve->add_option("--max-body", sa.max_body, "largest JSON request body in bytes");
  serve->add_option("--max-upload", sa.max_upload, "largest upload in bytes");
  serve->add_option("--max-file", sa.max_file, "largest file for write/replace/search in bytes");
  serve->add_option("--max-sessions", sa.max_sessions, "sessions open at once");
  serve->add_option("--file-threads", sa.file_threads, "threads for file operations");
  serve->add_option("--log-level", sa.log_level, "debug, info or warn");
  serve->add_option("--log-budget", sa.log_budget,
                    "bytes the guest writes to its log in its lifetime (lines over 4096 bytes "
                    "are cut; 0: unbounded)");
  serve->add_option("--prewarm", sa.prewarm,
                    "keep one shell started for the next new session (default true)");

  RunOnceOptions ro;
  double timeout = 0;
  auto* once = app.add_subcommand("run-once", "run one command against a session snapshot");
  once->add_option("--state", ro.state_path, "session state JSON (omit for a fresh session)");
  once->add_option("--command", ro.command, "command to run")->required();
  once->add_option("--out", ro.out_path, "result JSON file ('-' for stdout)")->required();
  once->add_option("--timeout", timeout, "kill the command after this many seconds");
  once->add_option("--shell", ro.shell, "shell to use");
  once->add_option("--workdir", ro.workdir, "working directory of a fresh session");
  once->add_option("--exec-dir", ro.exec_dir, "working directory of this command only");
  once->add_flag("--combined", ro.combined_output,
                 "stdout and stderr through one pipe, in order, as `output`");
  once->add_option("--output-cap", ro.output_cap, "bytes of stdout/stderr kept");

  app.add_subcommand("version", "print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (app.got_subcommand("version")) {
    std::cout << "agentbox-guest " << agentbox::guest::kGuestVersion << "\n";
    return 0;
  }
  if (app.got_subcommand(serve)) {
    return Serve(sa);
  }
  if (timeout > 0) {
    ro.timeout_s = timeout;
  }
  auto r = agentbox::guest::RunOnceToFile(ro);
  if (!r) {
    std::cerr << "agentbox-guest run-once: " << r.error().message << "\n";
    return 2;
  }
  return 0;
}
