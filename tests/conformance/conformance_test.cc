// The backend conformance suite: what an agent may rely on, whatever backend runs its sandbox.
// Written only against agentboxd's REST API, so the same tests run unchanged on every backend
// (the fixture, one daemon per backend, is in conformance_fixture.h).
#include "conformance_fixture.h"

namespace {

using agentbox::conformance::Backends;
using agentbox::conformance::Conformance;
using agentbox::conformance::Json;
using agentbox::conformance::Reply;
using namespace std::chrono_literals;

TEST_P(Conformance, SessionStatePersists) {
  Exec("s",
       "mkdir -p /workspace/d && cd /workspace/d && export E=1 && V=2 && f() { echo f$1; }"
       " && alias a='echo aliased'");
  Json r = Exec("s", "echo $PWD $E $V; f 3; a");
  EXPECT_EQ(r["status"], "completed");
  EXPECT_EQ(r["returncode"], 0);
  EXPECT_EQ(r["output"], "/workspace/d 1 2\nf3\naliased\n");
  EXPECT_EQ(r["cwd"], "/workspace/d");
}

TEST_P(Conformance, SessionsAreIsolatedFromEachOther) {
  Exec("one", "export ONLY_ONE=yes; cd /tmp");
  Json r = Exec("two", "echo [${ONLY_ONE-}] $PWD");
  EXPECT_EQ(r["output"], "[] /workspace\n");
}

TEST_P(Conformance, ExitCodesAndExitKeepTheSessionUsable) {
  EXPECT_EQ(Exec("s", "false")["returncode"], 1);
  EXPECT_EQ(Exec("s", "cd /tmp; exit 7")["returncode"], 7);
  EXPECT_EQ(Exec("s", "pwd")["output"], "/tmp\n");
}

TEST_P(Conformance, ExecDirIsForOneCommand) {
  Reply r = Api("shell/exec", {{"id", "s"}, {"command", "pwd"}, {"exec_dir", "/tmp"}});
  EXPECT_EQ(r.data()["output"], "/tmp\n");
  EXPECT_EQ(Exec("s", "pwd")["output"], "/workspace\n");
}

TEST_P(Conformance, LongCommandsReturnRunningThenComplete) {
  Reply r =
      Api("shell/exec", {{"id", "s"}, {"command", "sleep 1; echo done"}, {"wait_seconds", 0.1}});
  EXPECT_EQ(r.data()["status"], "running");
  EXPECT_EQ(Api("shell/exec", {{"id", "s"}, {"command", "true"}}).status, 409);
  Reply w = Api("shell/wait", {{"id", "s"}, {"seconds", 30}});
  EXPECT_EQ(w.status, 200);
  EXPECT_EQ(w.data()["returncode"], 0);
  EXPECT_EQ(Api("shell/view", {{"id", "s"}}).data()["output"], "done\n");
}

TEST_P(Conformance, TimeoutKillsAndReports) {
  Reply r = Api("shell/exec",
                {{"id", "s"}, {"command", "sleep 60"}, {"timeout", 0.5}, {"wait_seconds", 30}});
  EXPECT_EQ(r.data()["returncode"], 124);
  EXPECT_EQ(r.data()["timed_out"], true);
  EXPECT_EQ(Exec("s", "echo ok")["output"], "ok\n");
}

TEST_P(Conformance, StdinReachesTheCommand) {
  if (Lacks("stdin")) {
    SkipRefused("stdin", "shell/write", {{"id", "s"}, {"input", "hello"}});
    return;
  }
  Api("shell/exec", {{"id", "s"}, {"command", "read a; echo got:$a"}, {"wait_seconds", 0.1}});
  EXPECT_EQ(Api("shell/write", {{"id", "s"}, {"input", "hello"}}).status, 200);
  EXPECT_EQ(Api("shell/wait", {{"id", "s"}, {"seconds", 10}}).status, 200);
  EXPECT_EQ(Api("shell/view", {{"id", "s"}}).data()["output"], "got:hello\n");
}

TEST_P(Conformance, KillEndsTheCommand) {
  Api("shell/exec", {{"id", "s"}, {"command", "sleep 60"}, {"wait_seconds", 0.1}});
  Reply k = Api("shell/kill", {{"id", "s"}});
  EXPECT_EQ(k.data()["status"], "terminated");
  EXPECT_EQ(Api("shell/kill", {{"id", "s"}}).data()["status"], "already_terminated");
}

TEST_P(Conformance, PtyGivesATerminal) {
  if (Lacks("pty")) {
    SkipRefused("pty", "shell/exec", {{"id", "s"}, {"command", "true"}, {"pty", true}});
    return;
  }
  Reply r = Api("shell/exec", {{"id", "s"}, {"command", "test -t 1 && echo tty"}, {"pty", true}});
  EXPECT_NE(r.data()["output"].get<std::string>().find("tty"), std::string::npos) << r.body;
}

TEST_P(Conformance, RunSeparatesStreamsAndKeepsState) {
  Json r = Run("cd /tmp; echo out; echo err >&2; exit 3");
  EXPECT_EQ(r["exit_code"], 3);
  EXPECT_EQ(r["stdout"], "out\n");
  EXPECT_EQ(r["stderr"], "err\n");
  EXPECT_EQ(Run("pwd")["stdout"], "/tmp\n");
}

TEST_P(Conformance, BackgroundProcessesKeepLogsAndCanBeKilled) {
  if (Lacks("background_processes")) {
    SkipRefused("background_processes", "process/start", {{"command", "sleep 1"}});
    return;
  }
  Json bg = Run("for i in 1 2 3; do echo tick$i; sleep 0.1; done &");
  ASSERT_TRUE(bg.contains("background_pid")) << bg;
  const int pid = bg["background_pid"];
  Reply start = Api("process/start", {{"session_id", "default"}, {"command", "sleep 60"}});
  ASSERT_EQ(start.status, 200);
  const int sleeper = start.data()["pid"];
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  Json logs;
  do {
    std::this_thread::sleep_for(50ms);
    logs = Api("process/logs", {{"pid", pid}}).data();
  } while (logs["running"] == true && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(logs["output"], "tick1\ntick2\ntick3\n");
  EXPECT_EQ(logs["exit_code"], 0);
  Reply list = Api("process/list", {{"session_id", "default"}});
  EXPECT_GE(list.data().size(), 2u);
  Reply k = Api("process/kill", {{"pattern", "^sleep 60$"}});
  EXPECT_EQ(k.data()["killed_pids"], Json::array({sleeper}));
  EXPECT_EQ(Api("process/logs", {{"pid", 999999}}).status, 404);
}

TEST_P(Conformance, FileOperations) {
  EXPECT_EQ(Api("file/write", {{"file", "/workspace/a/b.txt"}, {"content", "one\ntwo 2\nthree\n"}})
                .status,
            200);
  EXPECT_EQ(Api("file/read", {{"file", "/workspace/a/b.txt"}, {"start_line", 1}, {"end_line", 2}})
                .data()["content"],
            "two 2");
  EXPECT_EQ(Api("file/exists", {{"path", "/workspace/a"}}).data()["type"], "directory");
  EXPECT_EQ(Api("file/search", {{"file", "/workspace/a/b.txt"}, {"regex", "[0-9]"}})
                .data()["line_numbers"],
            Json::array({1}));
  EXPECT_EQ(
      Api("file/replace", {{"file", "/workspace/a/b.txt"}, {"old_str", "t"}, {"new_str", "T"}})
          .data()["replaced_count"],
      2);
  EXPECT_EQ(Api("file/find", {{"path", "/workspace"}, {"glob", "**/*.txt"}}).data()["files"],
            Json::array({"/workspace/a/b.txt"}));
  EXPECT_EQ(Api("file/list", {{"path", "/workspace/a"}}).data()["entries"][0]["name"], "b.txt");
  EXPECT_EQ(
      Api("file/write", {{"file", "/workspace/a/b.txt"}, {"content", "more\n"}, {"append", true}})
          .status,
      200);
  EXPECT_EQ(Exec("s", "cat /workspace/a/b.txt")["output"], "one\nTwo 2\nThree\nmore\n");
  EXPECT_EQ(Api("file/delete", {{"path", "/workspace/a"}, {"recursive", true}}).status, 200);
  EXPECT_EQ(Api("file/read", {{"file", "/workspace/a/b.txt"}}).status, 404);
  EXPECT_EQ(Api("file/search", {{"file", "/etc/hostname"}, {"regex", "("}}).status, 400);
}

TEST_P(Conformance, UploadAndDownloadRoundTrip) {
  std::string blob(1 << 20, '\0');
  for (size_t i = 0; i < blob.size(); ++i) {
    blob[i] = static_cast<char>(i * 7 + (i >> 9));
  }
  const std::string b = "confBoundary";
  std::string body = "--" + b + "\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n" +
                     "/workspace/blob.bin\r\n--" + b +
                     "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n" +
                     blob + "\r\n--" + b + "--\r\n";
  Reply up = daemon_->Call("POST", "/v1/sandboxes/" + id_ + "/api/v1/file/upload", body, true,
                           {"Content-Type: multipart/form-data; boundary=" + b});
  ASSERT_EQ(up.status, 200) << up.body;
  Reply down = daemon_->Call(
      "GET", "/v1/sandboxes/" + id_ + "/api/v1/file/download?path=/workspace/blob.bin");
  EXPECT_EQ(down.status, 200);
  EXPECT_TRUE(down.body == blob);
}

TEST_P(Conformance, OutputIsExactAndNeverBreaksJson) {
  EXPECT_EQ(Exec("s", "printf 'é漢字\\n'")["output"], "é漢字\n");
  Reply r = Api("shell/exec", {{"id", "s"}, {"command", "printf 'a\\377b'"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.data()["output"],
            "a\xEF\xBF\xBD"
            "b");
}

TEST_P(Conformance, BadInputGetsClearErrors) {
  EXPECT_EQ(daemon_->Call("POST", "/v1/sandboxes/" + id_ + "/api/v1/shell/exec", "{oops").status,
            400);
  EXPECT_EQ(Api("shell/exec", {{"command", 5}}).status, 422);
  EXPECT_EQ(Api("shell/view", {{"id", "no-such-session"}}).status, 404);
  EXPECT_EQ(daemon_->Call("POST", "/v1/sandboxes/sb-nope/api/v1/shell/exec", "{}").status, 404);
  EXPECT_EQ(Exec("s", "echo still fine")["output"], "still fine\n");
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::ValuesIn(Backends()),
                         [](const auto& p) { return p.param; });

}  // namespace
