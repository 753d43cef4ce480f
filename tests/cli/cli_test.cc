// The `agentbox` binary end to end: an in-process agentboxd (DaemonApi + http::Server) on a unix
// socket and on TCP with an API key, a test-double backend whose sandboxes are real agentbox-guest
// processes, and the real CLI run as a child process with its stdin, stdout, stderr and exit
// status captured. Plus unit tests of the CLI's pure helpers.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "cli/client.h"
#include "cli/format.h"
#include "fakes/daemon_fixture.h"
#include "fakes/fixed_config.h"

extern char** environ;

namespace agentbox::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Outcome {
  int status = -1;  // exit status, or 128 + signal
  std::string out;
  std::string err;
};

// A running `agentbox` process with pipes on its stdin, stdout and stderr. A reader thread
// drains stdout and stderr so the child never blocks on a full pipe. Killed and reaped on
// destruction if still running.
class Child {
 public:
  // With `stdin_tty` the child's stdin is a pseudo-terminal (isatty is true) instead of a pipe.
  Child(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
        bool stdin_tty = false) {
    int in[2], out[2], err[2];
    if (stdin_tty) {
      in[1] = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
      EXPECT_GE(in[1], 0);
      EXPECT_EQ(::grantpt(in[1]), 0);
      EXPECT_EQ(::unlockpt(in[1]), 0);
      in[0] = ::open(::ptsname(in[1]), O_RDWR | O_NOCTTY | O_CLOEXEC);
      EXPECT_GE(in[0], 0);
    } else {
      EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
    }
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(err, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    std::vector<std::string> argv_s = {AGENTBOX_CLI_BIN};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    // The child's environment: ours without any AGENTBOX_* variable, plus `env`.
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e) {
      if (!std::string_view(*e).starts_with("AGENTBOX_")) {
        env_s.emplace_back(*e);
      }
    }
    for (const auto& [k, v] : env) {
      env_s.push_back(k + "=" + v);
    }
    std::vector<char*> envp;
    for (auto& e : env_s) {
      envp.push_back(e.data());
    }
    envp.push_back(nullptr);
    EXPECT_EQ(::posix_spawn(&pid_, AGENTBOX_CLI_BIN, &fa, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    stdin_ = in[1];
    reader_ = std::thread([this, o = out[0], e = err[0]] { Drain(o, e); });
  }

  ~Child() {
    CloseStdin();
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) {
      reader_.join();
    }
  }

  void Write(const std::string& s) {
    ASSERT_EQ(::write(stdin_, s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  void CloseStdin() {
    if (stdin_ >= 0) {
      ::close(stdin_);
      stdin_ = -1;
    }
  }
  void Signal(int sig) { ::kill(pid_, sig); }

  // stdout so far (thread-safe).
  std::string Stdout() {
    std::lock_guard<std::mutex> lock(mu_);
    return result_.out;
  }
  // stderr so far (thread-safe).
  std::string Stderr() {
    std::lock_guard<std::mutex> lock(mu_);
    return result_.err;
  }

  // Waits for the exit (killing the child after `limit`) and returns everything it printed.
  // Closes stdin first unless `close_stdin` is false (a pseudo-terminal drops unread input when
  // its master closes, so a child that must read everything is left to exit by itself).
  Outcome Wait(std::chrono::seconds limit = std::chrono::seconds(60), bool close_stdin = true) {
    if (close_stdin) {
      CloseStdin();
    }
    const auto deadline = Clock::now() + limit;
    int ws = 0;
    while (::waitpid(pid_, &ws, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ADD_FAILURE() << "agentbox did not exit within " << limit.count() << "s";
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &ws, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    reader_.join();
    std::lock_guard<std::mutex> lock(mu_);
    result_.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    // The CLI prints the daemon's Warning headers; against the daemon of the same tree there
    // must be none: the CLI never sends a field agentboxd (or the guest) does not know.
    if (!allow_warnings_) {
      EXPECT_EQ(result_.err.find("agentbox: warning:"), std::string::npos)
          << "the CLI sent a field the daemon does not know:\n"
          << result_.err;
    }
    return result_;
  }

  // For a test that makes the server send warnings on purpose.
  void AllowWarnings() { allow_warnings_ = true; }

 private:
  void Drain(int out, int err) {
    pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
    int open = 2;
    while (open > 0) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) {
          continue;
        }
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
          continue;
        }
        char buf[65536];
        ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          ::close(fds[i].fd);
          fds[i].fd = -1;
          --open;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu_);
        (i == 0 ? result_.out : result_.err).append(buf, static_cast<size_t>(n));
      }
    }
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  bool allow_warnings_ = false;
  std::thread reader_;
  std::mutex mu_;
  Outcome result_;
};

bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class CliTest : public fakes::DaemonFixture {
 protected:
  std::map<std::string, std::string> SocketEnv() const { return {{"AGENTBOX_SOCKET", unix_sock_}}; }

  // Runs `agentbox args...` against the unix socket, feeding `input` on stdin.
  Outcome Run(const std::vector<std::string>& args, const std::string& input = "") {
    Child c(args, SocketEnv());
    if (!input.empty()) {
      c.Write(input);
    }
    return c.Wait();
  }

  Outcome RunEnv(const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env) {
    Child c(args, env);
    return c.Wait();
  }

  std::string CreateSandbox(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"create"};
    args.insert(args.end(), extra.begin(), extra.end());
    Outcome o = Run(args);
    EXPECT_EQ(o.status, 0) << o.err;
    return Trim(o.out);
  }
};

// A daemon that takes runtime flags, as agentboxd does.
class CliFlagsTest : public CliTest {
 protected:
  void SetUp() override {
    options_.load_config = fakes::FixedConfig({{"SANDBOX_BACKEND", "process"}});
    CliTest::SetUp();
  }
};

TEST_F(CliFlagsTest, FlagsShowSetAndUnset) {
  Outcome none = Run({"flags"});
  ASSERT_EQ(none.status, 0) << none.err;
  EXPECT_NE(none.out.find("no runtime flags"), std::string::npos) << none.out;
  Outcome set = Run({"flags", "AGENTBOX_PROBE_TTL_MS=500", "AGENTBOX_ROLLOUT_KILL_SWITCH=true"});
  ASSERT_EQ(set.status, 0) << set.err;
  EXPECT_NE(set.out.find("AGENTBOX_PROBE_TTL_MS=500\n"), std::string::npos) << set.out;
  EXPECT_NE(set.out.find("AGENTBOX_ROLLOUT_KILL_SWITCH=true\n"), std::string::npos) << set.out;
  EXPECT_NE(set.out.find("new sandboxes: process"), std::string::npos) << set.out;
  Outcome shown = Run({"flags"});
  EXPECT_NE(shown.out.find("AGENTBOX_PROBE_TTL_MS=500"), std::string::npos) << shown.out;
  Outcome unset = Run({"flags", "--unset", "AGENTBOX_PROBE_TTL_MS"});
  ASSERT_EQ(unset.status, 0) << unset.err;
  EXPECT_EQ(unset.out.find("AGENTBOX_PROBE_TTL_MS"), std::string::npos) << unset.out;
  // Mistakes exit 2 with one line naming the problem.
  Outcome bad = Run({"flags", "AGENTBOX_LISTEN=tcp:0.0.0.0:1"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("not a runtime flag"), std::string::npos) << bad.err;
  Outcome malformed = Run({"flags", "NOEQUALS"});
  EXPECT_EQ(malformed.status, 2);
  EXPECT_NE(malformed.err.find("is not KEY=VALUE"), std::string::npos) << malformed.err;
}

TEST_F(CliTest, CreateListInfoTimeoutRemove) {
  Outcome c = Run({"create", "--label", "team=a", "--label", "tier=x", "--ttl", "600"});
  ASSERT_EQ(c.status, 0) << c.err;
  const std::string id = Trim(c.out);
  EXPECT_TRUE(std::regex_match(id, std::regex("sb-[0-9a-f]+"))) << id;
  EXPECT_NE(c.err.find("backend process (reason STATIC)"), std::string::npos) << c.err;
  // Every create carries an Idempotency-Key (so a lost connection can be retried safely).
  EXPECT_EQ(backend_->Get(id)->spec.labels.count(daemon::kIdempotencyLabel), 1u);

  Outcome j = Run({"create", "--json", "--memory-mb", "256", "--cpus", "0.5", "--pids", "64",
                   "--disk-mb", "512", "--env", "FOO=bar", "--read-only-root"});
  ASSERT_EQ(j.status, 0) << j.err;
  Json created = Json::parse(j.out, nullptr, false);
  ASSERT_TRUE(created.is_object()) << j.out;
  EXPECT_EQ(created["read_only_root"], true);
  EXPECT_TRUE(backend_->Get(created["id"].get<std::string>())->spec.read_only_root);
  EXPECT_EQ(created["limits"]["memory_mb"], 256);
  EXPECT_EQ(created["limits"]["pids"], 64);
  EXPECT_DOUBLE_EQ(created["limits"]["cpus"].get<double>(), 0.5);
  EXPECT_EQ(created["limits"]["disk_bytes"], 512 << 20);
  EXPECT_EQ(created["disk"]["limit_bytes"], 512 << 20);
  const std::string id2 = created["id"];

  Outcome ls = Run({"ls"});
  ASSERT_EQ(ls.status, 0) << ls.err;
  EXPECT_TRUE(ls.out.starts_with("ID "));
  for (const char* col : {"BACKEND", "STATE", "CREATED", "EXPIRES", "DISK", "LABELS"}) {
    EXPECT_NE(ls.out.find(col), std::string::npos) << col;
  }
  EXPECT_TRUE(std::regex_search(
      ls.out, std::regex(id + " +process +running +[0-9]+s ago +in (9|10)m +- +team=a,tier=x")))
      << ls.out;
  // The process test double has no disk of its own: the limit shows, the usage is unknown.
  EXPECT_TRUE(std::regex_search(ls.out, std::regex(id2 + " +process +running .* -/512M")))
      << ls.out;

  Outcome lsj = Run({"ls", "--json"});
  Json list = Json::parse(lsj.out, nullptr, false);
  ASSERT_TRUE(list.is_array()) << lsj.out;
  EXPECT_EQ(list.size(), 2u);

  Outcome info = Run({"info"});
  ASSERT_EQ(info.status, 0) << info.err;
  Json i = Json::parse(info.out, nullptr, false);
  EXPECT_EQ(i["backend"], "process") << info.out;
  EXPECT_NE(info.out.find("\n  \""), std::string::npos) << "not pretty-printed";

  Outcome t = Run({"timeout", id, "7200"});
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_NE(t.out.find(id + " expires in 1h59m"), std::string::npos) << t.out;

  Outcome rm = Run({"rm", id, id2});
  ASSERT_EQ(rm.status, 0) << rm.err;
  EXPECT_EQ(rm.out, id + "\n" + id2 + "\n");
  EXPECT_EQ(Run({"ls", "--json"}).out, "[]\n");
  Outcome again = Run({"rm", id});
  EXPECT_EQ(again.status, 2);
  EXPECT_EQ(again.err, "agentbox: sandbox '" + id + "' not found (HTTP 404)\n");
}

TEST_F(CliTest, ExecSeparatesStreamsAndExitsWithTheCommandsStatus) {
  const std::string id = CreateSandbox({"--env", "FOO=from-create"});
  Outcome o = Run({"exec", id, "--", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(o.status, 3);
  EXPECT_EQ(o.out, "out\n");
  EXPECT_EQ(o.err, "err\n");

  // Several words after -- are argv words, quoted for the shell.
  o = Run({"exec", id, "--", "printf", "%s|", "a b", "it's", "$FOO"});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out, "a b|it's|$FOO|");

  // One string without -- is a command line; the sandbox has the environment given at create.
  o = Run({"exec", id, "echo $FOO"});
  EXPECT_EQ(o.out, "from-create\n");

  o = Run({"exec", id, "--timeout", "1", "--", "sleep 20; echo never"});
  EXPECT_EQ(o.status, 124);
  EXPECT_EQ(o.out, "");
  EXPECT_NE(o.err.find("timed out"), std::string::npos) << o.err;

  // --cwd applies to one command only.
  o = Run({"exec", id, "--cwd", "/tmp", "--", "pwd"});
  EXPECT_EQ(o.out, "/tmp\n") << o.err;
  o = Run({"exec", id, "--", "pwd"});
  EXPECT_EQ(o.out, Workspace(id) + "\n");
  o = Run({"exec", id, "--cwd", dir_ + "/no-such-dir", "--", "pwd"});
  EXPECT_NE(o.status, 0);
  EXPECT_EQ(o.out, "");

  o = Run({"exec", id, "--", "sh -c 'kill -9 $$'"});
  EXPECT_EQ(o.status, 137);
}

TEST_F(CliTest, ExecStatePersistsInASession) {
  const std::string id = CreateSandbox();
  EXPECT_EQ(Run({"exec", id, "--session", "s1", "--", "cd /tmp && export X=5 && f() { echo f$1; }"})
                .status,
            0);
  Outcome o = Run({"exec", id, "--session", "s1", "--", "echo $PWD $X; f 1"});
  EXPECT_EQ(o.out, "/tmp 5\nf1\n") << o.err;
  // Another session has its own state.
  o = Run({"exec", id, "-s", "s2", "--", "echo $PWD ${X:-unset}"});
  EXPECT_EQ(o.out, Workspace(id) + " unset\n");
}

TEST_F(CliTest, ExecInterruptedByCtrlCKillsTheCommand) {
  const std::string id = CreateSandbox();
  const auto start = Clock::now();
  Child c({"exec", id, "--", "touch started; sleep 30; echo never"}, SocketEnv());
  ASSERT_TRUE(WaitUntil([&] { return ::access((Workspace(id) + "/started").c_str(), F_OK) == 0; },
                        std::chrono::seconds(20)));
  c.Signal(SIGINT);
  Outcome o = c.Wait();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(20));
  EXPECT_EQ(o.status, 137) << o.err;
  EXPECT_NE(o.err.find("interrupted"), std::string::npos) << o.err;
  // The session is free again.
  EXPECT_EQ(Run({"exec", id, "--", "echo ok"}).out, "ok\n");
}

TEST_F(CliTest, UploadAndDownloadRoundTripByteExact) {
  const std::string id = CreateSandbox();
  std::string blob(2 << 20, '\0');
  for (size_t i = 0; i < blob.size(); ++i) {
    blob[i] = static_cast<char>((i * 131) ^ (i >> 7) ^ (i >> 15));
  }
  const std::string local = dir_ + "/blob.bin";
  std::ofstream(local, std::ios::binary) << blob;

  Outcome up = Run({"upload", id, local, "data/blob.bin"});
  ASSERT_EQ(up.status, 0) << up.err;
  EXPECT_NE(up.out.find("(2097152 bytes)"), std::string::npos) << up.out;
  EXPECT_TRUE(ReadFile(Workspace(id) + "/data/blob.bin") == blob);

  const std::string back = dir_ + "/back.bin";
  Outcome down = Run({"download", id, "data/blob.bin", back});
  ASSERT_EQ(down.status, 0) << down.err;
  const std::string got = ReadFile(back);
  EXPECT_EQ(got.size(), blob.size());
  EXPECT_TRUE(got == blob);

  // Into a directory, and to stdout.
  ASSERT_EQ(::mkdir((dir_ + "/into").c_str(), 0700), 0);
  ASSERT_EQ(Run({"download", id, "data/blob.bin", dir_ + "/into"}).status, 0);
  EXPECT_TRUE(ReadFile(dir_ + "/into/blob.bin") == blob);
  Outcome cat = Run({"download", id, "data/blob.bin", "-"});
  EXPECT_TRUE(cat.out == blob);
  // Into a directory of the sandbox with a trailing slash.
  ASSERT_EQ(Run({"upload", id, local, "dir/"}).status, 0);
  EXPECT_EQ(ReadFile(Workspace(id) + "/dir/blob.bin").size(), blob.size());

  // A missing remote file: the envelope's message, no file left behind, not even a temporary.
  const std::string missing = dir_ + "/missing/out.bin";
  ASSERT_EQ(::mkdir((dir_ + "/missing").c_str(), 0700), 0);
  Outcome nf = Run({"download", id, "data/nope.bin", missing});
  EXPECT_EQ(nf.status, 2);
  EXPECT_TRUE(std::regex_match(nf.err, std::regex("agentbox: .*nope.bin.* \\(HTTP 404\\)\n")))
      << nf.err;
  EXPECT_EQ(ReadFile(missing), "");
  EXPECT_EQ(Trim(Run({"exec", id, "--", "ls -A " + dir_ + "/missing | wc -l"}).out), "0");

  Outcome no_local = Run({"upload", id, dir_ + "/absent", "x"});
  EXPECT_EQ(no_local.status, 2);
  EXPECT_NE(no_local.err.find("No such file or directory"), std::string::npos) << no_local.err;
}

// cp -r both ways: the upload packs straight into its own connection (raw_post.h), the
// download unpacks what the guest packs. A tree refused by the sandbox (its target is a file)
// gets the sandbox's answer even while the CLI is still sending, and leaves nothing behind.
TEST_F(CliTest, CopyTreesBothWaysByteExact) {
  const std::string id = CreateSandbox();
  const std::string src = dir_ + "/tree";
  std::map<std::string, std::string> files;
  for (int i = 0; i < 40; ++i) {
    std::ostringstream rel_s;
    rel_s << "d" << i % 4 << "/s" << i % 3 << "/f" << i << ".c";
    const std::string rel = rel_s.str();
    std::string body(static_cast<size_t>(100 + i * 997), '\0');
    for (size_t k = 0; k < body.size(); ++k) {
      body[k] = static_cast<char>((k * 31 + static_cast<size_t>(i)) ^ (k >> 5));
    }
    files[rel] = body;
  }
  files["big.bin"] = std::string(6 << 20, 'b');  // more than the socket buffers hold
  for (const auto& [rel, body] : files) {
    std::filesystem::create_directories(std::filesystem::path(src + "/" + rel).parent_path());
    std::ofstream(src + "/" + rel, std::ios::binary) << body;
  }

  Outcome up = Run({"cp", "-r", src, id + ":copied"});
  ASSERT_EQ(up.status, 0) << up.err;
  EXPECT_NE(up.out.find("entries"), std::string::npos) << up.out;
  for (const auto& [rel, body] : files) {
    EXPECT_TRUE(ReadFile(Workspace(id) + "/copied/" + rel) == body) << rel;
  }

  const std::string back = dir_ + "/back";
  Outcome down = Run({"cp", "-r", id + ":copied", back});
  ASSERT_EQ(down.status, 0) << down.err;
  for (const auto& [rel, body] : files) {
    EXPECT_TRUE(ReadFile(back + "/" + rel) == body) << rel;
  }

  // Over an existing file: 409 from the sandbox, nothing unpacked.
  std::ofstream(dir_ + "/plain.txt") << "plain\n";
  ASSERT_EQ(Run({"upload", id, dir_ + "/plain.txt", "plain.txt"}).status, 0);
  Outcome refused = Run({"cp", "-r", src, id + ":plain.txt"});
  EXPECT_EQ(refused.status, 2);
  EXPECT_NE(refused.err.find("(HTTP 409)"), std::string::npos) << refused.err;
  EXPECT_EQ(ReadFile(Workspace(id) + "/plain.txt"), "plain\n");
  EXPECT_EQ(Trim(Run({"exec", id, "--", "ls -A | grep -c agentbox || true"}).out), "0");
}

TEST_F(CliTest, BackgroundProcessPsLogsKill) {
  const std::string id = CreateSandbox();
  Outcome bg = Run({"exec", id, "--", "echo started; sleep 30 &"});
  ASSERT_EQ(bg.status, 0) << bg.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(bg.err, m, std::regex("background process ([0-9]+)"))) << bg.err;
  const std::string pid = m[1];

  Outcome ps = Run({"ps", id});
  ASSERT_EQ(ps.status, 0) << ps.err;
  EXPECT_TRUE(ps.out.starts_with("PID "));
  EXPECT_TRUE(std::regex_search(ps.out, std::regex(pid + " +default +running +.*sleep 30")))
      << ps.out;
  EXPECT_NE(Run({"ps", id, "--session", "default"}).out.find(pid), std::string::npos);
  EXPECT_EQ(Run({"ps", id, "--session", "other"}).out.find(pid), std::string::npos);

  ASSERT_TRUE(WaitUntil(
      [&] {
        return Run({"logs", id, pid}).out == "started\n";
      },
      std::chrono::seconds(20)));

  Outcome none = Run({"kill", id, "--pattern", "no-such-command"});
  EXPECT_EQ(none.status, 1);
  Outcome k = Run({"kill", id, "--pid", pid, "--signal", "TERM"});
  ASSERT_EQ(k.status, 0) << k.err;
  EXPECT_EQ(k.out, "signalled 1 process: " + pid + "\n");
  ASSERT_TRUE(WaitUntil(
      [&] {
        return std::regex_search(Run({"ps", id}).out, std::regex(pid + " +default +exited 143"));
      },
      std::chrono::seconds(20)));

  // --follow prints until the process ends.
  bg = Run({"exec", id, "--", "echo a; sleep 0.5; echo b; sleep 0.5; echo c &"});
  ASSERT_TRUE(std::regex_search(bg.err, m, std::regex("background process ([0-9]+)"))) << bg.err;
  Outcome f = Run({"logs", id, m[1], "--follow"});
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(f.out, "a\nb\nc\n");

  // Kill by pattern and by session.
  Run({"exec", id, "--", "sleep 31 &"});
  Run({"exec", id, "-s", "other", "--", "sleep 32 &"});
  k = Run({"kill", id, "--pattern", "sleep 3[12]"});
  EXPECT_EQ(k.status, 0) << k.err;
  EXPECT_TRUE(k.out.starts_with("signalled 2 processes: ")) << k.out;
  Run({"exec", id, "-s", "other", "--", "sleep 33 &"});
  k = Run({"kill", id, "--session", "other"});
  EXPECT_TRUE(k.out.starts_with("signalled 1 process: ")) << k.out;

  Outcome unknown = Run({"logs", id, "999999"});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_NE(unknown.err.find("(HTTP 404)"), std::string::npos) << unknown.err;
  Outcome usage = Run({"kill", id});
  EXPECT_EQ(usage.status, 2);
}

TEST_F(CliTest, ShellRunsAScriptInOneSession) {
  const std::string id = CreateSandbox();
  Outcome o = Run({"shell", id}, "cd /tmp\npwd\nexport A=1\necho $A\n");
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out, "/tmp\n1\n");
  EXPECT_EQ(o.err, "");  // no prompt when stdin is not a terminal
  // The state lives in the sandbox's "default" session, which exec uses too.
  EXPECT_EQ(Run({"exec", id, "--", "echo $PWD $A"}).out, "/tmp 1\n");

