// A sandbox cannot freeze, trace, stop or read its own guest, and a guest that stops answering
// (frozen from the host here, as a successful ptrace attach used to leave it) never makes the
// daemon wait without limit: the call ends in a 504 naming the sandbox, the sandbox shows state
// unresponsive, agentbox_guest_unresponsive_total counts it, and restart-guest recovers it with
// /workspace and its sessions kept. Runs on every backend of the conformance suite.
#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "conformance_fixture.h"

namespace {

using agentbox::conformance::BackendOf;
using agentbox::conformance::Backends;
using agentbox::conformance::Conformance;
using agentbox::conformance::Json;
using agentbox::conformance::ParamName;
using agentbox::conformance::Reply;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kProbe = "/workspace/.ptrace_probe";

// Every path below `dir` (not following links) whose file name is `name`.
void FindNamed(const std::string& dir, const std::string& name, std::vector<std::string>& out) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return;
  }
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") {
      continue;
    }
    const std::string p = dir + "/" + n;
    struct stat st {};
    if (lstat(p.c_str(), &st) != 0) {
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      FindNamed(p, name, out);
    } else if (n == name) {
      out.push_back(p);
    }
  }
  closedir(d);
}

class GuestProtection : public Conformance {
 protected:
  void SetUp() override {
    Conformance::SetUp();
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    if (!IsSkipped() && !HasFatalFailure() && Lacks("guest_process") &&
        !test.starts_with("RestartGuestOfAnUnknownSandbox") &&
        !test.starts_with("WorkloadCanStillTraceItsOwnProcesses")) {
      // cloudrun job mode: the guest API is served by the daemon and a command's process lives
      // only for its execution; restart-guest is refused with a clear 400.
      Reply r = daemon_->Call("POST", "/v1/sandboxes/" + id_ + "/restart-guest", "{}");
      EXPECT_EQ(r.status, 400) << r.body;
      GTEST_SKIP() << GetParam()
                   << " declares capabilities.guest_process = false: there is no long-lived guest "
                      "process in the sandbox to trace, freeze or restart; restart-guest answers "
                   << r.status << ": " << r.json.value("message", "");
    }
  }

  // Uploads the static probe (tests/conformance/ptrace_probe.cc) into the sandbox.
  void UploadProbe() {
    std::ifstream in(PTRACE_PROBE_BIN, std::ios::binary);
    ASSERT_TRUE(in) << "cannot read " << PTRACE_PROBE_BIN;
    std::stringstream bin;
    bin << in.rdbuf();
    const std::string b = "probeBoundary";
    const std::string body =
        "--" + b + "\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n" + kProbe + "\r\n--" +
        b + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p\"\r\n\r\n" +
        bin.str() + "\r\n--" + b + "--\r\n";
    Reply up = daemon_->Call("POST", "/v1/sandboxes/" + id_ + "/api/v1/file/upload", body, true,
                             {"Content-Type: multipart/form-data; boundary=" + b});
    ASSERT_EQ(up.status, 200) << up.body;
    ASSERT_EQ(Exec("setup", std::string("chmod 755 ") + kProbe)["returncode"], 0);
  }

  // The guest's pid on this host: the peer of a connection to its unix socket (SO_PEERCRED
  // reports the listener's pid as seen from the caller's pid namespace), or, for a guest that
  // serves no socket of its own (the tunnel's, which dials out), the guest.pid file its backend
  // keeps. -1 with a failure recorded when it cannot be found.
  pid_t GuestHostPid() {
    if (GetParam() == "cloudrun-session") {
      return ExecutionGuestPid();
    }
    std::vector<std::string> pid_files;
    FindNamed(daemon_->state_dir(), "guest.pid", pid_files);
    for (const auto& path : pid_files) {
      if (path.find("/" + id_ + "/") != std::string::npos) {
        std::ifstream in(path);
        pid_t pid = -1;
        if (in >> pid && pid > 0) {
          return pid;
        }
      }
    }
    std::vector<std::string> sockets;
    FindNamed(daemon_->state_dir(), "guest.sock", sockets);
    for (const auto& path : sockets) {
      if (path.find("/" + id_ + "/") == std::string::npos) {
        continue;
      }
      const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
      ucred cred{};
      socklen_t len = sizeof(cred);
      const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;
      close(fd);
      if (ok && cred.pid > 0) {
        return cred.pid;
      }
    }
    ADD_FAILURE() << "no guest socket of " << id_ << " found under " << daemon_->state_dir();
    return -1;
  }

