// agentbox: the command-line client of agentboxd (docs/cli.md).
#include <curl/curl.h>

#include <CLI/CLI.hpp>
#include <exception>
#include <functional>
#include <iostream>

#include "cli/commands.h"
#include "cli/format.h"

namespace {

using namespace agentbox::cli;

// libcurl's global state, set up before any handle and torn down after the last.
class CurlGlobal {
 public:
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~CurlGlobal() { curl_global_cleanup(); }
  CurlGlobal(const CurlGlobal&) = delete;
  CurlGlobal& operator=(const CurlGlobal&) = delete;
};

int Main(int argc, char** argv) {
  CLI::App app{
      "agentbox: run commands in sandboxes managed by agentboxd.\n"
      "Talks to the daemon's unix socket ($AGENTBOX_SOCKET, default " +
          std::string(kDefaultSocket) + ") or, with --url, to its TCP port with an API key.",
      "agentbox"};
  app.set_version_flag("--version", "agentbox 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();

  std::string url, socket, api_key, ca_file;
  app.add_option("--url", url,
                 "agentboxd over TCP: http://HOST:PORT or https://HOST:PORT (or unix:PATH) "
                 "[$AGENTBOX_URL]");
  app.add_option("--socket", socket, "agentboxd's unix socket [$AGENTBOX_SOCKET]");
  app.add_option("--api-key", api_key, "API key for TCP [$AGENTBOX_API_KEY]");
  app.add_option("--ca-file", ca_file,
                 "https://: PEM CA certificates to verify agentboxd's certificate with (default: "
                 "the system's CAs) [$AGENTBOX_CA_FILE]");

  std::function<int(DaemonClient&)> run;

  // create
  CreateArgs create;
  int64_t ttl = 0, memory_mb = 0, pids = 0, disk_mb = 0;
  double cpus = 0;
  auto* c = app.add_subcommand("create", "Create a sandbox; prints its id");
  c->add_option("--image", create.image, "root filesystem: directory, tarball or image");
  c->add_option("--backend", create.backend, "pin a backend (jail, docker, ...)");
  auto* ttl_opt = c->add_option("--ttl", ttl, "seconds until it is destroyed (default 3600)");
  auto* mem_opt = c->add_option("--memory-mb", memory_mb, "memory limit in MiB");
  auto* cpus_opt = c->add_option("--cpus", cpus, "CPU share, e.g. 0.5");
  auto* pids_opt = c->add_option("--pids", pids, "limit on processes and threads");
  auto* disk_opt = c->add_option("--disk-mb", disk_mb,
                                 "disk limit in MiB for /workspace and the writable root");
  c->add_option("--env", create.env, "KEY=VALUE (or KEY from this environment); repeatable");
  c->add_option("--label", create.labels, "KEY=VALUE; repeatable");
  c->add_flag("--read-only-root", create.read_only_root,
              "root filesystem read-only (/workspace and /tmp stay writable)");
  c->add_flag("--json", create.json, "print the whole sandbox as JSON");
  c->callback([&] {
    if (*ttl_opt) {
      create.ttl_s = ttl;
    }
    if (*mem_opt) {
      create.memory_mb = memory_mb;
    }
    if (*cpus_opt) {
      create.cpus = cpus;
    }
    if (*pids_opt) {
      create.pids = pids;
    }
    if (*disk_opt) {
      create.disk_mb = disk_mb;
    }
    run = [&](DaemonClient& client) { return Create(client, create); };
  });

  // pull
  std::string pull_image, pull_backend;
  auto* pull =
      app.add_subcommand("pull", "Make an image available (docker pulls it), with progress");
  pull->add_option("image", pull_image, "image reference")->required();
  pull->add_option("--backend", pull_backend,
                   "the backend to prepare it on (default: the one "
                   "new sandboxes get)");
  pull->callback(
      [&] { run = [&](DaemonClient& client) { return Pull(client, pull_image, pull_backend); }; });

  // ls
  bool ls_json = false;
  auto* ls = app.add_subcommand("ls", "List sandboxes");
  ls->alias("list");
  ls->add_flag("--json", ls_json, "print JSON");
  ls->callback([&] { run = [&](DaemonClient& client) { return List(client, ls_json); }; });

  // rm
  std::vector<std::string> rm_ids;
  auto* rm = app.add_subcommand("rm", "Destroy sandboxes");
  rm->add_option("id", rm_ids, "sandbox ids")->required();
  rm->callback([&] { run = [&](DaemonClient& client) { return Remove(client, rm_ids); }; });

  // info
  auto* info = app.add_subcommand("info", "Show the daemon's backend decision (GET /v1/info)");
  info->callback([&] { run = [&](DaemonClient& client) { return Info(client); }; });

  // flags
  std::vector<std::string> flags_set, flags_unset;
  auto* flags = app.add_subcommand(
      "flags", "Show or change the selection settings at runtime (GET/PUT /v1/flags)");
  flags->add_option("KEY=VALUE", flags_set, "flags to set, e.g. AGENTBOX_ROLLOUT_KILL_SWITCH=true");
  flags->add_option("--unset", flags_unset, "flags to remove")->take_all();
  flags->callback(
      [&] { run = [&](DaemonClient& client) { return Flags(client, flags_set, flags_unset); }; });

  // rollout
  auto* rollout = app.add_subcommand(
      "rollout", "Watch and steer a backend rollout (on /v1/info, /metrics and /v1/flags)");
  rollout->require_subcommand(1);
  bool rollout_json = false;
  auto* rs = rollout->add_subcommand(
      "status", "Percentages, breaker, error rates and decisions by reason, per backend");
  rs->add_flag("--json", rollout_json, "print JSON");
  rs->callback([&] { run = [&](DaemonClient& client) { return RolloutStatus(client, rollout_json); }; });
  std::string rollout_backend;
  int rollout_pct = 0;
  bool rollout_force = false;
  auto* rset = rollout->add_subcommand(
      "set", "Send PCT% of new sandboxes to BACKEND (sticky per subject); lifts the kill switch");
  rset->add_option("BACKEND", rollout_backend, "the candidate backend")->required();
  rset->add_option("PCT", rollout_pct, "0..100")->required()->check(CLI::Range(0, 100));
  rset->add_flag("--force", rollout_force,
                 "raise the share even though the backend's last `agentbox conformance` failed");
  rset->callback([&] {
    run = [&](DaemonClient& client) {
      return RolloutSet(client, rollout_backend, rollout_pct, rollout_force);
    };
  });
  auto* rstop = rollout->add_subcommand(
      "stop", "Kill switch: every new sandbox goes to the baseline at once");
  rstop->callback([&] { run = [&](DaemonClient& client) { return RolloutStop(client); }; });

  // conformance
  std::string conf_backend;
  bool conf_json = false, conf_no_record = false;
  auto* conf = app.add_subcommand(
      "conformance",
      "Run the agent-facing checks in a sandbox pinned to BACKEND and record the verdict");
  conf->add_option("--backend", conf_backend, "the backend to validate")->required();
  conf->add_flag("--json", conf_json, "print JSON");
  conf->add_flag("--no-record", conf_no_record, "do not record the verdict with the daemon");
  conf->callback([&] {
    run = [&](DaemonClient& client) {
      return Conformance(client, conf_backend, conf_json, !conf_no_record);
    };
  });

  // timeout
  std::string timeout_id;
  int64_t timeout_s = 0;
  auto* to = app.add_subcommand("timeout", "Set a sandbox's remaining lifetime");
  to->add_option("id", timeout_id, "sandbox id")->required();
  to->add_option("seconds", timeout_s, "seconds from now")->required();
  to->callback([&] {
    run = [&](DaemonClient& client) { return ExtendTimeout(client, timeout_id, timeout_s); };
  });

  // restart-guest
  std::string restart_id;
  auto* rg = app.add_subcommand(
      "restart-guest",
      "Replace a sandbox's stuck guest (keeps /workspace; sessions and processes start over)");
  rg->add_option("id", restart_id, "sandbox id")->required();
  rg->callback(
      [&] { run = [&](DaemonClient& client) { return RestartGuest(client, restart_id); }; });

  // migrate
  std::string migrate_id, migrate_to;
  bool migrate_json = false;
  auto* mg = app.add_subcommand(
      "migrate", "Move a live sandbox to another backend (id, /workspace and sessions move)");
  mg->add_option("id", migrate_id, "sandbox id")->required();
  mg->add_option("--to", migrate_to, "the backend to move it to")->required();
  mg->add_flag("--json", migrate_json, "print the daemon's answer as JSON");
  mg->callback([&] {
    run = [&](DaemonClient& client) { return Migrate(client, migrate_id, migrate_to, migrate_json); };
  });

  // drain
  std::string drain_backend, drain_to;
  int drain_concurrency = 2;
  bool drain_json = false;
  auto* dr = app.add_subcommand(
      "drain", "Move every sandbox off BACKEND, a few at a time (local socket only)");
  dr->add_option("BACKEND", drain_backend, "the backend to empty")->required();
  dr->add_option("--to", drain_to, "where they go (default: the selector's choice)");
  dr->add_option("--concurrency", drain_concurrency, "moves at a time")
      ->capture_default_str()
      ->check(CLI::Range(1, 8));
  dr->add_flag("--json", drain_json, "print the daemon's JSON lines");
  dr->callback([&] {
    run = [&](DaemonClient& client) {
      return Drain(client, drain_backend, drain_to, drain_concurrency, drain_json);
    };
  });

  // exec
  ExecArgs exec;
  auto* ex = app.add_subcommand(
      "exec", "Run a command; prints its stdout and stderr and exits with its status");
  ex->add_option("id", exec.id, "sandbox id")->required();
  ex->add_option("command", exec.command,
                 "the command: one argument is a shell command line, several are argv words "
                 "(put them after --)")
      ->required();
  ex->add_option("--session,-s", exec.session, "shell session (state persists)")
      ->capture_default_str();
  ex->add_option("--cwd", exec.cwd, "working directory for this command only");
  ex->add_option("--timeout", exec.timeout_s, "seconds before it is killed (exit 124); 0 = none")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 7 * 86400.0));
  ex->callback([&] { run = [&](DaemonClient& client) { return Exec(client, exec); }; });

