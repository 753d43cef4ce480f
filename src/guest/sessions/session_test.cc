// Sessions against a real shell: state persists between commands exactly as in one continuous
// bash, survives `exit`, timeouts and a move into a fresh shell via its captured state.
#include "guest/sessions/session.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include "common/sched_slice.h"
#include "guest/core/spawn.h"
#include "guest/sessions/session_manager.h"

namespace agentbox::guest {
namespace {

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-session-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (manager_) {
      manager_->ShutdownAll();
    }
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }

  SessionManager& Manager(const std::string& shell = {}) {
    if (!manager_) {
      auto info = DetectShell(shell);
      EXPECT_TRUE(info) << info.error().message;
      cfg_.shell = *info;
      cfg_.output_cap = 4096;
      SessionState initial;
      initial.cwd = dir_;
      initial.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"HOME", dir_}, {"LANG", "C.UTF-8"}};
      manager_ = std::make_unique<SessionManager>(io_, reaper_, cfg_, initial, 16);
    }
    return *manager_;
  }

  std::shared_ptr<Session> NewSession(const std::string& id = "s") {
    auto s = Manager().GetOrCreate(id);
    EXPECT_TRUE(s);
    return *s;
  }

  // Runs one command to completion (or until `wait`) and returns what the session reports.
  CommandView Run(Session& s, const std::string& cmd, Stdio stdio = Stdio::kNull,
                  std::optional<double> timeout = std::nullopt,
                  std::chrono::milliseconds wait = std::chrono::seconds(20)) {
    ExecOptions o;
    o.command = cmd;
    o.stdio = stdio;
    o.timeout_s = timeout;
    o.separate_streams = true;
    auto r = s.Start(o);
    EXPECT_TRUE(r) << r.error().message;
    bool done = false;
    s.WaitFor(wait, [&](bool) { done = true; });
    io_.restart();
    while (!done) {
      io_.run_one();
    }
    return *s.Current();
  }

  std::string Out(Session& s, const std::string& cmd) { return Run(s, cmd).stdout_text; }

  boost::asio::io_context io_;
  ChildReaper reaper_{io_};
  SessionConfig cfg_;
  std::unique_ptr<SessionManager> manager_;
  std::string dir_;
};

TEST_F(SessionTest, CdAndExportPersist) {
  auto s = NewSession();
  ASSERT_EQ(mkdir((dir_ + "/sub dir").c_str(), 0755), 0);
  EXPECT_EQ(Run(*s, "cd 'sub dir' && export FOO=bar").exit_code, 0);
  EXPECT_EQ(Out(*s, "pwd; echo $FOO; bash -c 'echo child:$FOO'"),
            dir_ + "/sub dir\nbar\nchild:bar\n");
  EXPECT_EQ(s->state().cwd, dir_ + "/sub dir");
  EXPECT_EQ(s->state().env.at("FOO"), "bar");
}

// What a session runs inherits the guest's short scheduler slice, as every sandbox's processes
// do: two sandboxes' CPU-bound processes then hold a CPU for at most 100 us against each other's
// woken ones. Only the guest's own bulk work (its worker pool) keeps the kernel's default
// (common/sched_slice.h).
TEST_F(SessionTest, CommandsInheritTheGuestsShortSlice) {
  if (!RequestSchedulerSlice(kShortSchedulerSlice)) {
    GTEST_SKIP() << "this kernel has no custom EEVDF slices (Linux 6.12+)";
  }
  auto s = NewSession();
  const std::string said = Out(*s, "grep se.slice /proc/self/sched | tr -dc 0-9");
  (void)UseDefaultSchedulerSlice();
  EXPECT_EQ(said, std::to_string(kShortSchedulerSlice.count() * 1000));
}

TEST_F(SessionTest, UnsetRemovesFromState) {
  auto s = NewSession();
  Run(*s, "export GONE=1; KEEP=2");
  Run(*s, "unset GONE");
  EXPECT_EQ(Out(*s, "echo \"[${GONE-unset}] [$KEEP]\""), "[unset] [2]\n");
  EXPECT_EQ(s->state().env.count("GONE"), 0u);
}

TEST_F(SessionTest, ShellVariablesAreNotExported) {
  auto s = NewSession();
  Run(*s, "LOCALVAR=42");
  EXPECT_EQ(Out(*s, "echo $LOCALVAR; bash -c 'echo child:${LOCALVAR-none}'"), "42\nchild:none\n");
}

TEST_F(SessionTest, FunctionsAliasesAndArraysPersist) {
  auto s = NewSession();
  Run(*s,
      "greet() { echo \"hello $1\"; }; alias ll='echo aliased'; declare -a arr=(1 'a b');"
      " declare -A m=([k]=v)");
  EXPECT_EQ(Out(*s, "greet world; ll; echo ${arr[1]} ${m[k]}"), "hello world\naliased\na b v\n");
}

