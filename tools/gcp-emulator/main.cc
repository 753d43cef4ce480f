// agentbox-gcp-emulator: Cloud Run Admin v2 (jobs whose executions really run on the local
// Docker engine), Cloud Storage JSON, an OAuth token endpoint and a metadata server, on one port.
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "backends/docker/engine_client.h"
#include "common/log.h"
#include "emulator.h"
#include "fuse_mount.h"

int main(int argc, char** argv) {
  using namespace agentbox;
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"agentbox-gcp-emulator: Cloud Run v2 + Cloud Storage JSON + OAuth + metadata"};
  std::string listen = "tcp:127.0.0.1:0";
  std::string docker_host;
  gcpemu::EmulatorOptions opts;
  bool verbose = false;
  app.add_option("--listen", listen, "tcp:HOST:PORT (port 0 picks one)")->capture_default_str();
  app.add_option("--data", opts.data_dir, "directory for buckets, metadata and executions")
      ->required();
  app.add_option("--docker-host", docker_host,
                 "Docker engine, unix:///path (default: $DOCKER_HOST or /var/run/docker.sock)");
  app.add_option("--project", opts.auth.project, "project id the metadata server reports")
      ->capture_default_str();
  app.add_option("--token-lifetime", opts.auth.token_lifetime_seconds,
                 "expires_in of issued tokens, seconds")
      ->capture_default_str();
  std::string volumes = "bind";
  app.add_option("--volumes", volumes,
                 "Cloud Storage volumes as bind mounts of the bucket's directory (bind, fast) or "
                 "as rclone FUSE mounts through the Storage API (fuse, object-store semantics "
                 "like Cloud Run's gcsfuse)")
      ->check(CLI::IsMember({"bind", "fuse"}))
      ->capture_default_str();
  app.add_flag("--verbose", verbose, "log every request");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  SetLogLevel(verbose ? LogLevel::kDebug : LogLevel::kInfo);
  if (docker_host.empty()) {
    const char* env = std::getenv("DOCKER_HOST");
    docker_host = env != nullptr ? env : "";
  }
  auto socket = docker::SocketFromDockerHost(docker_host);
  if (!socket) {
    std::fprintf(stderr, "agentbox-gcp-emulator: %s\n", socket.error().message.c_str());
    return 2;
  }
  opts.docker_socket = *socket;
  // Bind mounts need an absolute source (a relative one would name a Docker volume).
  std::error_code ec;
  opts.data_dir = std::filesystem::absolute(opts.data_dir, ec).lexically_normal().string();
  while (opts.data_dir.size() > 1 && opts.data_dir.back() == '/') {
    opts.data_dir.pop_back();
  }
  opts.fuse_volumes = volumes == "fuse";
  if (opts.fuse_volumes) {
    if (auto ok = gcpemu::FuseAvailable(); !ok) {
      std::fprintf(stderr, "agentbox-gcp-emulator: %s\n", ok.error().message.c_str());
      return 2;
    }
  }

  boost::asio::io_context io;
  auto emulator = gcpemu::Emulator::Create(io, opts);
  if (!emulator) {
    std::fprintf(stderr, "agentbox-gcp-emulator: %s\n", emulator.error().message.c_str());
    return 1;
  }
  http::ServerOptions sopts;
  sopts.max_body_bytes = 64ull << 20;
  sopts.max_stream_bytes = 64ull << 30;  // uploads stream to disk
  sopts.error_body = [](int status, const std::string& message) {
    return gcpemu::ErrorBody({status, message, ""});
  };
  http::Server server(io, **emulator, sopts);
  auto bound = server.Listen(listen);
  if (!bound) {
    std::fprintf(stderr, "agentbox-gcp-emulator: %s\n", bound.error().message.c_str());
    return 1;
  }
  if (!bound->starts_with("tcp:")) {
    std::fprintf(stderr, "agentbox-gcp-emulator: --listen must be tcp:HOST:PORT\n");
    return 2;
  }
  (*emulator)->SetSelfUrl("http://" + bound->substr(4));
  // The socket already accepts (listen() ran): connections queue until the threads run.
  std::printf("listening on http://%s\n", bound->substr(4).c_str());
  std::fflush(stdout);
  Log(LogLevel::kInfo, "gcpemu.started", "listen={} data={} docker={} volumes={}", *bound,
      opts.data_dir, opts.docker_socket, volumes);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    server.Stop();
    io.stop();
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  io.run();
  for (auto& t : threads) {
    t.join();
  }
  return 0;
}