  // shell
  std::string shell_id, shell_session = "default";
  auto* sh = app.add_subcommand("shell", "Interactive session in your terminal");
  sh->add_option("id", shell_id, "sandbox id")->required();
  sh->add_option("--session,-s", shell_session, "shell session (state persists)")
      ->capture_default_str();
  sh->callback(
      [&] { run = [&](DaemonClient& client) { return Shell(client, shell_id, shell_session); }; });

  // upload / download
  std::string up_id, up_local, up_remote;
  auto* up = app.add_subcommand("upload", "Copy a local file into a sandbox (streamed)");
  up->add_option("id", up_id, "sandbox id")->required();
  up->add_option("local", up_local, "local file")->required();
  up->add_option("remote", up_remote, "path in the sandbox (relative: its workdir; dir/: into)")
      ->required();
  up->callback([&] {
    run = [&](DaemonClient& client) { return Upload(client, up_id, up_local, up_remote); };
  });
  std::string down_id, down_remote, down_local;
  auto* down = app.add_subcommand("download", "Copy a file out of a sandbox (streamed)");
  down->add_option("id", down_id, "sandbox id")->required();
  down->add_option("remote", down_remote, "path in the sandbox")->required();
  down->add_option("local", down_local, "local path, a directory, or - for stdout")->required();
  down->callback([&] {
    run = [&](DaemonClient& client) { return Download(client, down_id, down_remote, down_local); };
  });