  // cloudrun session mode: the guest is the first process of its execution's container (the
  // emulator runs it on the local engine, labelled with the execution's name).
  pid_t ExecutionGuestPid() {
    const std::string detail = Sandbox().value("detail", "");
    const size_t at = detail.find("execution ");
    if (at == std::string::npos) {
      ADD_FAILURE() << "no execution in the detail of " << id_ << ": " << detail;
      return -1;
    }
    const std::string execution = detail.substr(at + 10, detail.find(' ', at + 10) - at - 10);
    const std::string cmd =
        "docker inspect -f '{{.State.Pid}}' $(docker ps -q --filter "
        "label=agentbox.gcp-emulator.execution=" +
        execution + ") 2>/dev/null";
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[64];
      size_t n;
      while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
        out.append(buf, n);
      }
      pclose(p);
    }
    const pid_t pid = static_cast<pid_t>(std::atoi(out.c_str()));
    if (pid <= 0) {
      ADD_FAILURE() << "no container runs execution " << execution;
      return -1;
    }
    return pid;
  }

  double UnresponsiveCount() {
    Reply m = daemon_->Call("GET", "/metrics");
    const std::string key =
        "agentbox_guest_unresponsive_total{backend=\"" + BackendOf(GetParam()) + "\"} ";
    const size_t at = m.body.find(key);
    return at == std::string::npos ? 0 : std::stod(m.body.substr(at + key.size()));
  }

  Json Sandbox() { return daemon_->Call("GET", "/v1/sandboxes/" + id_).data(); }

  Json Listed() {
    const Json list = daemon_->Call("GET", "/v1/sandboxes").data();
    for (const auto& sb : list["sandboxes"]) {
      if (sb["id"] == id_) {
        return sb;
      }
    }
    return Json();
  }
};

TEST_P(GuestProtection, SandboxCannotTraceStopOrReadItsGuest) {
  if (GetParam() == "tunnel") {
    // Not a capability a backend declares: this test double isolates nothing, so nothing can
    // protect its guest, and "kill -STOP 1" below would signal the host's own init.
    GTEST_SKIP() << "tunnel is the tunnel's test double: its guest is a plain local process (no "
                    "pid namespace, every capability of its user), so its workload can trace and "
                    "signal it, and pid 1 is the host's init; guest protection is the isolating "
                    "backends' job (jail, docker)";
  }
  UploadProbe();
  Json attach = Exec("s", std::string(kProbe) + " attach 1; echo rc=$?");
  EXPECT_NE(attach["output"].get<std::string>().find("attach 1: refused"), std::string::npos)
      << attach;
  EXPECT_NE(attach["output"].get<std::string>().find("rc=1"), std::string::npos) << attach;
  Json mem = Exec("s", std::string(kProbe) + " mem 1; echo rc=$?");
  EXPECT_NE(mem["output"].get<std::string>().find("mem 1: refused"), std::string::npos) << mem;
  EXPECT_EQ(
      Exec("s", "cat /proc/1/environ >/dev/null 2>&1 && echo readable || echo refused")["output"],
      "refused\n");
  // Signals from inside: the kernel drops SIGKILL/SIGSTOP to a pid namespace's init, and the
  // guest ignores the shutdown signals a process of its own sandbox sends.
  Exec("s", "kill -STOP 1; kill -9 1; kill -TERM 1; kill -INT 1; sleep 0.3");
  Json state = Exec("t", "grep '^State:' /proc/1/status");
  EXPECT_EQ(state["output"].get<std::string>().find("stopped"), std::string::npos) << state;
  EXPECT_EQ(Exec("t", "echo still answering")["output"], "still answering\n");
  EXPECT_EQ(Sandbox()["state"], "running");
}

TEST_P(GuestProtection, WorkloadCanStillTraceItsOwnProcesses) {
  UploadProbe();
  Json child = Exec("s", std::string(kProbe) + " child; echo rc=$?");
  EXPECT_NE(child["output"].get<std::string>().find("ok traced and read"), std::string::npos)
      << child;
  EXPECT_NE(child["output"].get<std::string>().find("rc=0"), std::string::npos) << child;
}