  // A command that runs a while is followed to its end; the status of the last line is the
  // shell's; `exit N` leaves with N.
  o = Run({"shell", id, "--session", "s"},
          "for i in 1 2 3; do echo $i; sleep 0.7; done\necho err >&2; false\n");
  EXPECT_EQ(o.out, "1\n2\n3\nerr\n");
  EXPECT_EQ(o.status, 1);
  o = Run({"shell", id, "--session", "s"}, "echo x\nexit 7\necho not-run\n");
  EXPECT_EQ(o.out, "x\n");
  EXPECT_EQ(o.status, 7);
}

TEST_F(CliTest, ShellCtrlCKillsTheRunningCommandAndKeepsTheSession) {
  const std::string id = CreateSandbox();
  Child c({"shell", id}, SocketEnv());
  c.Write("export KEEP=yes\necho ready; sleep 30; echo never\n");
  // "ready" is printed while the command still runs: the shell follows the session's stream.
  ASSERT_TRUE(WaitUntil([&] { return c.Stdout() == "ready\n"; }, std::chrono::seconds(20)))
      << c.Stdout();
  const auto start = Clock::now();
  c.Signal(SIGINT);
  c.Write("echo after $KEEP\n");
  Outcome o = c.Wait();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(20));
  EXPECT_EQ(o.out, "ready\nafter yes\n") << o.err;
  EXPECT_EQ(o.status, 0) << o.err;
}

