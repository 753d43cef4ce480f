// agentbox-tunnel-host: a daemon whose one sandbox's guest is reached through a tunnel, for
// benchmarks (docs/benchmarks.md). Never shipped: it uses the TunnelBackend test double.
//
// An in-process agentboxd (DaemonApi) on a unix socket, whose backend starts each sandbox as a
// local `agentbox-guest serve --connect ws://127.0.0.1:PORT/v1/tunnel`; the daemon serves the
// tunnel endpoint on 127.0.0.1 (ephemeral port). It creates one sandbox and prints one JSON line:
//   {"daemon": "unix:<socket>", "daemon_tcp": "tcp:127.0.0.1:PORT", "prefix": "/v1/sandboxes/<id>",
//   "guest_pid": N,
//    "tunnel": "unix:<the sandbox's tunnel socket>", "token": "<guest token>"}
// agentbox-guest-bench --target <daemon> --prefix <prefix> then measures exec through the daemon
// and the tunnel, as a client sees it; --target <tunnel> --token <token> measures the tunnel
// alone. Over TCP the daemon takes the API key "k1" (bench/wrk_file_exists.lua sends it). Runs
// until its stdin closes. With --tls the guest dials wss:// instead: the daemon also listens on
// tls:127.0.0.1:0 with a certificate made at start-up, and the guest verifies it (--ca-file).
//
//   agentbox-tunnel-host --guest build/release/src/guest/agentbox-guest [--tls]

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "common/log.h"
#include "daemon/daemon_api.h"
#include "daemon/tunnel_endpoint.h"
#include "fakes/test_certs.h"
#include "fakes/tunnel_backend.h"
#include "http/envelope.h"
#include "http/server.h"

using namespace agentbox;

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::string guest;
  bool tls = false;
  CLI::App app{"The daemon's end of one guest tunnel, for benchmarks"};
  app.add_option("--guest", guest, "agentbox-guest binary")->required();
  app.add_flag("--tls", tls, "the guest dials wss:// (a certificate made at start-up)");
  CLI11_PARSE(app, argc, argv);
  SetLogLevel(LogLevel::kWarn);

  char tmpl[] = "/tmp/agentbox-tunnel-host-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    std::cerr << "mkdtemp failed\n";
    return 1;
  }
  const std::string dir = tmpl;
  fakes::TunnelBackendOptions bo;
  http::TlsContextPtr tls_ctx;
  if (tls) {
    auto ca = fakes::MakeTestCa(dir, "ca");
    auto cert = ca ? fakes::MakeTestServerCert(*ca, dir, "daemon", {"127.0.0.1"}, {})
                   : Result<fakes::TestServerCert>(tl::unexpected(ca.error()));
    auto ctx = cert ? http::MakeServerTlsContext(cert->cert_file, cert->key_file)
                    : Result<http::TlsContextPtr>(tl::unexpected(cert.error()));
    if (!ctx) {
      std::cerr << ctx.error().message << "\n";
      return 1;
    }
    tls_ctx = *ctx;
    bo.ca_file = ca->cert_file;
  }
  boost::asio::io_context io;
  daemon::TunnelEndpoint endpoint(io, {dir + "/tunnels"});
  std::string tunnel_url;
  fakes::TunnelBackend backend(
      guest, dir + "/state", endpoint, [&] { return tunnel_url; }, bo);
  daemon::DaemonOptions opts;
  opts.default_backend = "process";
  opts.spool_dir = dir;
  daemon::DaemonApi api(io, {{"process", &backend}}, daemon::ApiKeys({"bench:k1"}), opts);
  api.Start();
  http::ServerOptions so;
  so.error_body = &http::ErrorBody;
  so.tls = tls_ctx;
  so.upgrade = [&](http::Request req, http::UpgradedSocket s) {
    endpoint.Upgrade(std::move(req), std::move(s));
  };
  http::Server server(io, api, so);
  auto tcp = server.Listen("tcp:127.0.0.1:0");
  auto unix_sock = server.Listen("unix:" + dir + "/agentboxd.sock");
  if (!tcp || !unix_sock) {
    std::cerr << "cannot listen\n";
    return 1;
  }
  tunnel_url = "ws://" + tcp->substr(4) + "/v1/tunnel";
  if (tls) {
    auto bound = server.Listen("tls:127.0.0.1:0");
    if (!bound) {
      std::cerr << bound.error().message << "\n";
      return 1;
    }
    tunnel_url = "wss://" + bound->substr(4) + "/v1/tunnel";
  }
  std::thread t1([&] { io.run(); });
  std::thread t2([&] { io.run(); });
  int rc = 0;
  std::string id;
  if (rc == 0) {
    // Create through the daemon, as a client does.
    // Owned by the key "k1", so that wrk over TCP may use it (the unix socket is admin).
    const std::string cmd = "curl -sS -H 'Authorization: Bearer k1' -X POST -d '{}' http://" +
                            tcp->substr(4) + "/v1/sandboxes";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof(buf), p)) > 0) {
      out.append(buf, n);
    }
    if (p) {
      ::pclose(p);
    }
    const Json j = Json::parse(out, nullptr, false);
    if (!j.is_object() || !j.contains("data") || !j["data"].contains("id")) {
      std::cerr << "create failed: " << out << "\n";
      rc = 1;
    } else {
      id = j["data"]["id"];
    }
  }
  if (rc == 0) {
    auto sb = backend.Get(id);
    std::cout << Json{{"daemon", *unix_sock},
                      {"daemon_tcp", *tcp},
                      {"prefix", "/v1/sandboxes/" + id},
                      {"guest_pid", backend.GuestPid(id)},
                      {"tunnel", sb ? sb->guest_endpoint : ""},
                      {"tunnel_url", tunnel_url},
                      {"token", sb ? sb->guest_token : ""}}
                     .dump()
              << std::endl;
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    (void)backend.Destroy(id);
  }
  server.Stop();
  io.stop();
  t1.join();
  t2.join();
  std::system(("rm -rf '" + dir + "'").c_str());
  return rc;
}
