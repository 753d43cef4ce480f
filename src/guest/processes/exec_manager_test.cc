// exec/* processes against real programs: separate stdout and stderr, exit codes and signals in
// envd's terms, stdin, attaching a second stream, and running as another user.
#include "guest/processes/exec_manager.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <fstream>
#include <sstream>

#include "common/base64.h"
#include "common/json_util.h"

namespace agentbox::guest {
namespace {

struct Collected {
  std::string stdout_bytes;
  std::string stderr_bytes;
  std::string pty_bytes;
  std::vector<Json> events;
  bool ended = false;
};

class ExecManagerTest : public ::testing::Test {
 protected:
  ExecManagerTest()
      : reaper_(io_),
        exec_(io_, reaper_, {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C"}) {}

  // Pulls `source` until its last piece, running the io loop meanwhile.
  Collected Drain(const std::shared_ptr<http::QueueSource>& source) {
    Collected c;
    std::string pending;
    bool waiting = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!c.ended && std::chrono::steady_clock::now() < deadline) {
      if (!waiting) {
        waiting = true;
        source->Next([&](Result<std::string_view> bytes, bool last) {
          waiting = false;
          if (bytes) {
            pending.append(*bytes);
          }
          size_t nl;
          while ((nl = pending.find('\n')) != std::string::npos) {
            Json j = Json::parse(pending.substr(0, nl));
            pending.erase(0, nl + 1);
            if (j["event"] == "stdout") {
              c.stdout_bytes += *Base64Decode(j["data"].get<std::string>());
            } else if (j["event"] == "pty") {
              c.pty_bytes += *Base64Decode(j["data"].get<std::string>());
            } else if (j["event"] == "stderr") {
              c.stderr_bytes += *Base64Decode(j["data"].get<std::string>());
            }
            c.events.push_back(std::move(j));
          }
          if (last) {
            c.ended = true;
          }
        });
      }
      io_.run_for(std::chrono::milliseconds(10));
      io_.restart();
    }
    return c;
  }

  boost::asio::io_context io_;
  ChildReaper reaper_;
  ExecManager exec_;
};

TEST_F(ExecManagerTest, SeparatesStreamsAndReportsTheExitCode) {
  auto src = std::make_shared<http::QueueSource>();
  ExecSpec s;
  s.cmd = "sh";
  s.args = {"-c", "echo out; echo err >&2; exit 3"};
  auto pid = exec_.Start(s, src);
  ASSERT_TRUE(pid) << pid.error().message;
  Collected c = Drain(src);
  ASSERT_TRUE(c.ended);
  EXPECT_EQ(c.events.front()["event"], "start");
  EXPECT_EQ(c.events.front()["pid"], *pid);
  EXPECT_EQ(c.stdout_bytes, "out\n");
  EXPECT_EQ(c.stderr_bytes, "err\n");
  const Json& end = c.events.back();
  EXPECT_EQ(end["event"], "end");
  EXPECT_EQ(end["exit_code"], 3);
  EXPECT_EQ(end["exited"], true);
  EXPECT_EQ(end["status"], "exit status 3");
  EXPECT_TRUE(exec_.List().empty());
}

TEST_F(ExecManagerTest, StdinAndEnvironment) {
  auto src = std::make_shared<http::QueueSource>();
  ExecSpec s;
  s.cmd = "sh";
  s.args = {"-c", "printf '%s:' \"$GREETING\"; cat"};
  s.envs = {{"GREETING", "hello"}};
  s.stdin = true;
  auto pid = exec_.Start(s, src);
  ASSERT_TRUE(pid) << pid.error().message;
  ASSERT_TRUE(exec_.WriteStdin(*pid, "abc"));
  ASSERT_TRUE(exec_.CloseStdin(*pid));
  Collected c = Drain(src);
  EXPECT_EQ(c.stdout_bytes, "hello:abc");
  EXPECT_EQ(c.events.back()["exit_code"], 0);
}

TEST_F(ExecManagerTest, SignalAndSecondStream) {
  auto first = std::make_shared<http::QueueSource>();
  ExecSpec s;
  s.cmd = "sleep";
  s.args = {"30"};
  s.tag = "sleeper";
  auto pid = exec_.Start(s, first);
  ASSERT_TRUE(pid);
  ASSERT_EQ(exec_.List().size(), 1u);
  EXPECT_EQ(*exec_.Resolve(std::nullopt, std::string("sleeper")), *pid);
  auto second = std::make_shared<http::QueueSource>();
  ASSERT_TRUE(exec_.Attach(*pid, second));
  ASSERT_TRUE(exec_.Signal(*pid, SIGKILL));
  Collected c = Drain(second);
  ASSERT_TRUE(c.ended);
  EXPECT_EQ(c.events.front()["event"], "start");
  EXPECT_EQ(c.events.back()["exit_code"], -1);
  EXPECT_EQ(c.events.back()["exited"], false);
  EXPECT_EQ(c.events.back()["status"], "signal: killed");
  EXPECT_EQ(exec_.Resolve(*pid, std::nullopt).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(exec_.WriteStdin(*pid, "x").error().code, ErrorCode::kNotFound);
}

TEST_F(ExecManagerTest, BadInput) {
  ExecSpec s;
  s.cmd = "true";
  s.cwd = "/no/such/dir";
  EXPECT_EQ(exec_.Start(s, nullptr).error().code, ErrorCode::kInvalidArgument);
  s.cwd.reset();
  s.user = "no-such-user-here";
  EXPECT_EQ(exec_.Start(s, nullptr).error().code, ErrorCode::kNotFound);
  s.user.clear();
  s.cmd = "/no/such/program";
  EXPECT_EQ(exec_.Start(s, nullptr).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(ExecManagerTest, RunsAsAnotherUser) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to switch users";
  }
  auto nobody = LookUpUser("nobody");
  if (!nobody) {
    GTEST_SKIP() << "no 'nobody' account in /etc/passwd";
  }
  auto src = std::make_shared<http::QueueSource>();
  ExecSpec s;
  s.cmd = "sh";
  s.args = {"-c", "id -u; echo $HOME $USER"};
  s.user = "nobody";
  s.cwd = "/";
  ASSERT_TRUE(exec_.Start(s, src));
  Collected c = Drain(src);
  // A stream, not operator+: g++ 12 raises a false -Wrestrict on the concatenation here.
  std::ostringstream want;
  want << nobody->uid << "\n" << nobody->home << " nobody\n";
  EXPECT_EQ(c.stdout_bytes, want.str());
}

TEST(UserAccounts, ParsesPasswdAndUidMaps) {
  const std::string path = "/tmp/agentbox-exec-passwd-" + std::to_string(::getpid());
  std::ofstream(path) << "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1001::/home/user:/bin/bash\n";
  auto u = LookUpUser("user", path);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 1001u);
  EXPECT_EQ(u->home, "/home/user");
  EXPECT_EQ(LookUpUser("nobody-here", path).error().code, ErrorCode::kNotFound);
  ::unlink(path.c_str());
  EXPECT_TRUE(UidMapped(1000, "         0     100000      65536\n"));
  EXPECT_FALSE(UidMapped(1000, "         0       1000          1\n"));
  EXPECT_TRUE(UidMapped(0, "         0       1000          1\n"));
}

}  // namespace
}  // namespace agentbox::guest

namespace agentbox::guest {
namespace {

TEST_F(ExecManagerTest, PtyIsTheControllingTerminalAndTakesInputAndResize) {
  auto src = std::make_shared<http::QueueSource>();
  ExecSpec s;
  s.cmd = "sh";
  // Reads one line from the terminal, then reports the tty, its size and the line.
  s.args = {"-c", "read line; tty; stty size; echo \"got:$line\"; test -t 0 && echo isatty"};
  s.pty = ExecSpec::PtySize{30, 100};
  auto pid = exec_.Start(s, src);
  ASSERT_TRUE(pid) << pid.error().message;
  ASSERT_TRUE(exec_.Resize(*pid, 40, 120));
  ASSERT_TRUE(exec_.WriteStdin(*pid, "hello\n"));
  Collected c = Drain(src);
  ASSERT_TRUE(c.ended);
  EXPECT_TRUE(c.stdout_bytes.empty());
  EXPECT_NE(c.pty_bytes.find("/dev/pts/"), std::string::npos) << c.pty_bytes;
  EXPECT_NE(c.pty_bytes.find("40 120"), std::string::npos) << c.pty_bytes;
  EXPECT_NE(c.pty_bytes.find("got:hello"), std::string::npos) << c.pty_bytes;
  EXPECT_NE(c.pty_bytes.find("isatty"), std::string::npos) << c.pty_bytes;
  EXPECT_EQ(c.events.back()["exit_code"], 0);
}

TEST_F(ExecManagerTest, ResizeNeedsAPty) {
  auto src = std::make_shared<http::QueueSource>();
  ExecSpec s;
  s.cmd = "sleep";
  s.args = {"5"};
  auto pid = exec_.Start(s, src);
  ASSERT_TRUE(pid);
  auto r = exec_.Resize(*pid, 10, 10);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  EXPECT_EQ(exec_.Resize(99999999, 10, 10).error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(exec_.Signal(*pid, SIGKILL));
  Drain(src);
}

}  // namespace
}  // namespace agentbox::guest
