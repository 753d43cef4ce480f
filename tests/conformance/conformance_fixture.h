// The conformance suite's fixture: one agentboxd per backend, driven only through its REST API.
// Each backend named in AGENTBOX_CONFORMANCE_BACKENDS (comma-separated; default: the CMake cache
// variable of that name, "jail" unless configured) gets a daemon of its own with SANDBOX_BACKEND
// set to it. The docker daemon takes DOCKER_HOST and AGENTBOX_DOCKER_IMAGE from the environment.
// The cloudrun daemon gets an agentbox-gcp-emulator of its own (started here on a free port,
// with a bucket), whose executions run AGENTBOX_CLOUDRUN_IMAGE (default agentbox/base:latest) on
// the local Docker engine, with Cloud Storage volumes as bind mounts (or, with
// AGENTBOX_GCP_EMULATOR_VOLUMES=fuse, as rclone FUSE mounts with object-store semantics). A test
// that needs what a backend declares it cannot do (/v1/info capabilities) checks the clear 400
// and is skipped with the reason printed. "cloudrun-session" is the cloudrun backend in session
// mode (AGENTBOX_CLOUDRUN_MODE=session): its daemon also listens on a free TCP port of 127.0.0.1,
// its AGENTBOX_PUBLIC_URL, where the executions' guests dial back (docs/cloudrun.md). The
// "tunnel" backend exists only in its own build of the suite (AGENTBOX_CONFORMANCE_ONLY), where
// AGENTBOXD_BIN is the test daemon of tunnel_daemon.cc: its guests are local processes connected
// through wss:// tunnels.
#pragma once

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "fakes/child_process.h"
#include "fakes/curl_http.h"
#include "fakes/per_backend.h"

namespace agentbox::conformance {

using Json = nlohmann::json;
using namespace std::chrono_literals;

using test_support::Reply;

// One agentboxd per backend, started on first use and stopped at exit. It runs with the
// default configuration, so a warm pool (if the backend has one) serves the suite's creates.
// The backend a suite parameter runs on ("cloudrun-session" -> "cloudrun").
inline std::string BackendOf(const std::string& param) {
  return param == "cloudrun-session" ? "cloudrun" : param;
}

class Daemon {
 public:
  explicit Daemon(const std::string& param)
      : backend_(BackendOf(param)), session_mode_(param == "cloudrun-session") {
    char tmpl[] = "/tmp/agentbox-conformance-XXXXXX";
    if (!mkdtemp(tmpl)) {
      return;
    }
    dir_ = tmpl;
    socket_ = dir_ + "/agentboxd.sock";
    if (backend_ == "cloudrun" && !StartEmulator()) {
      return;
    }
    Spawn({});
  }
  ~Daemon() {
    Stop();
    if (dir_.empty()) {
      return;
    }
    // A warm pool leaves its sandboxes running for the next agentboxd. That next one runs with
    // the pool off, so they show up in the list, and deletes every sandbox left.
    const std::string conf = dir_ + "/no-pool.conf";
    if (FILE* f = fopen(conf.c_str(), "w")) {
      std::string upper = backend_;
      for (auto& c : upper) {
        c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
      }
      fprintf(f, "%sAGENTBOX_WARM_POOL_SIZE=0\nAGENTBOX_WARM_POOL_SIZE_%s=0\n",
              backend_config_.c_str(), upper.c_str());
      fclose(f);
      Spawn({"--config", conf});
      if (ready_) {
        Reply list = Call("GET", "/v1/sandboxes", "", false);
        if (list.json.is_object() && list.json.contains("data")) {
          for (const auto& sb : list.json["data"]["sandboxes"]) {
            Call("DELETE", "/v1/sandboxes/" + sb["id"].get<std::string>(), "", false);
          }
        }
      }
      Stop();
    }
    test_support::Stop(emulator_pid_);
    int rc = system(("rm -rf '" + dir_ + "' 2>/dev/null").c_str());
    (void)rc;
  }
  bool ready() const { return ready_; }
  // The daemon's --state-dir (the backends keep their sandboxes below it).
  std::string state_dir() const { return dir_ + "/state"; }
  // The daemon's unix socket and process (bulk_transfer_test speaks raw HTTP to it and counts
  // its open descriptors).
  const std::string& socket() const { return socket_; }
  pid_t pid() const { return pid_; }
  std::string log() const { return test_support::ReadLog(dir_ + "/agentboxd.log"); }

