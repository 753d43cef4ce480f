// Helpers of the cloudrun end-to-end tests: plain HTTP with libcurl, child processes, a private
// agentbox-gcp-emulator and agentboxd binaries with their own state directories.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "fakes/child_process.h"
#include "fakes/curl_http.h"

namespace agentbox::cloudrun_e2e {

using Json = nlohmann::json;
using namespace std::chrono_literals;

using test_support::FreePort;
using test_support::Reply;
using test_support::Spawn;
using test_support::Stop;

// One HTTP call over TCP (url) or a unix socket (socket non-empty, url's host ignored).
inline Reply Http(const std::string& socket, const std::string& method, const std::string& url,
                  const std::string& body = "", const std::vector<std::string>& headers = {}) {
  return test_support::CurlHttp(socket, method, url, body, headers);
}

// A private emulator: Cloud Run + Cloud Storage on a free port.
class Emulator {
 public:
  explicit Emulator(const std::string& dir) {
    int out[2];
    if (pipe(out) != 0) {
      return;
    }
    pid_ =
        Spawn({AGENTBOX_GCP_EMULATOR_BIN, "--listen", "tcp:127.0.0.1:0", "--data", dir + "/data"},
              dir + "/emulator.log", out[1]);
    close(out[1]);
    url_ = test_support::ReadListenUrl(out[0]);
  }
  ~Emulator() { Stop(pid_); }
  const std::string& url() const { return url_; }
  Reply Call(const std::string& method, const std::string& path, const Json& body = Json()) {
    return Http("", method, url_ + path, body.is_null() ? "" : body.dump(),
                {"Authorization: Bearer e2e", "Content-Type: application/json"});
  }
  bool CreateBucket(const std::string& name) {
    return Call("POST", "/storage/v1/b?project=e2e-project", {{"name", name}}).status == 200;
  }
  void Faults(const Json& f) { EXPECT_EQ(Call("PUT", "/emulator/v1/faults", f).status, 200); }

 private:
  pid_t pid_ = -1;
  std::string url_;
};

// One agentboxd with its own state directory.
class Daemon {
 public:
  // `listen`: more --listen addresses than the unix socket (e.g. the tunnel's tcp:127.0.0.1:P).
  Daemon(const std::string& dir, const std::map<std::string, std::string>& cfg,
         const std::vector<std::string>& listen = {})
      : dir_(dir) {
    mkdir(dir.c_str(), 0700);
    socket_ = dir + "/agentboxd.sock";
    const std::string conf = dir + "/agentboxd.conf";
    FILE* f = fopen(conf.c_str(), "w");
    for (const auto& [k, v] : cfg) {
      fprintf(f, "%s=%s\n", k.c_str(), v.c_str());
    }
    fclose(f);
    std::vector<std::string> args = {AGENTBOXD_BIN, "--listen",     "unix:" + socket_,
                                     "--state-dir", dir + "/state", "--env-file",
                                     "/dev/null",   "--config",     conf};
    for (const auto& l : listen) {
      args.insert(args.end(), {"--listen", l});
    }
    pid_ = Spawn(args, dir + "/agentboxd.log");
    ready_ = test_support::PollUntil(20s, [&] { return Call("GET", "/healthz").status == 200; });
  }
  ~Daemon() { Stop(pid_); }
  bool ready() const { return ready_; }
  std::string log() const { return test_support::ReadLog(dir_ + "/agentboxd.log"); }
  Reply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return Http(socket_, method, "http://agentboxd" + path, body);
  }
  Reply Api(const std::string& id, const std::string& op, const Json& body) {
    return Call("POST", "/v1/sandboxes/" + id + "/api/v1/" + op, body.dump());
  }
  // file/upload of `content` to `path`, as multipart/form-data.
  Reply Upload(const std::string& id, const std::string& path, const std::string& content) {
    const std::string b = "agentbox-e2e-boundary";
    const std::string body = "--" + b +
                             "\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n" + path +
                             "\r\n--" + b +
                             "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n"
                             "Content-Type: application/octet-stream\r\n\r\n" +
                             content + "\r\n--" + b + "--\r\n";
    return Http(socket_, "POST", "http://agentboxd/v1/sandboxes/" + id + "/api/v1/file/upload",
                body, {"Content-Type: multipart/form-data; boundary=" + b});
  }
  Reply Create(const Json& body = Json::object()) {
    Json b = body;
    b["ttl_s"] = 600;
    return Call("POST", "/v1/sandboxes", b.dump());
  }

