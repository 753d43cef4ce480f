// The cloudrun backend end to end, through agentboxd binaries and a private
// agentbox-gcp-emulator (executions run on the local Docker engine): the seed's switch and
// rollout, the breaker rolling cloudrun back when executions fail, sandboxes already on jail
// staying there, two daemons sharing one bucket, and bad configuration or Google failures each
// becoming one clear error with files and other sessions untouched.
#include <curl/curl.h>
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
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cloudrun_harness.h"

namespace {

using namespace agentbox::cloudrun_e2e;

class CloudRunE2E : public EmulatorTest {
 protected:
  void SetUp() override { StartEmulator(DockerSocket(), "agentbox-cloudrun-e2e"); }
  // What the tests left: destroyed through a daemon with no warm pool.
  Daemon* StartSweeper() override {
    return StartDaemon("sweep", {{"SANDBOX_BACKEND", "cloudrun"}});
  }

  Daemon* StartDaemon(const std::string& name, std::map<std::string, std::string> extra) {
    return Keep(std::make_unique<Daemon>(dir_ + "/" + name, EmulatorConfig(std::move(extra))));
  }
  static std::string Exec(Daemon* d, const std::string& id, const std::string& cmd,
                          const std::string& session = "s") {
    Reply r = d->Api(id, "shell/exec", {{"id", session}, {"command", cmd}, {"wait_seconds", 60}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.data().value("output", "");
  }
};

TEST_F(CloudRunE2E, TheSeedsSwitchSendsNewSandboxesToCloudRunAndExistingOnesStay) {
  Daemon* before = StartDaemon("d", {{"SANDBOX_BACKEND", "jail"}});
  Reply on_jail = before->Create();
  ASSERT_EQ(on_jail.status, 201) << on_jail.body;
  ASSERT_EQ(on_jail.data()["backend"], "jail");
  const std::string jail_id = on_jail.data()["id"];
  daemons_.clear();  // a restart with the switch on

  Daemon* d =
      StartDaemon("d", {{"SANDBOX_BACKEND", "jail"}, {"USE_CLOUDRUN_JOBS_SANDBOX", "true"}});
  Reply c = d->Create(Json{{"subject", "user-1"}});
  ASSERT_EQ(c.status, 201) << c.body << d->log();
  EXPECT_EQ(c.data()["backend"], "cloudrun");
  const std::string id = c.data()["id"];
  EXPECT_EQ(Exec(d, id, "echo on cloud run"), "on cloud run\n");
  EXPECT_EQ(Exec(d, jail_id, "echo still on jail"), "still on jail\n");
  Reply info = d->Call("GET", "/v1/info");
  EXPECT_EQ(info.data()["implementation"], "CloudRunJobsSandbox") << info.body;
  EXPECT_EQ(info.data()["feature_flag_enabled"], true);
  EXPECT_EQ(
      info.data()["config"],
      (Json{{"project_id", "e2e-project"}, {"region", "us-central1"}, {"bucket", "e2e-bucket"}}));
  EXPECT_EQ(info.data()["backends"]["cloudrun"]["capabilities"]["pty"], false);
  const std::string metrics = d->Call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("backend=\"cloudrun\""), std::string::npos) << metrics;
  EXPECT_EQ(d->Call("DELETE", "/v1/sandboxes/" + jail_id).status, 200);
}

TEST_F(CloudRunE2E, TheRolloutPercentageSplitsSubjectsStickily) {
  Daemon* d = StartDaemon("d", {{"SANDBOX_BACKEND", "jail"},
                                {"USE_CLOUDRUN_JOBS_SANDBOX", "true"},
                                {"CLOUDRUN_JOBS_ROLLOUT_PERCENTAGE", "50"}});
  std::map<std::string, std::string> first;
  std::set<std::string> seen;
  for (int i = 0; i < 12; ++i) {
    const std::string subject = "user-" + std::to_string(i);
    Reply c = d->Create(Json{{"subject", subject}});
    ASSERT_EQ(c.status, 201) << c.body;
    first[subject] = c.data()["backend"];
    seen.insert(first[subject]);
    EXPECT_EQ(c.data()["reason"], "SPLIT");
    d->Call("DELETE", "/v1/sandboxes/" + c.data()["id"].get<std::string>());
  }
  EXPECT_EQ(seen, (std::set<std::string>{"cloudrun", "jail"}));
  for (const auto& [subject, backend] : first) {  // sticky
    Reply c = d->Create(Json{{"subject", subject}});
    ASSERT_EQ(c.status, 201) << c.body;
    EXPECT_EQ(c.data()["backend"], backend) << subject;
    d->Call("DELETE", "/v1/sandboxes/" + c.data()["id"].get<std::string>());
  }
}

TEST_F(CloudRunE2E, FailingExecutionsTripTheBreakerAndRollCloudRunBack) {
  Daemon* d = StartDaemon("d", {{"SANDBOX_BACKEND", "jail"},
                                {"USE_CLOUDRUN_JOBS_SANDBOX", "true"},
                                {"AGENTBOX_BREAKER_WINDOW_MS", "1500"},
                                {"AGENTBOX_BREAKER_MIN_SAMPLES", "3"},
                                {"AGENTBOX_BREAKER_WINDOWS", "1"}});
  Reply c = d->Create(Json{{"subject", "user-1"}});
  ASSERT_EQ(c.status, 201) << c.body;
  ASSERT_EQ(c.data()["backend"], "cloudrun");
  const std::string id = c.data()["id"];
  ASSERT_EQ(
      d->Api(id, "file/write", {{"file", "/workspace/keep.txt"}, {"content", "kept\n"}}).status,
      200);
  emulator_->Faults({{"fail_executions", 4}});
  for (int i = 0; i < 4; ++i) {
    Reply r = d->Api(id, "shell/exec", {{"id", "s"}, {"command", "true"}, {"wait_seconds", 60}});
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_NE(r.message().find("failed before the command finished"), std::string::npos) << r.body;
  }
  std::this_thread::sleep_for(1600ms);  // the breaker's window closes
  Reply after = d->Create(Json{{"subject", "user-1"}});
  ASSERT_EQ(after.status, 201) << after.body;
  EXPECT_EQ(after.data()["backend"], "jail");
  EXPECT_EQ(after.data()["reason"], "AUTO_ROLLBACK");
  EXPECT_EQ(d->Call("GET", "/v1/info").data()["breaker"]["state"], "open");
  // The sandbox already on cloudrun stays there, with its files.
  EXPECT_EQ(Exec(d, id, "cat /workspace/keep.txt"), "kept\n");
  EXPECT_EQ(d->Call("DELETE", "/v1/sandboxes/" + after.data()["id"].get<std::string>()).status,
            200);
}

TEST_F(CloudRunE2E, TwoDaemonsShareSandboxesThroughTheBucket) {
  Daemon* a = StartDaemon("a", {{"SANDBOX_BACKEND", "cloudrun"}});
  Daemon* b = StartDaemon("b", {{"SANDBOX_BACKEND", "cloudrun"}});
  Reply c = a->Create();
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.data()["id"];
  EXPECT_EQ(Exec(a, id, "cd /workspace && export FROM=a && echo x > made-by-a"), "");
  // b never saw the create: it finds the sandbox in the bucket, with its session.
  EXPECT_EQ(Exec(b, id, "echo $FROM $PWD; cat made-by-a"), "a /workspace\nx\n");
  EXPECT_EQ(b->Call("GET", "/v1/sandboxes/" + id).status, 200);
  // A command running through one daemon makes the session busy for the other.
  Reply running =
      a->Api(id, "shell/exec", {{"id", "s"}, {"command", "sleep 2"}, {"wait_seconds", 0}});
  EXPECT_EQ(running.data()["status"], "running") << running.body;
  EXPECT_EQ(b->Api(id, "shell/exec", {{"id", "s"}, {"command", "true"}}).status, 409);
  Reply waited = b->Api(id, "shell/wait", {{"id", "s"}, {"seconds", 60}});
  EXPECT_EQ(waited.status, 200) << waited.body;
  EXPECT_EQ(waited.data()["returncode"], 0);
  // Destroyed through b: gone for a too.
  EXPECT_EQ(b->Call("DELETE", "/v1/sandboxes/" + id).status, 200);
  EXPECT_EQ(a->Call("GET", "/v1/sandboxes/" + id).status, 404);
  Reply list = a->Call("GET", "/v1/sandboxes");
  const Json sandboxes = list.data()["sandboxes"];  // data() is a temporary
  for (const auto& sb : sandboxes) {
    EXPECT_NE(sb["id"], id);
  }
  EXPECT_EQ(a->Api(id, "shell/exec", {{"id", "s"}, {"command", "true"}}).status, 404);
}

TEST_F(CloudRunE2E, AnUploadCanBeTheFirstCallAnotherDaemonSees) {
  Daemon* a = StartDaemon("a", {{"SANDBOX_BACKEND", "cloudrun"}});
  Daemon* b = StartDaemon("b", {{"SANDBOX_BACKEND", "cloudrun"}});
  Reply c = a->Create();
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.data()["id"];
  // b has never heard of the sandbox: the upload is spooled, then b finds it in the bucket.
  Reply up = b->Upload(id, "/workspace/up.txt", "uploaded through b\n");
  ASSERT_EQ(up.status, 200) << up.body;
  EXPECT_EQ(Exec(a, id, "cat /workspace/up.txt"), "uploaded through b\n");
  // An id no replica holds is still a 404 after the body was taken.
  EXPECT_EQ(b->Upload("no-such-sandbox", "/workspace/x", "x").status, 404);
}

TEST_F(CloudRunE2E, AShellRunThatWaitsForASlowStartIsNotA504) {
  // The daemon's own margin is 1 s and the command's timeout 2 s, but the execution starts 4 s
  // late: shell/run waits for it (the start allowance), as a real Cloud Run start needs.
  Daemon* d = StartDaemon("d", {{"SANDBOX_BACKEND", "cloudrun"},
                                {"AGENTBOX_GUEST_CALL_MARGIN_S", "1"},
                                {"AGENTBOX_CLOUDRUN_START_TIMEOUT_S", "30"}});
  Reply c = d->Create();
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.data()["id"];
  emulator_->Faults({{"execution_start_delay_ms", 4000}});
  Reply run = d->Api(id, "shell/run", {{"command", "echo started late"}, {"timeout", 2}});
  EXPECT_EQ(run.status, 200) << run.body;
  EXPECT_EQ(run.data().value("stdout", ""), "started late\n") << run.body;
}

TEST_F(CloudRunE2E, SandboxesKeepWorkingAcrossADaemonUpgrade) {
  Daemon* before = StartDaemon("d", {{"SANDBOX_BACKEND", "cloudrun"}});
  Reply c = before->Create();
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.data()["id"];
  EXPECT_EQ(Exec(before, id, "export V=1; echo one"), "one\n");
  daemons_.clear();
  // A new release: another guest binary (other content, so another object in the bucket). The
  // job still starts the guest it was created with, which now runs the new one ("exec").
  const std::string v2 = dir_ + "/agentbox-guest-v2";
  ASSERT_EQ(system(("cp " AGENTBOX_GUEST_BIN " '" + v2 + "' && echo >> '" + v2 + "'").c_str()), 0);
  Daemon* after = StartDaemon("d", {{"SANDBOX_BACKEND", "cloudrun"}, {"AGENTBOX_GUEST_BIN", v2}});
  EXPECT_EQ(Exec(after, id, "echo $V two"), "1 two\n");
  Reply guests = emulator_->Call("GET", "/storage/v1/b/e2e-bucket/o?prefix=agentbox/guest/");
  EXPECT_EQ(guests.json["items"].size(), 2u) << guests.body;
}

TEST_F(CloudRunE2E, BadConfigurationIsRefusedAndNewSandboxesFallBack) {
  Daemon* d = StartDaemon("d", {{"SANDBOX_BACKEND", "jail"},
                                {"USE_CLOUDRUN_JOBS_SANDBOX", "true"},
                                {"SANDBOX_GCP_REGION", "moon-base"}});
  Reply info = d->Call("GET", "/v1/info");
  EXPECT_EQ(info.data()["backends"]["cloudrun"]["available"], false) << info.body;
  EXPECT_NE(info.data()["backends"]["cloudrun"]["config_error"].get<std::string>().find(
                "SANDBOX_GCP_REGION='moon-base'"),
            std::string::npos)
      << info.body;
  Reply c = d->Create(Json{{"subject", "user-1"}});
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.data()["backend"], "jail");
  EXPECT_EQ(c.data()["reason"], "FALLBACK");
  d->Call("DELETE", "/v1/sandboxes/" + c.data()["id"].get<std::string>());
  daemons_.clear();

