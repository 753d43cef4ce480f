// A test-only agentboxd for the conformance suite's "tunnel" backend: the daemon's REST API
// (DaemonApi) over one backend, fakes::TunnelBackend, whose guests are local agentbox-guest
// processes started with `serve --connect wss://127.0.0.1:PORT/v1/tunnel --ca-file CA`: they dial
// this daemon over TLS (a CA and certificate made at start-up) and are driven through their
// tunnels, exactly as agentboxd drives any sandbox. Each guest sees the host's root with its
// sandbox's directory at /workspace (a mount namespace of its own) and nothing else isolates it.
//
// Takes the arguments the conformance fixture gives agentboxd: --listen unix:PATH (the suite's
// socket), --state-dir DIR; --backend, --env-file and --config are accepted and ignored.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "common/log.h"
#include "daemon/daemon_api.h"
#include "daemon/tunnel_endpoint.h"
#include "fakes/test_certs.h"
#include "fakes/tunnel_backend.h"
#include "http/envelope.h"
#include "http/server.h"
#include "http/tls.h"

using namespace agentbox;

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> listen;
  std::string state;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--listen") {
      listen.push_back(argv[i + 1]);
    } else if (flag == "--state-dir") {
      state = argv[i + 1];
    }
  }
  if (listen.empty() || state.empty()) {
    std::cerr << "usage: " << argv[0] << " --listen unix:PATH --state-dir DIR\n";
    return 2;
  }
  ::mkdir(state.c_str(), 0700);
  auto ca = fakes::MakeTestCa(state, "tunnel-ca");
  auto cert = ca ? fakes::MakeTestServerCert(*ca, state, "daemon", {"127.0.0.1"}, {})
                 : Result<fakes::TestServerCert>(tl::unexpected(ca.error()));
  if (!cert) {
    std::cerr << "tunnel daemon: " << cert.error().message << "\n";
    return 2;
  }
  auto tls = http::MakeServerTlsContext(cert->cert_file, cert->key_file);
  if (!tls) {
    std::cerr << "tunnel daemon: " << tls.error().message << "\n";
    return 2;
  }

  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  daemon::TunnelEndpoint endpoint(io, {state + "/tunnels"});
  std::string wss;  // set once the TLS address is bound, before the first create
  fakes::TunnelBackendOptions bo;
  bo.name = "tunnel";
  bo.ca_file = ca->cert_file;
  bo.workspace_at_root = true;
  fakes::TunnelBackend backend(
      AGENTBOX_GUEST_BIN, state + "/tunnel", endpoint, [&wss] { return wss; }, bo);
  daemon::DaemonOptions opts;
  opts.default_backend = "tunnel";
  opts.spool_dir = state;
  opts.state_dir = state;
  auto api = std::make_unique<daemon::DaemonApi>(
      io, std::map<std::string, SandboxBackend*>{{"tunnel", &backend}}, daemon::ApiKeys({}), opts);
  api->Start();
  http::ServerOptions so;
  so.error_body = &http::ErrorBody;
  so.tls = *tls;
  so.upgrade = [&endpoint](http::Request req, http::UpgradedSocket s) {
    endpoint.Upgrade(std::move(req), std::move(s));
  };
  auto server = std::make_unique<http::Server>(io, *api, so);
  for (const auto& l : listen) {
    if (auto r = server->Listen(l); !r) {
      std::cerr << "tunnel daemon: " << r.error().message << "\n";
      return 2;
    }
  }
  auto bound = server->Listen("tls:127.0.0.1:0");
  if (!bound) {
    std::cerr << "tunnel daemon: " << bound.error().message << "\n";
    return 2;
  }
  wss = "wss://" + bound->substr(4) + "/v1/tunnel";
  Log(LogLevel::kInfo, "daemon.listening", "address={} tunnels={}", *bound, wss);

  boost::asio::signal_set stop(io, SIGTERM, SIGINT);
  stop.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) {
      server->Stop();
      work.reset();
      io.stop();
    }
  });
  std::thread second([&] { io.run(); });
  io.run();
  second.join();
  server.reset();
  api.reset();
  return 0;  // `backend` kills its guests, then `endpoint` closes the tunnels
}