TEST_F(CliTest, ShellFollowsOutputOnTheEventStream) {
  const std::string id = CreateSandbox();
  Child c({"shell", id}, SocketEnv());
  c.Write("echo first; sleep 1; echo second\n");
  // "first" arrives while the command still runs.
  ASSERT_TRUE(WaitUntil([&] { return c.Stdout() == "first\n"; }, std::chrono::seconds(20)))
      << c.Stdout();
  c.Write("echo done\n");
  Outcome o = c.Wait();
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out, "first\nsecond\ndone\n");
  // It came over the daemon's event stream (one per command), not by polling the session.
  fakes::HttpReply m = Call("GET", "/metrics");
  EXPECT_NE(m.body.find(R"(op="shell/stream",outcome="ok"} 2)"), std::string::npos) << m.body;
  EXPECT_EQ(m.body.find(R"(op="shell/view")"), std::string::npos) << m.body;
  EXPECT_EQ(m.body.find(R"(op="shell/wait")"), std::string::npos) << m.body;
}

TEST_F(CliTest, ShellAtATerminalSendsTypedLinesToTheRunningCommand) {
  const std::string id = CreateSandbox();
  Child c({"shell", id}, SocketEnv(), /*stdin_tty=*/true);
  ASSERT_TRUE(WaitUntil([&] { return c.Stderr().find(id + ":") != std::string::npos; },
                        std::chrono::seconds(20)))
      << c.Stderr();
  c.Write("echo ready; read name; echo hello $name\n");
  ASSERT_TRUE(WaitUntil([&] { return c.Stdout() == "ready\n"; }, std::chrono::seconds(20)))
      << c.Stdout() << c.Stderr();
  c.Write("world\n");  // typed while the command runs: its input (shell/write)
  ASSERT_TRUE(
      WaitUntil([&] { return c.Stdout() == "ready\nhello world\n"; }, std::chrono::seconds(20)))
      << c.Stdout() << c.Stderr();
  c.Write("exit 3\n");
  Outcome o = c.Wait(std::chrono::seconds(60), /*close_stdin=*/false);
  EXPECT_EQ(o.status, 3) << o.err;
  EXPECT_EQ(o.out, "ready\nhello world\n");
}