  // Well formed, but the bucket does not exist: the probe says so and sandboxes fall back.
  d = StartDaemon("d2", {{"SANDBOX_BACKEND", "jail"},
                         {"USE_CLOUDRUN_JOBS_SANDBOX", "true"},
                         {"SANDBOX_GCS_BUCKET", "no-such-bucket"}});
  c = d->Create(Json{{"subject", "user-1"}});
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.data()["backend"], "jail");
  EXPECT_EQ(c.data()["reason"], "FALLBACK");
  EXPECT_NE(c.body.find("gs://no-such-bucket does not exist"), std::string::npos) << c.body;
  d->Call("DELETE", "/v1/sandboxes/" + c.data()["id"].get<std::string>());
}

TEST_F(CloudRunE2E, GoogleFailuresAreClearErrorsAndTouchNothingElse) {
  Daemon* d = StartDaemon(
      "d", {{"SANDBOX_BACKEND", "cloudrun"}, {"AGENTBOX_CLOUDRUN_START_TIMEOUT_S", "1"}});
  Reply c = d->Create();
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.data()["id"];
  ASSERT_EQ(d->Api(id, "file/write", {{"file", "notes.txt"}, {"content", "safe\n"}}).status, 200);
  EXPECT_EQ(Exec(d, id, "export OTHER=1", "other"), "");
  // Unknown fields are handled as the guest handles them: a misspelled bound is refused.
  Reply misspelled =
      d->Api(id, "shell/exec", {{"id", "other"}, {"command", "true"}, {"timeuot", 5}});
  EXPECT_EQ(misspelled.status, 422) << misspelled.body;

  // An execution that never starts: cancelled after the start timeout, the command never ran.
  emulator_->Faults({{"execution_start_delay_ms", 30000}});
  Reply never =
      d->Api(id, "shell/exec",
             {{"id", "s"}, {"command", "echo x > /workspace/notes.txt"}, {"wait_seconds", 60}});
  EXPECT_EQ(never.status, 503) << never.body;
  EXPECT_NE(never.message().find("did not start within 1 s"), std::string::npos) << never.body;
  emulator_->Call("DELETE", "/emulator/v1/faults");

  // A 403 from Cloud Storage names the status.
  emulator_->Faults({{"rules",
                      {{{"method", "storage.objects.get"},
                        {"status", 403},
                        {"message", "storage.objects.get access denied"},
                        {"count", 1}}}}});
  Reply denied = d->Api(id, "file/read", {{"file", "notes.txt"}});
  EXPECT_EQ(denied.status, 403) << denied.body;
  EXPECT_NE(denied.message().find("403"), std::string::npos) << denied.body;
  emulator_->Call("DELETE", "/emulator/v1/faults");

  // A racing writer on the session's head: 409, never a silent overwrite.
  emulator_->Faults(
      {{"rules",
        {{{"method", "storage.objects.insert"}, {"precondition_race", true}, {"count", 1}}}}});
  Reply raced = d->Api(id, "shell/exec", {{"id", "other"}, {"command", "true"}});
  EXPECT_EQ(raced.status, 409) << raced.body;
  emulator_->Call("DELETE", "/emulator/v1/faults");

  // Files and the other session are as they were.
  EXPECT_EQ(d->Api(id, "file/read", {{"file", "notes.txt"}}).data()["content"], "safe\n");
  EXPECT_EQ(Exec(d, id, "echo ${OTHER-unset}", "other"), "1\n");
}

}  // namespace
