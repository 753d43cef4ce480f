#pragma once

// Shared by the jail backend's tests and its benchmark: a temporary state directory, a backend
// over it, and calls into a sandbox's guest.

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "backends/jail/fs_util.h"
#include "backends/jail/jail_backend.h"
#include "backends/jail/unix_http.h"
#include "common/json_util.h"

namespace agentbox::jail::testing {

inline JailBackendOptions TestOptions(const std::string& state_dir) {
  JailBackendOptions o;
  o.state_dir = state_dir;
  o.guest_binary = AGENTBOX_GUEST_BINARY;
  o.helper_binary = AGENTBOX_JAIL_HELPER;
  o.start_timeout = std::chrono::seconds(20);
  return o;
}

// A fresh directory under /tmp, removed (with everything in it) on destruction.
class TempDir {
 public:
  explicit TempDir(const char* prefix = "agentbox-jail-test") {
    std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
    }
  }
  ~TempDir() {
    if (!path_.empty()) {
      (void)RemoveTree(path_);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Whether jails can run here; `why` says what is missing. Probed once per process.
inline bool JailsAvailable(std::string* why) {
  static const std::pair<bool, std::string> result = [] {
    TempDir dir;
    JailBackend backend(TestOptions(dir.path() + "/state"));
    const ProbeResult p = backend.Probe();
    return std::make_pair(p.usable, p.reason);
  }();
  *why = result.second;
  return result.first;
}

struct ExecResult {
  int returncode = -1;
  std::string output;
  std::string error;  // transport or API error, empty when the command ran
};

inline std::string SocketPath(const SandboxInfo& info) {
  return info.guest_endpoint.substr(std::string("unix:").size());
}

// POSTs `body` to the guest endpoint `target` and returns the response's `data`.
inline Result<Json> GuestCall(const SandboxInfo& info, const std::string& target, const Json& body,
                              std::chrono::seconds timeout = std::chrono::seconds(60)) {
  auto r = UnixHttpRequest(SocketPath(info), "POST", target, info.guest_token, DumpJson(body),
                           Clock::now() + timeout);
  if (!r) {
    return Fail(r.error());
  }
  auto j = ParseJsonObject(r->body);
  if (!j) {
    return Fail(j.error());
  }
  if (r->status != 200) {
    return Fail(ErrorCode::kInternal, "HTTP " + std::to_string(r->status) + ": " + r->body);
  }
  return (*j)["data"];
}

// Runs `command` in the sandbox's session "t" and waits for it (killed after `timeout_s`).
inline ExecResult Exec(const SandboxInfo& info, const std::string& command, int timeout_s = 60) {
  ExecResult out;
  auto data = GuestCall(
      info, "/api/v1/shell/exec",
      {{"id", "t"}, {"command", command}, {"wait_seconds", timeout_s + 5}, {"timeout", timeout_s}},
      std::chrono::seconds(timeout_s + 15));
  if (!data) {
    out.error = data.error().message;
    return out;
  }
  out.output = data->value("output", std::string());
  if ((*data)["returncode"].is_number_integer()) {
    out.returncode = (*data)["returncode"].get<int>();
  }
  return out;
}

// Starts `command` as a background process of the sandbox; returns its pid inside.
inline Result<int> StartProcess(const SandboxInfo& info, const std::string& command) {
  auto data =
      GuestCall(info, "/api/v1/process/start", {{"session_id", "bg"}, {"command", command}});
  if (!data) {
    return Fail(data.error());
  }
  return data->value("pid", -1);
}

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace agentbox::jail::testing