TEST_F(CliTest, PullShowsProgressAndCreateFetchesTheImageFirst) {
  Outcome p = Run({"pull", "remote/tool:1"});
  EXPECT_EQ(p.status, 0) << p.err;
  EXPECT_EQ(p.err, "Pulling remote/tool:1\nDownloading layer 1/1\nPull complete\n");
  Outcome missing = Run({"pull", "missing/x:1"});
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.err.find("missing/x:1"), std::string::npos) << missing.err;
  Outcome flaky = Run({"pull", "flaky/x"});
  EXPECT_NE(flaky.status, 0);
  EXPECT_NE(flaky.err.find("registry went away pulling flaky/x"), std::string::npos) << flaky.err;
  Outcome c = Run({"create", "--image", "remote/tool:1"});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_NE(c.err.find("Pull complete"), std::string::npos) << c.err;
  Outcome bad = Run({"create", "--image", "missing/x:1"});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("missing/x:1"), std::string::npos);
  EXPECT_TRUE(Run({"ls"}).out.find("missing") == std::string::npos);
}

TEST_F(CliTest, ErrorsExitTwoWithOneLine) {
  Outcome o = Run({"exec", "sb-nope", "--", "true"});
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err, "agentbox: sandbox 'sb-nope' not found (HTTP 404)\n");
  o = Run({"shell", "sb-nope"}, "true\n");
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err, "agentbox: sandbox 'sb-nope' not found (HTTP 404)\n");
  o = Run({"create", "--backend", "nope"});
  EXPECT_EQ(o.status, 2);
  EXPECT_NE(o.err.find("unknown backend 'nope' (HTTP 422)"), std::string::npos) << o.err;
  o = Run({"create", "--label", "novalue"});
  EXPECT_EQ(o.status, 2);
  EXPECT_NE(o.err.find("is not KEY=VALUE"), std::string::npos) << o.err;

  // No daemon behind the socket.
  const std::string gone = dir_ + "/nobody.sock";
  o = RunEnv({"ls"}, {{"AGENTBOX_SOCKET", gone}});
  EXPECT_EQ(o.status, 2);
  EXPECT_TRUE(o.err.starts_with("agentbox: cannot reach agentboxd at unix:" + gone + ": "))
      << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1);
  o = RunEnv({"exec", "sb-x", "--", "true"}, {{"AGENTBOX_SOCKET", gone}});
  EXPECT_EQ(o.status, 2);

  // Usage errors are exit 2 as well; --help is not an error.
  EXPECT_EQ(Run({}).status, 2);
  EXPECT_EQ(Run({"frobnicate"}).status, 2);
  EXPECT_EQ(Run({"exec", "sb-x"}).status, 2);
  Outcome help = Run({"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("exec"), std::string::npos);
}

// restart-guest on a backend that cannot replace a guest says so (jail and docker can: the
// conformance suite shows them recovering a frozen guest through the same endpoint).
TEST_F(CliTest, RestartGuestSaysWhenTheBackendCannot) {
  Outcome c = Run({"create"});
  ASSERT_EQ(c.status, 0) << c.err;
  const std::string id = Trim(c.out);
  Outcome o = Run({"restart-guest", id});
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err, "agentbox: process cannot restart the guest of sandbox '" + id +
                       "' in place; DELETE it and create a new one (HTTP 400)\n");
  o = Run({"restart-guest", "sb-nope"});
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err, "agentbox: sandbox 'sb-nope' not found (HTTP 404)\n");
  EXPECT_EQ(Run({"restart-guest"}).status, 2);
  EXPECT_EQ(Run({"rm", id}).status, 0);
}