  std::string cp_src, cp_dst;
  bool cp_recursive = false;
  auto* cp = app.add_subcommand(
      "cp",
      "Copy files or directories between here and a sandbox (ID:PATH names the sandbox side)");
  cp->add_flag("-r,--recursive", cp_recursive, "copy directories (as one tar stream)");
  cp->add_option("src", cp_src, "LOCAL or ID:PATH")->required();
  cp->add_option("dst", cp_dst, "ID:PATH or LOCAL")->required();
  cp->callback([&] {
    run = [&](DaemonClient& client) { return Copy(client, cp_src, cp_dst, cp_recursive); };
  });

  // ps / logs / kill
  std::string ps_id, ps_session;
  bool ps_json = false;
  auto* ps = app.add_subcommand("ps", "List background processes");
  ps->add_option("id", ps_id, "sandbox id")->required();
  ps->add_option("--session,-s", ps_session, "only this session's processes");
  ps->add_flag("--json", ps_json, "print JSON");
  ps->callback([&] {
    run = [&](DaemonClient& client) { return ProcessList(client, ps_id, ps_session, ps_json); };
  });
  std::string logs_id;
  int64_t logs_pid = 0;
  bool follow = false;
  auto* logs = app.add_subcommand("logs", "Print a background process's output");
  logs->add_option("id", logs_id, "sandbox id")->required();
  logs->add_option("pid", logs_pid, "process id (from ps)")->required();
  logs->add_flag("--follow,-f", follow, "keep printing until the process exits");
  logs->callback([&] {
    run = [&](DaemonClient& client) { return ProcessLogs(client, logs_id, logs_pid, follow); };
  });
  KillArgs kill;
  int64_t kill_pid = 0;
  auto* k = app.add_subcommand("kill", "Signal background processes");
  k->add_option("id", kill.id, "sandbox id")->required();
  auto* kpid = k->add_option("--pid", kill_pid, "one process");
  auto* ksession = k->add_option("--session", kill.session, "every process of a session");
  auto* kpattern = k->add_option("--pattern", kill.pattern, "ECMAScript regex on the command");
  kpid->excludes(ksession, kpattern);
  ksession->excludes(kpattern);
  k->add_option("--signal", kill.signal, "name or number (default KILL)");
  k->callback([&] {
    if (!*kpid && !*ksession && !*kpattern) {
      throw CLI::RequiredError("one of --pid, --session or --pattern");
    }
    if (*kpid) {
      kill.pid = kill_pid;
    }
    run = [&](DaemonClient& client) { return ProcessKill(client, kill); };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitError;
  }
  if (!run) {
    return ReportError("no command given (see agentbox --help)");
  }
  CurlGlobal curl;
  DaemonClient client(ResolveEndpoint(url, socket, api_key, ca_file));
  return run(client);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    return ReportError(std::string("unexpected failure: ") + e.what());
  }
}