TEST_F(SessionTest, TrickyValuesSurviveExactly) {
  auto s = NewSession();
  const std::string value = "line1\nline2 \"dq\" 'sq' $HOME \\back\\slash `tick` é 漢字 \t end";
  // Set through a file so no quoting of ours is involved.
  FILE* f = fopen((dir_ + "/v").c_str(), "w");
  fputs(value.c_str(), f);
  fclose(f);
  Run(*s, "export EXP=\"$(cat v)\"; PLAIN=\"$(cat v)\"");
  EXPECT_EQ(s->state().env.at("EXP"), value);
  EXPECT_EQ(Out(*s, "printf %s \"$EXP\""), value);
  EXPECT_EQ(Out(*s, "printf %s \"$PLAIN\""), value);

  // And after moving the state into a brand-new shell (as a restart or migration does).
  auto restored = Manager().CreateFromState("moved", s->state());
  ASSERT_TRUE(restored);
  EXPECT_EQ(Out(**restored, "printf %s \"$EXP\""), value);
  EXPECT_EQ(Out(**restored, "printf %s \"$PLAIN\""), value);
}

TEST_F(SessionTest, StateMovesToAFreshShellThroughJson) {
  auto s = NewSession();
  ASSERT_EQ(mkdir((dir_ + "/w").c_str(), 0755), 0);
  Run(*s,
      "cd w; export A='x y'; B=2; f() { echo f:$1; }; export -f f; alias hi='echo hi';"
      " shopt -s extglob; set -o pipefail; false");
  auto json = SessionStateToJson(s->state());
  auto back = SessionStateFromJson(Json::parse(json.dump()));
  ASSERT_TRUE(back);
  auto t = Manager().CreateFromState("copy", *back);
  ASSERT_TRUE(t);
  EXPECT_EQ(Out(**t,
                "echo $? $PWD $A $B; f 1; hi; shopt -q extglob && echo extglob;"
                " [[ -o pipefail ]] && echo pipefail; bash -c 'f child'"),
            "1 " + dir_ + "/w x y 2\nf:1\nhi\nextglob\npipefail\nf:child\n");
}

TEST_F(SessionTest, ExitReportsCodeAndSessionStaysUsable) {
  auto s = NewSession();
  auto v = Run(*s, "cd /tmp; export Z=9; exit 7");
  EXPECT_EQ(v.exit_code, 7);
  EXPECT_EQ(Out(*s, "pwd; echo $Z"), "/tmp\n9\n");
}

TEST_F(SessionTest, ExitStatusIsVisibleToTheNextCommand) {
  auto s = NewSession();
  EXPECT_EQ(Run(*s, "false").exit_code, 1);
  EXPECT_EQ(Out(*s, "echo $?"), "1\n");
}

TEST_F(SessionTest, ErrexitSessionSurvivesAFailingCommand) {
  auto s = NewSession();
  Run(*s, "set -e");
  EXPECT_EQ(Run(*s, "false").exit_code, 1);
  EXPECT_EQ(Out(*s, "echo still here; [[ $- == *e* ]] && echo errexit"), "still here\nerrexit\n");
}