TEST_F(CliTest, TcpNeedsTheApiKey) {
  Outcome c = RunEnv({"--url", tcp_base_, "--api-key", "k1", "create", "--label", "via=tcp"}, {});
  ASSERT_EQ(c.status, 0) << c.err;
  const std::string id = Trim(c.out);
  Outcome o = RunEnv({"exec", id, "--url", tcp_base_, "--api-key", "k1", "--", "echo hi"}, {});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out, "hi\n");
  // The same from the environment.
  const std::map<std::string, std::string> env = {{"AGENTBOX_URL", tcp_base_},
                                                  {"AGENTBOX_API_KEY", "k1"}};
  o = RunEnv({"ls"}, env);
  EXPECT_NE(o.out.find(id), std::string::npos) << o.err;
  const std::string local = dir_ + "/small.txt";
  std::ofstream(local) << "over tcp\n";
  EXPECT_EQ(RunEnv({"upload", id, local, "small.txt"}, env).status, 0);
  EXPECT_EQ(RunEnv({"download", id, "small.txt", "-"}, env).out, "over tcp\n");

  const std::string unauthorized =
      "agentbox: missing or invalid API key (Authorization: Bearer KEY) (HTTP 401)\n";
  o = RunEnv({"--url", tcp_base_, "--api-key", "k2", "ls"}, {});
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err, unauthorized);
  o = RunEnv({"--url", tcp_base_, "exec", id, "--", "true"}, {});
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err, unauthorized);
  o = RunEnv({"--url", tcp_base_, "--api-key", "bad", "upload", id, local, "x.txt"}, {});
  EXPECT_EQ(o.status, 2);
  EXPECT_EQ(o.err, unauthorized);

  // Nothing listens there any more.
  o = RunEnv({"--url", "http://127.0.0.1:1", "--api-key", "k1", "ls"}, {});
  EXPECT_EQ(o.status, 2);
  EXPECT_TRUE(o.err.starts_with("agentbox: cannot reach agentboxd at http://127.0.0.1:1: "))
      << o.err;
}

