// agentboxd: the agentbox daemon. REST API for clients, sandbox registry, auth, metrics, and the
// backends (sandbox-api.md §2).
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <functional>
#include <iostream>
#include <thread>

#include "backends/pool/warm_pool.h"
#include "common/config.h"
#include "common/guarded.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/sched_slice.h"
#include "common/strings.h"
#include "daemon/config_watch.h"
#include "daemon/daemon_api.h"
#ifdef AGENTBOX_CRASH_HOOKS
#include "daemon/crash_hooks.h"
#endif
#include "daemon/tunnel_endpoint.h"
#include "http/envelope.h"
#include "http/server.h"
#include "selector/backend_table.h"

namespace {

using namespace agentbox;

void MakeParentDir(const std::string& listen) {
  if (!listen.starts_with("unix:")) {
    return;
  }
  std::string path = listen.substr(5);
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string cmd = path.substr(0, slash);
    for (size_t i = 1; i <= cmd.size(); ++i) {
      if (i == cmd.size() || cmd[i] == '/') {
        ::mkdir(cmd.substr(0, i).c_str(), 0755);
      }
    }
  }
}

// The certificate and key for "tls:" listen addresses, from AGENTBOX_TLS_CERT / AGENTBOX_TLS_KEY;
// nullptr when no address asks for TLS. Exits the daemon with a clear message when they are
// missing or unusable.
http::TlsContextPtr LoadTls(const Config& cfg, const std::vector<std::string>& endpoints) {
  const auto tls = std::find_if(endpoints.begin(), endpoints.end(),
                                [](const std::string& l) { return l.starts_with("tls:"); });
  if (tls == endpoints.end()) {
    return nullptr;
  }
  const std::string cert = cfg.GetOr("AGENTBOX_TLS_CERT", "");
  const std::string key = cfg.GetOr("AGENTBOX_TLS_KEY", "");
  if (cert.empty() || key.empty()) {
    std::cerr << "agentboxd: listening on " << *tls
              << " needs AGENTBOX_TLS_CERT (PEM certificate chain) and AGENTBOX_TLS_KEY (PEM "
                 "private key)\n";
    std::exit(2);
  }
  auto ctx = http::MakeServerTlsContext(cert, key);
  if (!ctx) {
    std::cerr << "agentboxd: AGENTBOX_TLS_CERT/AGENTBOX_TLS_KEY: " << ctx.error().message << "\n";
    std::exit(2);
  }
  return *ctx;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  // Blocks of 256 KiB and more (guests' answers, in 1 MiB pieces: http/pieces_body.h) are
  // mappings of their own, returned to the kernel when freed. glibc's default moves that
  // threshold up to the largest block freed so far, after which such blocks lived in the I/O
  // threads' arenas, and freeing them made glibc trim an arena under its lock (madvise of 56 MB:
  // 5.5 ms) while other threads waited for it: 8-17 ms stalls of other sandboxes' calls in half
  // of the guest_chunked attacks (docs/reliability.md §4).
  ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  // A short scheduler slice for every thread of the daemon and, inherited, every jail sandbox
  // (docker sandboxes get theirs from their guest): a sandbox's CPU-bound loop then yields to
  // woken work within 0.1 ms instead of a few (common/sched_slice.h). Best effort.
  const bool short_slice = RequestSchedulerSlice(kShortSchedulerSlice);
#ifdef AGENTBOX_CRASH_HOOKS
  // Only agentboxd-crashtest, the crash-consistency suite's build of this file, can crash on
  // purpose (AGENTBOX_TEST_CRASH_AT); the agentboxd binary has no such code.
  agentbox::daemon::InstallTestCrashHandler();
#endif
  CLI::App app{"agentboxd: the agentbox daemon"};
  std::string config_file;
  std::string env_file = ".env";
  std::vector<std::string> listen;
  std::string state_dir;
  std::string backend;
  app.add_option("--config", config_file, "KEY=VALUE configuration file");
  app.add_option("--env-file", env_file, ".env file read after the config file (if present)");
  app.add_option("--listen", listen,
                 "unix:PATH, tcp:HOST:PORT or tls:HOST:PORT (HTTPS: AGENTBOX_TLS_CERT and "
                 "AGENTBOX_TLS_KEY) (repeatable)");
  app.add_option("--state-dir", state_dir, "where sandboxes keep their state");
  app.add_option("--backend", backend, "backend for new sandboxes (SANDBOX_BACKEND)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  Config::Sources sources;
  sources.defaults = {{"AGENTBOX_LISTEN", "unix:/run/agentbox/agentboxd.sock"},
                      {"AGENTBOX_STATE_DIR", "/var/lib/agentbox"},
                      {"SANDBOX_BACKEND", "docker"},
                      {"AGENTBOX_LOG_LEVEL", "info"}};
  sources.config_file = config_file;
  sources.dotenv_file = env_file;
  if (!listen.empty()) {
    std::string joined;
    for (const auto& l : listen) {
      joined += (joined.empty() ? "" : ",") + l;
    }
    sources.overrides["AGENTBOX_LISTEN"] = joined;
  }
  if (!state_dir.empty()) {
    sources.overrides["AGENTBOX_STATE_DIR"] = state_dir;
  }
  if (!backend.empty()) {
    sources.overrides["SANDBOX_BACKEND"] = backend;
  }
  auto cfg = Config::Load(sources);
  if (!cfg) {
    std::cerr << "agentboxd: " << cfg.error().message << "\n";
    return 2;
  }
  const std::string level = cfg->GetOr("AGENTBOX_LOG_LEVEL", "info");
  SetLogLevel(level == "debug"  ? LogLevel::kDebug
              : level == "warn" ? LogLevel::kWarn
                                : LogLevel::kInfo);
  const std::string dir = cfg->GetOr("AGENTBOX_STATE_DIR", "/var/lib/agentbox");
  ::mkdir(dir.c_str(), 0700);

  // Before any backend starts (warm pools create sandboxes): a bad certificate stops here.
  http::TlsContextPtr tls = LoadTls(*cfg, cfg->GetList("AGENTBOX_LISTEN"));

  // Guests that dial out (docs/tunnel.md) connect to GET /v1/tunnel on the listen addresses;
  // backends (cloudrun session mode) register their sandboxes with the endpoint to get the token
  // and guest socket. Declared before the backends, which unregister on their way out.
  boost::asio::io_context io;
  daemon::TunnelEndpoint tunnels(io, {dir + "/tunnels"});
  selector::BackendTable table = selector::BuildBackends(*cfg, dir, &tunnels);
  std::map<std::string, SandboxBackend*> backends = table.Pointers();

  for (const auto& [name, b] : backends) {
    ProbeResult probe = b->Probe();
    Log(probe.usable ? LogLevel::kInfo : LogLevel::kWarn, "backend.probe",
        "backend={} usable={} reason=\"{}\" limitations={}", name, probe.usable, probe.reason,
        probe.limitations.size());
    for (const auto& l : probe.limitations) {
      Log(LogLevel::kWarn, "backend.limitation", "backend={} detail=\"{}\"", name, l);
    }
  }

  auto ttl = cfg->GetInt("AGENTBOX_DEFAULT_TTL_S", 3600, 10, 7 * 86400);
  auto per_owner = cfg->GetInt("AGENTBOX_MAX_SANDBOXES_PER_KEY", 64, 1, 100000);
  auto min_free = cfg->GetInt("AGENTBOX_MIN_FREE_BYTES", 1ll << 30, 0, 1ll << 50);
  auto idempotency_ttl = cfg->GetInt("AGENTBOX_IDEMPOTENCY_TTL_S", 86400, 60, 30 * 86400);
  // Moves between backends (docs/migration.md).
  auto migration_hold = cfg->GetInt("AGENTBOX_MIGRATION_HOLD_S", 30, 0, 3600);
  auto migration_retry = cfg->GetInt("AGENTBOX_MIGRATION_RETRY_AFTER_S", 5, 1, 3600);
  auto migration_quiesce = cfg->GetInt("AGENTBOX_MIGRATION_QUIESCE_S", 10, 0, 3600);
  for (const auto* r : {&ttl, &per_owner, &min_free, &idempotency_ttl, &migration_hold,
                        &migration_retry, &migration_quiesce}) {
    if (!*r) {
      std::cerr << "agentboxd: " << r->error().message << "\n";
      return 2;
    }
  }
  auto deadlines = daemon::GuestDeadlines::FromConfig(*cfg);
  if (!deadlines) {
    std::cerr << "agentboxd: " << deadlines.error().message << "\n";
    return 2;
  }
  daemon::DaemonOptions opts;
  opts.guest_deadlines = *deadlines;
  opts.selection = selector::Settings::FromConfig(*cfg, selector::BackendTable::KnownNames());
  opts.backend_config_errors = table.config_errors;
  for (const auto& [name, err] : table.config_errors) {
    Log(LogLevel::kWarn, "backend.config_invalid", "backend={} error=\"{}\"", name, err);
  }
  for (const auto& [key, err] : opts.selection->errors) {
    Log(LogLevel::kWarn, "selection.setting_invalid", "key={} error=\"{}\"", key, err);
  }
  // Runtime flags (PUT /v1/flags) sit above every other source and are kept in the state dir.
  auto load_config = [sources](const std::map<std::string, std::string>& flags) {
    Config::Sources with_flags = sources;
    for (const auto& [k, v] : flags) {
      with_flags.overrides[k] = v;
    }
    return Config::Load(with_flags);
  };
  opts.load_config = load_config;
  opts.flags_file = dir + "/flags.json";
  opts.pinnable_backends = cfg->GetList("AGENTBOX_PINNABLE_BACKENDS");
  opts.spool_dir = dir;
  opts.state_dir = dir;
  opts.sessions_dir = dir + "/sessions";
  opts.ports_dir = dir + "/ports";
  opts.idempotency_dir = dir + "/idempotency";
  opts.migrations_dir = dir + "/migrations";
  opts.migration_hold_s = static_cast<double>(*migration_hold);
  opts.migration_retry_after_s = static_cast<double>(*migration_retry);
  opts.migration_quiesce_s = static_cast<double>(*migration_quiesce);
  opts.idempotency_ttl_s = static_cast<double>(*idempotency_ttl);
  opts.min_free_bytes = static_cast<uint64_t>(*min_free);
  opts.default_ttl_s = *ttl;
  opts.max_sandboxes_per_owner = static_cast<size_t>(*per_owner);
  // E2B-compatible API (docs/e2b.md): templateID -> image.
  auto templates = daemon::e2b::ParseTemplates(cfg->GetList("AGENTBOX_E2B_TEMPLATES"));
  auto e2b_timeout = cfg->GetInt("AGENTBOX_E2B_DEFAULT_TIMEOUT_S", 300, 10, 7 * 86400);
  if (!templates || !e2b_timeout) {
    std::cerr << "agentboxd: "
              << (!templates ? templates.error().message : e2b_timeout.error().message) << "\n";
    return 2;
  }
  opts.e2b.templates = *templates;
  opts.e2b.default_timeout_s = *e2b_timeout;
  // Ports by host name (docs/ports.md): `{port}-{id}.{AGENTBOX_DOMAIN}`; also the E2B domain.
  std::string domain = AsciiLower(cfg->GetOr("AGENTBOX_DOMAIN", ""));
  while (domain.starts_with(".")) {
    domain.erase(0, 1);
  }
  if (!domain.empty() &&
      (domain.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-:") != std::string::npos ||
       domain.ends_with("."))) {
    std::cerr
        << "agentboxd: AGENTBOX_DOMAIN must be a host name such as sandboxes.example.com, got '"
        << domain << "'\n";
    return 2;
  }
  opts.domain = domain;
  opts.e2b.domain = domain;
  opts.collect_metrics = [&table](Metrics& m) {
    m.Describe("agentbox_handler_exceptions_total", "counter",
               "Exceptions thrown by a handler or job and caught by its thread (each one a bug; "
               "the request it served got no answer).");
    m.Set("agentbox_handler_exceptions_total", {}, static_cast<double>(CaughtHandlerExceptions()));
    if (table.images) {
      images::ExportImageMetrics(table.images->Stats(), m);
    }
    m.Describe("agentbox_pool_ready", "gauge", "Started sandboxes waiting in a warm pool.");
    m.Describe("agentbox_pool_acquisitions_total", "counter",
               "Creates served from a warm pool (hit) or started cold (miss).");
    m.Describe("agentbox_pool_discarded_total", "counter",
               "Pooled sandboxes found dead, or whose claim failed, and destroyed.");
    m.Describe("agentbox_pool_start_failures_total", "counter",
               "Background starts of pooled sandboxes that failed.");
    for (const auto& [name, b] : table.backends) {
      auto st = pool::WarmPoolStatsOf(b.get());
      if (!st) {
        continue;
      }
      m.Set("agentbox_pool_ready", {{"backend", name}}, static_cast<double>(st->ready));
      m.Set("agentbox_pool_acquisitions_total", {{"backend", name}, {"outcome", "hit"}},
            static_cast<double>(st->hits));
      m.Set("agentbox_pool_acquisitions_total", {{"backend", name}, {"outcome", "miss"}},
            static_cast<double>(st->misses));
      m.Set("agentbox_pool_discarded_total", {{"backend", name}},
            static_cast<double>(st->discarded + st->claim_failures));
      m.Set("agentbox_pool_start_failures_total", {{"backend", name}},
            static_cast<double>(st->start_failures));
    }
  };
  daemon::ApiKeys keys(cfg->GetList("AGENTBOX_API_KEYS"));

  const auto endpoints = cfg->GetList("AGENTBOX_LISTEN");
  for (const auto& l : endpoints) {
    if ((l.starts_with("tcp:") || l.starts_with("tls:")) && keys.empty()) {
      std::cerr << "agentboxd: refusing to listen on " << l
                << " without API keys: set AGENTBOX_API_KEYS\n";
      return 2;
    }
  }

  daemon::DaemonApi api(io, backends, keys, opts);
  api.Start();
  {
    selector::Decision d = api.selector().Preview();
    Log(LogLevel::kInfo, "selection.current",
        "backend={} reason={} error_code={} requested={} config_version={} detail=\"{}\"",
        d.backend.empty() ? "none" : d.backend, d.reason, d.error_code.value_or("-"),
        d.requested_backend, d.config_version, d.detail);
  }
  http::ServerOptions so;
  so.error_body = &http::ErrorBody;
  so.tls = tls;
  so.upgrade = [&tunnels](http::Request req, http::UpgradedSocket s) {
    tunnels.Upgrade(std::move(req), std::move(s));
  };
  http::Server server(io, api, so);
  for (const auto& l : endpoints) {
    MakeParentDir(l);
    auto bound = server.Listen(l);
    if (!bound) {
      std::cerr << "agentboxd: " << bound.error().message << "\n";
      return 2;
    }
    Log(LogLevel::kInfo, "daemon.listening", "address={} keys={} sched_slice_us={}", *bound,
        keys.size(), short_slice ? CurrentSchedulerSlice().count() : 0);
  }

  // SIGHUP, and any change to the configuration file or .env (inotify), re-read every source and
  // swap the selection settings in place: new sandboxes follow them at once, existing ones stay
  // where they are. A source that fails to load keeps the last good settings (never a silent
  // reset to defaults); a deleted file is told apart from a broken one. A reload that leaves the
  // effective settings as they were keeps config_version (and only forgets cached probes).
  api.metrics().Describe("agentbox_config_reload_errors_total", "counter",
                         "Reloads that failed and kept the last good settings.");
  auto reload = [&](const char* trigger) {
    auto next = load_config(api.flags());
    if (!next) {
      const bool deleted =
          !sources.config_file.empty() && ::access(sources.config_file.c_str(), F_OK) != 0;
      api.metrics().Increment("agentbox_config_reload_errors_total", {});
      Log(LogLevel::kError, deleted ? "config.file_deleted" : "config.reload_failed",
          "trigger={} kept=\"{}\" error=\"{}\"", trigger, api.selector().ConfigVersion(),
          next.error().message);
      return;
    }
    selector::Settings settings =
        selector::Settings::FromConfig(*next, selector::BackendTable::KnownNames());
    if (settings.hash == api.selector().settings()->hash) {
      api.selector().ForgetProbes();  // an operator's SIGHUP still means "check again now"
      return;
    }
    for (const auto& [key, err] : settings.errors) {
      Log(LogLevel::kWarn, "selection.setting_invalid", "key={} error=\"{}\"", key, err);
    }
    Log(LogLevel::kInfo, "config.reloading", "trigger={}", trigger);
    api.selector().Reload(std::move(settings));
  };
  boost::asio::signal_set hup(io, SIGHUP);
  std::function<void()> arm_reload = [&] {
    hup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) {
        return;
      }
      reload("sighup");
      arm_reload();
    });
  };
  arm_reload();
  daemon::ConfigWatch watch(io, {sources.config_file, sources.dotenv_file},
                            [&] { reload("file_watch"); });

  // Drains after SIGTERM, then stops the io_context. Joined before `api` and the rest go out of
  // scope (a detached thread could still read them while main returned); the work guard keeps
  // io.run() from returning on its own before that, e.g. while a worker finishes a request.
  std::thread drainer;
  auto work = boost::asio::make_work_guard(io);
  boost::asio::signal_set stop(io, SIGTERM, SIGINT);
  stop.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) {
      return;
    }
    // Stop accepting, let in-flight requests finish, leave every sandbox running.
    Log(LogLevel::kInfo, "daemon.draining", "signal={} in_flight={}", sig, api.in_flight());
    server.Stop();
    hup.cancel();
    watch.Stop();
    api.BeginDrain();
    drainer = std::thread([&] {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (api.in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      Log(LogLevel::kInfo, "daemon.stopped", "in_flight={}", api.in_flight());
      io.stop();
    });
  });
  // Two threads: one can block briefly in a backend call while the other keeps serving.
  std::thread second([&] { RunGuarded(io, "daemon.io"); });
  RunGuarded(io, "daemon.io");
  second.join();
  if (drainer.joinable()) {
    drainer.join();
  }
  return 0;
}