  // What the backend declares it can do (GET /v1/info: backends.<name>.capabilities).
  Json Capabilities() {
    if (capabilities_.is_null()) {
      Reply info = Call("GET", "/v1/info");
      capabilities_ = info.data()["backends"][backend_]["capabilities"];
    }
    return capabilities_;
  }

  Reply Call(const std::string& method, const std::string& path, const std::string& body = "",
             bool expect_ok = true, const std::vector<std::string>& headers = {}) const {
    CURLcode rc = CURLE_OK;
    Reply r =
        test_support::CurlHttp(socket_, method, "http://agentboxd" + path, body, headers, &rc);
    if (expect_ok) {
      EXPECT_EQ(rc, CURLE_OK) << method << " " << path << ": " << curl_easy_strerror(rc);
    }
    return r;
  }

 private:
  // A private emulator with one bucket, and the settings that point the daemon at it.
  bool StartEmulator() {
    int out[2];
    if (pipe(out) != 0) {
      return false;
    }
    // AGENTBOX_GCP_EMULATOR_VOLUMES=fuse: volumes as object-store FUSE mounts (gcsfuse-like).
    const char* volumes = std::getenv("AGENTBOX_GCP_EMULATOR_VOLUMES");
    emulator_pid_ = test_support::Spawn(
        {AGENTBOX_GCP_EMULATOR_BIN, "--listen", "tcp:127.0.0.1:0", "--data", dir_ + "/emulator",
         "--volumes", volumes && *volumes ? volumes : "bind"},
        dir_ + "/emulator.log", out[1]);
    close(out[1]);
    const std::string url = test_support::ReadListenUrl(out[0]);
    if (url.empty()) {
      return false;
    }
    // The bucket, as a deployment creates it with gcloud.
    CURLcode rc = CURLE_OK;
    const Reply bucket = test_support::CurlHttp(
        "", "POST", url + "/storage/v1/b?project=conformance-project",
        R"({"name":"conformance-bucket"})",
        {"Authorization: Bearer conformance", "Content-Type: application/json"}, &rc);
    if (rc != CURLE_OK || bucket.status != 200) {
      return false;
    }
    const char* image = std::getenv("AGENTBOX_CLOUDRUN_IMAGE");
    backend_config_ =
        "SANDBOX_GCP_PROJECT=conformance-project\n"
        "SANDBOX_GCS_BUCKET=conformance-bucket\n"
        "AGENTBOX_CLOUDRUN_ENDPOINT=" +
        url + "\n" + "STORAGE_EMULATOR_HOST=" + url + "\n" +
        "GOOGLE_OAUTH_ACCESS_TOKEN=conformance\n"
        "AGENTBOX_CLOUDRUN_POLL_MS=50\n"
        "AGENTBOX_CLOUDRUN_IMAGE=" +
        std::string(image && *image ? image : "agentbox/base:latest") + "\n";
    if (session_mode_) {
      const int port = test_support::FreePort();
      if (port <= 0) {
        return false;
      }
      tunnel_listen_ = "tcp:127.0.0.1:" + std::to_string(port);
      backend_config_ += "AGENTBOX_CLOUDRUN_MODE=session\nAGENTBOX_PUBLIC_URL=http://127.0.0.1:" +
                         std::to_string(port) +
                         "\nAGENTBOX_API_KEYS=conformance:conformance-session-key\n";
    }
    return true;
  }