 private:
  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
  bool ready_ = false;
};

// The base of the cloudrun end-to-end fixtures: a temporary directory with a private emulator
// and its bucket, the daemons a test starts below it, and at the end what they left destroyed
// through a sweeper daemon and the directory removed.
class EmulatorTest : public ::testing::Test {
 protected:
  // The Docker engine's socket: DOCKER_HOST when it is a unix:// one.
  static std::string DockerSocket() {
    const char* host = std::getenv("DOCKER_HOST");
    return host && std::string(host).starts_with("unix://") ? std::string(host).substr(7)
                                                            : "/var/run/docker.sock";
  }
  // The fixture's SetUp: skips the test when there is no Docker engine at `docker_socket`.
  void StartEmulator(const std::string& docker_socket, const std::string& dir_prefix) {
    if (access(docker_socket.c_str(), W_OK) != 0) {
      GTEST_SKIP() << "no Docker engine at " << docker_socket
                   << ": the emulator runs executions on it (CI: scripts/start-dockerd.sh)";
    }
    std::string tmpl = "/tmp/" + dir_prefix + "-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    emulator_ = std::make_unique<Emulator>(dir_);
    ASSERT_FALSE(emulator_->url().empty()) << "agentbox-gcp-emulator did not start";
    ASSERT_TRUE(emulator_->CreateBucket("e2e-bucket"));
  }
  void TearDown() override {
    daemons_.clear();
    if (emulator_) {
      Daemon* sweeper = StartSweeper();
      const Json sandboxes = sweeper->Call("GET", "/v1/sandboxes").data()["sandboxes"];
      for (const auto& sb : sandboxes) {
        sweeper->Call("DELETE", "/v1/sandboxes/" + sb["id"].get<std::string>());
      }
      daemons_.clear();
      emulator_.reset();
    }
    if (!dir_.empty()) {
      int rc = system(("rm -rf '" + dir_ + "'").c_str());
      (void)rc;
    }
  }
  // A daemon with no warm pool that lists and destroys what the test's daemons left.
  virtual Daemon* StartSweeper() = 0;

  // The cloudrun settings pointing at the emulator (no warm pool, no probe cache), plus `extra`.
  std::map<std::string, std::string> EmulatorConfig(std::map<std::string, std::string> extra) {
    std::map<std::string, std::string> c = {{"SANDBOX_GCP_PROJECT", "e2e-project"},
                                            {"SANDBOX_GCS_BUCKET", "e2e-bucket"},
                                            {"AGENTBOX_CLOUDRUN_ENDPOINT", emulator_->url()},
                                            {"STORAGE_EMULATOR_HOST", emulator_->url()},
                                            {"GOOGLE_OAUTH_ACCESS_TOKEN", "e2e"},
                                            {"AGENTBOX_CLOUDRUN_POLL_MS", "50"},
                                            {"AGENTBOX_CLOUDRUN_IMAGE", "agentbox/base:latest"},
                                            {"AGENTBOX_WARM_POOL_SIZE", "0"},
                                            {"AGENTBOX_PROBE_TTL_MS", "0"}};
    for (auto& [k, v] : extra) {
      c[k] = v;
    }
    return c;
  }
  // Keeps a started daemon for the test (stopped at TearDown), expecting it ready.
  Daemon* Keep(std::unique_ptr<Daemon> d) {
    EXPECT_TRUE(d->ready()) << d->log();
    daemons_.push_back(std::move(d));
    return daemons_.back().get();
  }

  std::string dir_;
  std::unique_ptr<Emulator> emulator_;
  std::vector<std::unique_ptr<Daemon>> daemons_;
};

}  // namespace agentbox::cloudrun_e2e