// Pure helpers.

TEST(CliFormat, JoinCommandQuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(JoinCommand({"cd /tmp && ls"}), "cd /tmp && ls");
  EXPECT_EQ(JoinCommand({"ls", "-la", "/tmp"}), "ls -la /tmp");
  EXPECT_EQ(JoinCommand({"echo", "a b", "it's", "$X", ""}), "echo 'a b' 'it'\\''s' '$X' ''");
}

TEST(CliFormat, WorkingDirectoryWrapsForegroundAndBackground) {
  EXPECT_EQ(WithWorkingDirectory("ls", "/a b"), "(cd -- '/a b' || exit; ls\n)");
  EXPECT_EQ(WithWorkingDirectory("sleep 5 &", "/x"), "cd -- '/x' || exit; sleep 5 &");
  EXPECT_EQ(WithWorkingDirectory("a && b", "/x"), "(cd -- '/x' || exit; a && b\n)");
}

TEST(CliFormat, KeyValues) {
  EXPECT_EQ(*ParseKeyValue("A=b=c", false), std::make_pair(std::string("A"), std::string("b=c")));
  EXPECT_EQ(*ParseKeyValue("A=", false), std::make_pair(std::string("A"), std::string("")));
  EXPECT_FALSE(ParseKeyValue("=x", true));
  EXPECT_FALSE(ParseKeyValue("A", false));
  ::setenv("AGENTBOX_TEST_INHERIT", "v", 1);
  EXPECT_EQ(ParseKeyValue("AGENTBOX_TEST_INHERIT", true)->second, "v");
  EXPECT_FALSE(ParseKeyValue("AGENTBOX_TEST_UNSET_VARIABLE", true));
}

