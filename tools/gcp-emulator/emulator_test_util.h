#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "common/json_util.h"

// Test helpers: the emulator binary as a child process, and plain HTTP with libcurl.
namespace agentbox::gcpemu::testing {

struct HttpResult {
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string Header(const std::string& lower) const;
  Json json() const { return Json::parse(body, nullptr, false); }
};

// One request; `bearer` (when non-empty) becomes "Authorization: Bearer <bearer>".
HttpResult Http(const std::string& method, const std::string& url, const std::string& body = "",
                std::vector<std::string> headers = {}, const std::string& bearer = "t");

// Runs agentbox-gcp-emulator --listen tcp:127.0.0.1:0 --data DIR; Start() waits for its
// "listening on" line. The destructor stops it (SIGTERM, then SIGKILL) and reaps it.
class EmulatorProcess {
 public:
  explicit EmulatorProcess(std::string data_dir) : data_dir_(std::move(data_dir)) {}
  ~EmulatorProcess() { Stop(); }
  // Returns how long it took until the port was printed, in milliseconds (-1 on failure).
  double Start(const std::vector<std::string>& extra_args = {});
  void Stop();
  const std::string& url() const { return url_; }

 private:
  std::string data_dir_;
  pid_t pid_ = -1;
  std::string url_;
};

// Whether the Docker engine answers on /var/run/docker.sock.
bool DockerAvailable();

// A fresh directory under /tmp, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace agentbox::gcpemu::testing