TEST_P(GuestProtection, FrozenGuestTimesOutShowsUnresponsiveAndRecovers) {
  EXPECT_EQ(Exec("s", "echo kept > /workspace/kept.txt; cd /tmp; pwd")["output"], "/tmp\n");
  const pid_t guest = GuestHostPid();
  ASSERT_GT(guest, 0);
  const double counted = UnresponsiveCount();
  ASSERT_EQ(kill(guest, SIGSTOP), 0)
      << "cannot stop the guest (pid " << guest << "): " << std::strerror(errno);

  // The deadline of an exec is its wait_seconds plus the daemon's margin (10 s by default).
  auto t0 = Clock::now();
  Reply r = Api("shell/exec", {{"id", "s"}, {"command", "echo hi"}, {"wait_seconds", 1}});
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_NE(r.json.value("message", "").find("sandbox '" + id_ + "'"), std::string::npos) << r.body;
  EXPECT_GE(waited, 10.5);
  EXPECT_LT(waited, 20.0);
  Json got = Sandbox();
  EXPECT_EQ(got["state"], "unresponsive") << got;
  EXPECT_FALSE(got["detail"].get<std::string>().empty());
  EXPECT_EQ(Listed()["state"], "unresponsive");
  EXPECT_EQ(UnresponsiveCount(), counted + 1);

  // Known unresponsive: later calls fail after a short health check, not their own deadline.
  t0 = Clock::now();
  EXPECT_EQ(Api("file/exists", {{"path", "/workspace"}}).status, 504);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 8.0);
  EXPECT_EQ(UnresponsiveCount(), counted + 1);  // one guest, counted once

  // The guest answers again: back to running without any call from the client.
  ASSERT_EQ(kill(guest, SIGCONT), 0);
  const auto deadline = Clock::now() + 20s;
  while (Sandbox()["state"] != "running" && Clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(Sandbox()["state"], "running");
  // The thawed guest now runs the "echo hi" it received while frozen (its client already had the
  // 504): until that ends, the session answers 409, as for any command still running.
  Reply pwd;
  const auto idle_by = Clock::now() + 10s;
  do {
    pwd = Api("shell/exec", {{"id", "s"}, {"command", "pwd"}, {"wait_seconds", 30}});
    if (pwd.status != 409) break;
    std::this_thread::sleep_for(100ms);
  } while (Clock::now() < idle_by);
  EXPECT_EQ(pwd.status, 200) << pwd.body;
  EXPECT_EQ(pwd.data()["output"], "/tmp\n") << pwd.body;

  // Frozen again, then replaced: /workspace is kept, and the session comes back from the
  // daemon's snapshot of its state (still in /tmp), saying so.
  ASSERT_EQ(kill(guest, SIGSTOP), 0);
  t0 = Clock::now();
  Reply restarted = daemon_->Call("POST", "/v1/sandboxes/" + id_ + "/restart-guest", "{}");
  EXPECT_EQ(restarted.status, 200) << restarted.body;
  EXPECT_EQ(restarted.data()["state"], "running") << restarted.body;
  std::printf("restart-guest on %s took %.0f ms\n", GetParam().c_str(),
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  Json after = Exec("s", "cat /workspace/kept.txt; pwd");
  EXPECT_EQ(after["output"], "kept\n/tmp\n");
  EXPECT_NE(after.value("notice", "").find("was restored"), std::string::npos) << after;
  EXPECT_EQ(Sandbox()["state"], "running");
  EXPECT_NE(GuestHostPid(), guest);
}

TEST_P(GuestProtection, RestartGuestOfAnUnknownSandboxIs404) {
  EXPECT_EQ(daemon_->Call("POST", "/v1/sandboxes/sb-nope/restart-guest", "{}").status, 404);
  EXPECT_EQ(daemon_->Call("GET", "/v1/sandboxes/" + id_ + "/restart-guest").status, 405);
}

INSTANTIATE_TEST_SUITE_P(Backends, GuestProtection, ::testing::ValuesIn(Backends()), ParamName);

}  // namespace