TEST(CliFormat, Durations) {
  EXPECT_EQ(CompactDuration(-3), "0s");
  EXPECT_EQ(CompactDuration(59.9), "59s");
  EXPECT_EQ(CompactDuration(600), "10m");
  EXPECT_EQ(CompactDuration(3600 + 5 * 60), "1h5m");
  EXPECT_EQ(CompactDuration(2 * 86400 + 4 * 3600 + 59), "2d4h");
  EXPECT_EQ(RelativeTime(0, 100), "-");
  EXPECT_EQ(RelativeTime(160, 100), "in 1m");
  EXPECT_EQ(RelativeTime(90, 100), "10s ago");
}

TEST(CliFormat, DiskSizes) {
  EXPECT_EQ(CompactBytes(0), "0B");
  EXPECT_EQ(CompactBytes(512 << 10), "512K");
  EXPECT_EQ(CompactBytes((12ull << 20) + (512 << 10)), "12.5M");
  EXPECT_EQ(CompactBytes(10ull << 30), "10G");
  EXPECT_EQ(DiskColumn(Json{{"id", "x"}}), "-");
  EXPECT_EQ(DiskColumn(Json{{"disk", {{"used_bytes", nullptr}, {"limit_bytes", nullptr}}}}), "-");
  EXPECT_EQ(DiskColumn(Json{{"disk", {{"used_bytes", 3u << 20}, {"limit_bytes", 1ull << 30}}}}),
            "3M/1G");
}