TEST_F(SessionTest, ExecDirAppliesToOneCommandOnly) {
  auto s = NewSession();
  ExecOptions o;
  o.command = "pwd";
  o.exec_dir = "/tmp";
  o.separate_streams = true;
  o.stdio = Stdio::kNull;
  ASSERT_TRUE(s->Start(o));
  bool done = false;
  s->WaitFor(std::chrono::seconds(10), [&](bool) { done = true; });
  while (!done) {
    io_.run_one();
  }
  EXPECT_EQ(s->Current()->stdout_text, "/tmp\n");
  EXPECT_EQ(Out(*s, "pwd"), dir_ + "\n");
  o.exec_dir = dir_ + "/missing";
  auto r = s->Start(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(SessionTest, TimeoutKillsTheWholeGroupAndKeepsPriorState) {
  auto s = NewSession();
  Run(*s, "export KEEP=1");
  auto v = Run(*s, "export LOST=1; (sleep 30; touch late) & echo $! > bg.pid; sleep 30",
               Stdio::kNull, 0.3);
  EXPECT_TRUE(v.timed_out);
  EXPECT_EQ(v.exit_code, 124);
  // The background job was in the command's process group: it is gone too.
  EXPECT_EQ(Out(*s,
                "echo ${KEEP}${LOST-}; st=$(ps -o stat= -p $(cat bg.pid));"
                " case $st in ''|Z*) echo gone;; *) echo alive;; esac"),
            "1\ngone\n");
}

TEST_F(SessionTest, SecondStartWhileRunningConflicts) {
  auto s = NewSession();
  auto v = Run(*s, "sleep 5", Stdio::kNull, std::nullopt, std::chrono::milliseconds(50));
  EXPECT_TRUE(v.running);
  ExecOptions o;
  o.command = "true";
  auto r = s->Start(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  EXPECT_TRUE(s->Kill());
  bool done = false;
  s->WaitFor(std::chrono::seconds(5), [&](bool) { done = true; });
  while (!done) {
    io_.run_one();
  }
  EXPECT_TRUE(s->Current()->killed);
  EXPECT_EQ(s->Current()->exit_code, 137);
}

TEST_F(SessionTest, StdinReachesTheRunningCommand) {
  auto s = NewSession();
  auto v =
      Run(*s, "read x; echo got:$x", Stdio::kSession, std::nullopt, std::chrono::milliseconds(50));
  ASSERT_TRUE(v.running);
  ASSERT_TRUE(s->WriteInput("hello\n"));
  bool done = false;
  s->WaitFor(std::chrono::seconds(5), [&](bool) { done = true; });
  while (!done) {
    io_.run_one();
  }
  EXPECT_EQ(s->Current()->output, "got:hello\n");
  EXPECT_FALSE(s->WriteInput("late\n"));
}

TEST_F(SessionTest, PtyGivesATerminal) {
  auto s = NewSession();
  auto v = Run(*s, "test -t 0 && test -t 1 && echo is-a-tty; tty", Stdio::kPty);
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.output.find("is-a-tty"), std::string::npos) << v.output;
  EXPECT_NE(v.output.find("/dev/pts/"), std::string::npos) << v.output;
  // Pipes again afterwards, state intact.
  EXPECT_EQ(Out(*s, "test -t 1 || echo not-a-tty"), "not-a-tty\n");
}

TEST_F(SessionTest, OutputIsCappedAndTruncationReported) {
  auto s = NewSession();  // cap 4096
  auto v = Run(*s, "head -c 10000 /dev/zero | tr '\\0' a; echo END");
  EXPECT_TRUE(v.output_truncated);
  EXPECT_LE(v.output.size(), 4096u);
  EXPECT_EQ(v.output.substr(v.output.size() - 4), "END\n");
}

TEST_F(SessionTest, SplitUtf8IsHeldBackUntilComplete) {
  auto s = NewSession();
  auto v = Run(*s, "printf 'a\\xc3'; sleep 0.5; printf '\\xa9b'", Stdio::kNull, std::nullopt,
               std::chrono::milliseconds(250));
  ASSERT_TRUE(v.running);
  EXPECT_EQ(v.output, "a");
  bool done = false;
  s->WaitFor(std::chrono::seconds(5), [&](bool) { done = true; });
  while (!done) {
    io_.run_one();
  }
  EXPECT_EQ(s->Current()->output,
            "a\xc3\xa9"
            "b");
}

TEST_F(SessionTest, NulInCommandIsRejected) {
  auto s = NewSession();
  ExecOptions o;
  o.command = std::string("echo a\0b", 8);
  auto r = s->Start(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kValidation);
}

TEST_F(SessionTest, PrewarmedSpareIsHandedOutAndReplaced) {
  auto& m = Manager();
  m.EnablePrewarm();
  auto a = *m.GetOrCreate("first");  // the spare, already running its shell
  EXPECT_EQ(a->id(), "first");
  EXPECT_EQ(Out(*a, "pwd; echo ${HOME}; cd /tmp; export Z=1"), dir_ + "\n" + dir_ + "\n");
  io_.restart();
  io_.poll();  // the replacement spare starts in the background
  auto b = *m.GetOrCreate("second");
  EXPECT_EQ(Out(*b, "pwd; echo [${Z-}]"), dir_ + "\n[]\n");  // fresh initial state
  EXPECT_EQ(Out(*a, "pwd; echo $Z"), "/tmp\n1\n");
  EXPECT_EQ(m.size(), 2u);
}

TEST_F(SessionTest, PosixShFallbackKeepsCwdAndEnv) {
  if (access("/bin/busybox", X_OK) != 0) {
    GTEST_SKIP() << "busybox not installed (scripts/install-deps.sh installs busybox-static)";
  }
  auto& m = Manager("/bin/busybox");
  ASSERT_EQ(m.config().shell.kind, ShellKind::kSh);
  auto s = *m.GetOrCreate("sh");
  auto v = Run(*s, "cd /tmp && export V='it'\"'\"'s\nok'; exit 3");
  EXPECT_EQ(v.exit_code, 3);
  EXPECT_EQ(s->state().env.at("V"), "it's\nok");
  EXPECT_EQ(Out(*s, "pwd; printf '%s' \"$V\""), "/tmp\nit's\nok");
}

}  // namespace
}  // namespace agentbox::guest