  void Spawn(const std::vector<std::string>& extra) {
    ready_ = false;
    std::vector<std::string> args = {AGENTBOXD_BIN, "--listen",      "unix:" + socket_,
                                     "--state-dir", dir_ + "/state", "--backend",
                                     backend_,      "--env-file",    "/dev/null"};
    if (!backend_config_.empty() && extra.empty()) {
      const std::string conf = dir_ + "/backend.conf";
      if (FILE* f = fopen(conf.c_str(), "w")) {
        fputs(backend_config_.c_str(), f);
        fclose(f);
      }
      args.insert(args.end(), {"--config", conf});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    if (!tunnel_listen_.empty()) {
      args.insert(args.end(), {"--listen", tunnel_listen_});
    }
    pid_ = test_support::Spawn(args, dir_ + "/agentboxd.log");
    ready_ = test_support::PollUntil(
        20s, [&] { return Call("GET", "/healthz", "", false).status == 200; });
  }
  void Stop() { test_support::Stop(pid_); }

  std::string backend_;
  bool session_mode_ = false;
  std::string tunnel_listen_;  // session mode: the TCP address the guests dial
  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
  bool ready_ = false;
  pid_t emulator_pid_ = -1;
  std::string backend_config_;  // KEY=VALUE lines for the backend (cloudrun: the emulator)
  Json capabilities_;
};

inline Daemon& DaemonFor(const std::string& backend) {
  return test_support::DaemonFor<Daemon>(backend);
}

inline std::vector<std::string> Backends() {
#ifdef AGENTBOX_CONFORMANCE_ONLY
  // A build of the suite for one backend of its own (the tunnel's test daemon).
  return {AGENTBOX_CONFORMANCE_ONLY};
#endif
  return test_support::ConformanceBackends(AGENTBOX_CONFORMANCE_DEFAULT);
}

// gtest's name of a parameter: "cloudrun-session" -> "cloudrun_session".
inline std::string ParamName(const ::testing::TestParamInfo<std::string>& p) {
  std::string n = p.param;
  for (auto& c : n) {
    c = c == '-' ? '_' : c;
  }
  return n;
}

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "tunnel" && geteuid() != 0) {
      GTEST_SKIP() << "the tunnel's test daemon gives each guest its /workspace through a mount "
                      "namespace of its own, which needs root (CAP_SYS_ADMIN); run as root";
    }
    daemon_ = &DaemonFor(GetParam());
    ASSERT_TRUE(daemon_->ready()) << "agentboxd for backend " << GetParam() << " did not start:\n"
                                  << daemon_->log();
    Reply r =
        daemon_->Call("POST", "/v1/sandboxes", R"({"ttl_s":600,"labels":{"suite":"conformance"}})");
    ASSERT_EQ(r.status, 201) << r.body << "\n" << daemon_->log();
    id_ = r.data()["id"];
    ASSERT_EQ(r.data()["backend"], BackendOf(GetParam()));
  }
  void TearDown() override {
    if (!id_.empty()) {
      EXPECT_EQ(daemon_->Call("DELETE", "/v1/sandboxes/" + id_).status, 200);
    }
  }

  // Skips the test, saying why, when the backend declares it cannot do `capability`.
  bool Lacks(const std::string& capability) {
    Json caps = daemon_->Capabilities();
    return caps.is_object() && caps.value(capability, true) == false;
  }

  // A backend that lacks a capability must refuse its calls with a clear 400: checked, then the
  // test is skipped with the backend's own words.
  void SkipRefused(const std::string& capability, const std::string& op, const Json& body) {
    Reply r = Api(op, body);
    EXPECT_EQ(r.status, 400) << r.body;
    const std::string message = r.json.is_object() ? r.json.value("message", "") : "";
    EXPECT_FALSE(message.empty()) << r.body;
    GTEST_SKIP() << GetParam() << " declares capabilities." << capability << " = false; " << op
                 << " answers 400: " << message;
  }

  Reply Api(const std::string& op, const Json& body) {
    return daemon_->Call("POST", "/v1/sandboxes/" + id_ + "/api/v1/" + op, body.dump());
  }
  // Runs a command in a session and returns its data (completed).
  Json Exec(const std::string& session, const std::string& command, double wait = 30) {
    Reply r = Api("shell/exec", {{"id", session}, {"command", command}, {"wait_seconds", wait}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.data();
  }
  Json Run(const std::string& command, const std::string& session = "default") {
    Reply r = Api("shell/run", {{"session_id", session}, {"command", command}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.data();
  }

  Daemon* daemon_ = nullptr;
  std::string id_;
};

}  // namespace agentbox::conformance
