#pragma once

// An agentboxd in-process for end-to-end tests: a DaemonApi over the ProcessBackend test double
// (whose sandboxes are real agentbox-guest processes), served by http::Server on a unix socket
// (trusted, local admin) and on TCP 127.0.0.1 with API keys, plus a libcurl client for it.
// Shared by tests/daemon, tests/cli and tests/openapi so the harness exists once.

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/json_util.h"
#include "daemon/daemon_api.h"
#include "fakes/process_backend.h"
#include "http/server.h"

namespace agentbox::fakes {

// One HTTP exchange with the test daemon. `json` is the parsed body (discarded when not JSON).
struct HttpReply {
  long status = 0;
  std::string body;
  Json json;
  std::string headers;  // raw response header block
  std::string content_type;
};

// `n` bytes of a fixed pattern with every byte value in it (not compressible to nothing).
inline std::string PatternBytes(size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<char>((i * 131) ^ (i >> 7));
  }
  return out;
}

// A multipart/form-data body uploading `data` to `path` (send with
// `Content-Type: multipart/form-data; boundary=<boundary>`).
inline std::string MultipartUpload(const std::string& boundary, const std::string& path,
                                   const std::string& data) {
  return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n" + path +
         "\r\n--" + boundary +
         "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"upload\"\r\n"
         "Content-Type: application/octet-stream\r\n\r\n" +
         data + "\r\n--" + boundary + "--\r\n";
}

// The API keys every DaemonFixture accepts on TCP: "key-alice" (owner alice), "key-bob"
// (owner bob) and the bare key "k1".
inline const std::vector<std::string> kFixtureApiKeys = {"alice:key-alice", "bob:key-bob", "k1"};

class DaemonFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // `method path` with `body`. `key` "" = the unix socket (local admin); "-" = TCP without a
  // key; anything else = TCP with `Authorization: Bearer key`. `headers` are added as given.
  HttpReply Call(const std::string& method, const std::string& path, const std::string& body = "",
                 const std::string& key = "", std::vector<std::string> headers = {});

  // Stops the daemon (server, API, I/O thread) and starts a new one over the same backend and
  // options, as agentboxd restarting does; `between` runs while no daemon runs.
  void RestartDaemon(const std::function<void()>& between = {});

  // Creates a sandbox (expects 201) and returns its id.
  std::string CreateAs(const std::string& key, const std::string& body = "{}");

  // Uploads `blob` to `path` of sandbox `id` with `key` (multipart/form-data with `boundary`;
  // expects 200 and the size back), then downloads it into `down` (expects 200, the same bytes).
  void UploadThenDownload(const std::string& id, const std::string& key, const std::string& path,
                          const std::string& blob, const std::string& boundary, HttpReply* down);

  // Reads the event stream at `path` on the unix socket until `stop` appears in it (or the server
  // ends it, or 30 s pass) and returns what came.
  std::string ReadEvents(const std::string& path, const std::string& stop);

  // The sandbox's working directory as seen from the host (the test double runs no jail).
  std::string Workspace(const std::string& id) const {
    return dir_ + "/state/" + id + "/workspace";
  }

  // What the daemon serves as its "process" backend: backend_ itself (nullptr, the default), or a
  // decorator in front of it that a suite returns here (e.g. a warm pool over a BorrowedBackend).
  // Called in SetUp; the decorator is destroyed after the daemon and before backend_.
  virtual SandboxBackendPtr Decorate(ProcessBackend& backend) {
    (void)backend;
    return nullptr;
  }

  // Options of the DaemonApi SetUp builds; a test fixture may change them before SetUp runs.
  daemon::DaemonOptions options_;
  // The server's upgrade hook (ServerOptions::upgrade), e.g. a TunnelEndpoint; set in Decorate.
  std::function<void(http::Request, http::UpgradedSocket)> upgrade_;
  // Set in Decorate: the server also listens on tls:127.0.0.1:0 with it (tls_base_).
  http::TlsContextPtr tls_;

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::unique_ptr<ProcessBackend> backend_;
  SandboxBackendPtr decorator_;  // see Decorate
  std::unique_ptr<daemon::DaemonApi> api_;
  std::unique_ptr<http::Server> server_;
  // Builds the DaemonApi and its server over the backend and listens on the unix socket, TCP
  // and (with tls_) TLS: SetUp and RestartDaemon.
  void StartDaemon();
  // Daemons replaced by RestartDaemon, idle until TearDown.
  std::vector<std::unique_ptr<daemon::DaemonApi>> retired_apis_;
  std::vector<std::unique_ptr<http::Server>> retired_servers_;
  std::thread thread_;
  std::string dir_;        // temporary; removed in TearDown
  std::string unix_sock_;  // the daemon's unix socket
  std::string tcp_base_;   // "http://127.0.0.1:PORT"
  std::string tls_base_;   // "https://127.0.0.1:PORT" when tls_ was set
};

}  // namespace agentbox::fakes