TEST(CliFormat, EndpointPrecedence) {
  ::unsetenv("AGENTBOX_URL");
  ::unsetenv("AGENTBOX_SOCKET");
  ::unsetenv("AGENTBOX_API_KEY");
  EXPECT_EQ(ResolveEndpoint("", "", "").Describe(), "unix:/run/agentbox/agentboxd.sock");
  ::setenv("AGENTBOX_SOCKET", "/s.sock", 1);
  EXPECT_EQ(ResolveEndpoint("", "", "").Describe(), "unix:/s.sock");
  ::setenv("AGENTBOX_URL", "127.0.0.1:8080/", 1);
  ::setenv("AGENTBOX_API_KEY", "env-key", 1);
  Endpoint e = ResolveEndpoint("", "", "");
  EXPECT_EQ(e.Describe(), "http://127.0.0.1:8080");
  EXPECT_EQ(e.api_key, "env-key");
  EXPECT_EQ(ResolveEndpoint("", "/flag.sock", "k").Describe(), "unix:/flag.sock");
  EXPECT_EQ(ResolveEndpoint("unix:/u.sock", "", "k").Describe(), "unix:/u.sock");
  EXPECT_EQ(ResolveEndpoint("https://h:1", "", "k").api_key, "k");
  ::unsetenv("AGENTBOX_URL");
  ::unsetenv("AGENTBOX_SOCKET");
  ::unsetenv("AGENTBOX_API_KEY");
}

TEST(CliFormat, WarningText) {
  EXPECT_EQ(WarningText(R"(299 agentbox "unknown field 'x' ignored")"),
            "unknown field 'x' ignored");
  EXPECT_EQ(WarningText(R"(299 - "a \"quoted\" word" "Sat, 05 Dec 2026 00:00:00 GMT")"),
            "a \"quoted\" word");
  EXPECT_EQ(WarningText("299 agentbox no-quotes"), "299 agentbox no-quotes");
  EXPECT_EQ(WarningText(R"(299 agentbox "unterminated)"), R"(299 agentbox "unterminated)");
}

// A server that answers every request with an empty sandbox list and two Warning headers, as a
// daemon older than this CLI would when the CLI sends a field it does not know yet.
class WarningServer : public http::Dispatcher {
 public:
  std::unique_ptr<http::BodySink> StreamBody(const http::Request&) override { return nullptr; }
  void Handle(http::Request, http::Respond respond) override {
    http::Response r;
    r.body = R"({"success":true,"message":"ok","data":{"sandboxes":[]}})";
    r.headers = {{"Warning", R"(299 agentbox "unknown field 'x' ignored")"},
                 {"Warning", R"(299 agentbox "unknown field 'y' ignored; did you mean 'z'?")"}};
    respond(std::move(r));
  }
};

TEST(CliWarnings, TheDaemonsWarningsArePrintedOnStderr) {
  char tmpl[] = "/tmp/agentbox-cli-warn-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string sock = std::string(tmpl) + "/d.sock";
  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  WarningServer dispatcher;
  http::Server server(io, dispatcher, http::ServerOptions{});
  ASSERT_TRUE(server.Listen("unix:" + sock));
  std::thread t([&] { io.run(); });
  Child c({"ls"}, {{"AGENTBOX_SOCKET", sock}});
  c.AllowWarnings();
  Outcome o = c.Wait();
  server.Stop();
  work.reset();
  io.stop();
  t.join();
  std::filesystem::remove_all(tmpl);
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.err,
            "agentbox: warning: unknown field 'x' ignored\n"
            "agentbox: warning: unknown field 'y' ignored; did you mean 'z'?\n");
}

TEST(CliFormat, ReplyErrorMessages) {
  Reply r;
  r.status = 404;
  r.body = R"({"success":false,"message":"sandbox 'x' not found","data":null})";
  r.envelope = Json::parse(r.body);
  EXPECT_EQ(r.ErrorMessage(), "sandbox 'x' not found (HTTP 404)");
  r.status = 502;
  r.body = "Bad Gateway\nmore";
  r.envelope = nullptr;
  EXPECT_EQ(r.ErrorMessage(), "Bad Gateway (HTTP 502)");
  r.body = "";
  EXPECT_EQ(r.ErrorMessage(), "agentboxd answered (HTTP 502)");
}

}  // namespace
}  // namespace agentbox::cli
