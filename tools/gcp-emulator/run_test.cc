// The emulator binary's Run v2 API: executions really run on the local Docker engine.
#include <gtest/gtest.h>

#include "emulator_test_util.h"
#include "fuse_mount.h"

namespace agentbox::gcpemu::testing {
namespace {

constexpr char kParent[] = "/v2/projects/p/locations/us-central1";

class RunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!DockerAvailable()) {
      GTEST_SKIP() << "no Docker engine answers on /var/run/docker.sock (scripts/start-dockerd.sh "
                      "starts one; CI has it)";
    }
    ASSERT_GT(emu_.Start(), 0);
    u_ = emu_.url();
    ASSERT_EQ(Http("POST", u_ + "/storage/v1/b?project=p", R"({"name":"vol"})").status, 200);
  }
  void TearDown() override { Http("DELETE", u_ + "/emulator/v1/faults", "", {}, ""); }

  // A job body: /bin/sh -c in agentbox/base, with the read-write bucket "vol" as volume "ws";
  // Create() sets the script and mounts /ws.
  Json Job(const std::string& timeout = "60s") {
    return Json::parse(R"({"template":{"template":{"maxRetries":0,"timeout":")" + timeout +
                       R"(","containers":[{"name":"main","image":"agentbox/base:latest",
        "command":["/bin/sh","-c"],"args":[]}],"volumes":[{"name":"ws","gcs":{"bucket":"vol"}}]}}})");
  }
  HttpResult Create(const std::string& id, Json job, const std::string& script) {
    auto& c = job["template"]["template"]["containers"][0];
    c["args"] = Json::array({script});
    c["env"] = Json::array({{{"name", "A"}, {"value", "job"}}, {{"name", "B"}, {"value", "job"}}});
    c["volumeMounts"] = Json::array({{{"name", "ws"}, {"mountPath", "/ws"}}});
    return Http("POST", u_ + kParent + "/jobs?jobId=" + id, DumpJson(job));
  }
  // Runs the job and waits for the execution; returns the final :run operation.
  Json RunAndWait(const std::string& id, const Json& overrides = Json::object()) {
    auto r = Http("POST", u_ + kParent + "/jobs/" + id + ":run",
                  DumpJson(Json{{"overrides", overrides}}));
    EXPECT_EQ(r.status, 200) << r.body;
    const std::string op = r.json()["name"];
    EXPECT_FALSE(r.json()["done"].get<bool>());
    EXPECT_FALSE(r.json()["metadata"]["name"].get<std::string>().empty());
    auto w = Http("POST", u_ + "/v2/" + op + ":wait", R"({"timeout":"120s"})");
    EXPECT_TRUE(w.json()["done"].get<bool>()) << w.body;
    return w.json();
  }
  Json Tasks(const std::string& exec) {
    return Http("GET", u_ + "/v2/" + exec + "/tasks").json()["tasks"];
  }
  static std::string CompletedState(const Json& exec) {
    for (const auto& c : exec["conditions"]) {
      if (c["type"] == "Completed") {
        return c["state"];
      }
    }
    return "";
  }

  TempDir dir_;
  EmulatorProcess emu_{dir_.path()};
  std::string u_;
};

TEST_F(RunTest, RunsWithOverridesCloudRunEnvAndVolumeWritesBecomeObjects) {
  ASSERT_EQ(Create("env-job", Job(),
                   "echo \"$A $B $CLOUD_RUN_JOB $CLOUD_RUN_EXECUTION $CLOUD_RUN_TASK_INDEX "
                   "$CLOUD_RUN_TASK_ATTEMPT $CLOUD_RUN_TASK_COUNT $0\" > /ws/env.txt")
                .status,
            200);
  const Json op = RunAndWait("env-job", Json::parse(R"({"containerOverrides":[{"name":"main",
          "args":["echo \"$A $B $CLOUD_RUN_JOB $CLOUD_RUN_TASK_INDEX $CLOUD_RUN_TASK_COUNT\" > /ws/env.txt"],
          "env":[{"name":"B","value":"override"}]}]})"));
  const Json exec = op["response"];
  ASSERT_TRUE(exec.is_object()) << DumpJson(op);
  EXPECT_EQ(CompletedState(exec), "CONDITION_SUCCEEDED");
  EXPECT_EQ(exec["succeededCount"], 1);
  EXPECT_EQ(exec["failedCount"], 0);
  EXPECT_TRUE(exec.contains("startTime"));
  EXPECT_TRUE(exec.contains("completionTime"));
  const Json tasks = Tasks(exec["name"]);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0]["lastAttemptResult"]["exitCode"], 0);
  auto obj = Http("GET", u_ + "/storage/v1/b/vol/o/env.txt");
  ASSERT_EQ(obj.status, 200);
  EXPECT_FALSE(obj.json()["generation"].get<std::string>().empty());
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/vol/o/env.txt?alt=media").body,
            "job override env-job 0 1\n");
  auto job = Http("GET", u_ + kParent + "/jobs/env-job").json();
  EXPECT_EQ(job["executionCount"], 1);
  EXPECT_EQ(job["latestCreatedExecution"]["completionStatus"], "EXECUTION_SUCCEEDED");
}

TEST_F(RunTest, ReadOnlyVolumeWithFileModeRunsItsBinary) {
  // Delivered through the Storage API as an ordinary (0644) object, as the cloudrun backend
  // delivers agentbox-guest.
  ASSERT_EQ(Http("POST", u_ + "/upload/storage/v1/b/vol/o?uploadType=media&name=bin%2Ftool",
                 "#!/bin/sh\necho ran-from-volume > /ws/tool.out\n")
                .status,
            200);
  auto make = [&](const std::string& id, const Json& options) {
    Json j = Job();
    j["template"]["template"]["volumes"].push_back(
        {{"name", "tools"},
         {"gcs", {{"bucket", "vol"}, {"readOnly", true}, {"mountOptions", options}}}});
    auto& c = j["template"]["template"]["containers"][0];
    c["command"] = Json::array({"/opt/tools/tool"});
    c["volumeMounts"] = Json::array(
        {{{"name", "ws"}, {"mountPath", "/ws"}}, {{"name", "tools"}, {"mountPath", "/opt/tools"}}});
    return Http("POST", u_ + kParent + "/jobs?jobId=" + id, DumpJson(j));
  };
  ASSERT_EQ(make("exec-ok", Json::array({"only-dir=bin", "file-mode=555"})).status, 200);
  const Json ok = RunAndWait("exec-ok");
  EXPECT_EQ(CompletedState(ok["metadata"]), "CONDITION_SUCCEEDED") << DumpJson(ok);
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/vol/o/tool.out?alt=media").body, "ran-from-volume\n");

  // Without file-mode the files are 0644, as gcsfuse's default: not executable.
  ::chmod((dir_.path() + "/buckets/vol/bin/tool").c_str(), 0644);
  ASSERT_EQ(make("exec-no", Json::array({"only-dir=bin"})).status, 200);
  const Json no = RunAndWait("exec-no");
  EXPECT_EQ(CompletedState(no["metadata"]), "CONDITION_FAILED");
  EXPECT_EQ(no["error"]["code"], 10);

  // Read-only means read-only.
  Json j = Job();
  j["template"]["template"]["volumes"][0]["gcs"]["readOnly"] = true;
  ASSERT_EQ(Create("ro", j, "echo x > /ws/nope").status, 200);
  const Json ro = RunAndWait("ro");
  EXPECT_EQ(CompletedState(ro["metadata"]), "CONDITION_FAILED");
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/vol/o/nope").status, 404);
}

TEST_F(RunTest, ExitCodeTimeoutAndCancel) {
  ASSERT_EQ(Create("code", Job(), "exit 7").status, 200);
  const Json failed = RunAndWait("code");
  EXPECT_EQ(CompletedState(failed["metadata"]), "CONDITION_FAILED");
  EXPECT_EQ(failed["metadata"]["failedCount"], 1);
  EXPECT_EQ(Tasks(failed["metadata"]["name"])[0]["lastAttemptResult"]["exitCode"], 7);
  EXPECT_EQ(
      Http("POST", u_ + "/v2/" + failed["metadata"]["name"].get<std::string>() + ":cancel", "{}")
          .json()["error"]["status"],
      "FAILED_PRECONDITION");

  ASSERT_EQ(Create("slow", Job("1s"), "sleep 60").status, 200);
  const auto t0 = std::chrono::steady_clock::now();
  const Json timed_out = RunAndWait("slow");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  EXPECT_EQ(CompletedState(timed_out["metadata"]), "CONDITION_FAILED");
  const Json t = Tasks(timed_out["metadata"]["name"])[0];
  EXPECT_EQ(t["lastAttemptResult"]["status"]["code"], 4) << DumpJson(t);

  auto run = Http("POST", u_ + kParent + "/jobs/slow:run", R"({"overrides":{"timeout":"120s"}})");
  const std::string exec = run.json()["metadata"]["name"];
  for (int i = 0; i < 100; ++i) {
    if (Http("GET", u_ + "/v2/" + exec).json()["runningCount"] == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(Http("POST", u_ + "/v2/" + exec + ":cancel", "{}").status, 200);
  auto w = Http("POST", u_ + "/v2/" + run.json()["name"].get<std::string>() + ":wait",
                R"({"timeout":"60s"})");
  EXPECT_EQ(w.json()["metadata"]["cancelledCount"], 1) << w.body;
  EXPECT_EQ(Http("DELETE", u_ + "/v2/" + exec).status, 200);
  EXPECT_EQ(Http("GET", u_ + "/v2/" + exec).status, 404);
}

TEST_F(RunTest, InjectedExecutionFaultsAndStartDelay) {
  ASSERT_EQ(Create("ok", Job(), "true").status, 200);
  ASSERT_EQ(Http("PUT", u_ + "/emulator/v1/faults",
                 R"({"fail_executions":1,"execution_start_delay_ms":400,
                     "rules":[{"method":"run.jobs.run","status":429,"count":1}]})",
                 {}, "")
                .status,
            200);
  auto limited = Http("POST", u_ + kParent + "/jobs/ok:run", "{}");
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.json()["error"]["status"], "RESOURCE_EXHAUSTED");
  const Json failed = RunAndWait("ok");
  EXPECT_EQ(CompletedState(failed["metadata"]), "CONDITION_FAILED");
  const Json t = Tasks(failed["metadata"]["name"])[0];
  EXPECT_FALSE(t["lastAttemptResult"].contains("exitCode")) << "failed before the container ran";
  const Json fine = RunAndWait("ok");
  EXPECT_EQ(CompletedState(fine["metadata"]), "CONDITION_SUCCEEDED");
}

TEST_F(RunTest, ValidatesJobsAndAcceptsIntegerEnums) {
  Json j = Job();
  j["launchStage"] = 4;  // GA, as the Node.js client's REST fallback sends it
  j["template"]["template"]["executionEnvironment"] = 2;
  auto r = Create("enums", j, "true");
  ASSERT_EQ(r.status, 200) << r.body;
  auto got = Http("GET", u_ + kParent + "/jobs/enums").json();
  EXPECT_EQ(got["launchStage"], "GA");
  EXPECT_EQ(got["template"]["template"]["executionEnvironment"], "EXECUTION_ENVIRONMENT_GEN2");
  EXPECT_EQ(got["template"]["template"]["maxRetries"], 0);
  EXPECT_EQ(Create("enums", j, "true").json()["error"]["status"], "ALREADY_EXISTS");
  EXPECT_EQ(Create("Bad_Id", j, "true").status, 400);
  Json noimg = Job();
  noimg["template"]["template"]["containers"][0].erase("image");
  EXPECT_EQ(Create("noimg", noimg, "true").status, 400);
  Json missing = Job();
  missing["template"]["template"]["containers"][0]["image"] = "agentbox/does-not-exist:nope";
  auto m = Create("missing", missing, "true");
  EXPECT_EQ(m.status, 400);
  EXPECT_NE(m.body.find("not found"), std::string::npos) << m.body;
  Json badmount = Job();
  badmount["template"]["template"]["volumes"] = Json::array();
  EXPECT_EQ(Create("badmount", badmount, "true").status, 400);
  EXPECT_EQ(Http("GET", u_ + kParent + "/jobs/nope").status, 404);
  EXPECT_EQ(Http("POST", u_ + kParent + "/jobs/nope:run", "{}").status, 404);
  EXPECT_EQ(Http("DELETE", u_ + kParent + "/jobs/enums").status, 200);
  EXPECT_EQ(Http("GET", u_ + kParent + "/jobs/enums").status, 404);
}

// --volumes fuse: the same job as ReadOnlyVolumeWithFileModeRunsItsBinary, but the volumes are
// rclone FUSE mounts through the Storage API, with object-store semantics.
TEST(RunFuseTest, VolumesAreObjectStoreMountsThroughTheStorageApi) {
  if (!DockerAvailable()) {
    GTEST_SKIP() << "no Docker engine answers on /var/run/docker.sock";
  }
  if (auto ok = FuseAvailable(); !ok) {
    if (std::getenv("CI") != nullptr) {
      FAIL() << ok.error().message << " (CI must have it: scripts/install-deps.sh)";
    }
    GTEST_SKIP() << ok.error().message;
  }
  TempDir dir;
  EmulatorProcess emu(dir.path());
  ASSERT_GT(emu.Start({"--volumes", "fuse"}), 0);
  const std::string u = emu.url();
  ASSERT_EQ(Http("POST", u + "/storage/v1/b?project=p", R"({"name":"vol"})").status, 200);
  ASSERT_EQ(Http("POST", u + "/upload/storage/v1/b/vol/o?uploadType=media&name=bin%2Ftool",
                 "#!/bin/sh\necho \"ran $1\" > /ws/out.txt\n"
                 "ln /ws/out.txt /ws/hard 2>/dev/null && echo linked >> /ws/out.txt\n"
                 "echo x > /bin-ro/nope 2>/dev/null && echo wrote-ro >> /ws/out.txt\nexit 0\n")
                .status,
            200);
  const Json job = Json::parse(R"({"template":{"template":{"maxRetries":0,"containers":[{
      "image":"agentbox/base:latest","command":["/bin-ro/tool"],"args":["fused"],
      "volumeMounts":[{"name":"tools","mountPath":"/bin-ro"},{"name":"ws","mountPath":"/ws"}]}],
      "volumes":[{"name":"tools","gcs":{"bucket":"vol","readOnly":true,
                                        "mountOptions":["only-dir=bin","file-mode=555"]}},
                 {"name":"ws","gcs":{"bucket":"vol","mountOptions":["only-dir=ws"]}}]}}})");
  ASSERT_EQ(Http("POST", u + std::string(kParent) + "/jobs?jobId=fused", DumpJson(job)).status,
            200);
  auto run = Http("POST", u + std::string(kParent) + "/jobs/fused:run", "{}");
  ASSERT_EQ(run.status, 200);
  auto w = Http("POST", u + "/v2/" + run.json()["name"].get<std::string>() + ":wait",
                R"({"timeout":"120s"})");
  ASSERT_TRUE(w.json()["done"].get<bool>()) << w.body;
  EXPECT_FALSE(w.json().contains("error")) << w.body;
  // Uploaded through the Storage API on close (a generation of its own), no hard link (FUSE
  // object stores have none), and the read-only volume refused the write.
  auto meta = Http("GET", u + "/storage/v1/b/vol/o/ws%2Fout.txt");
  ASSERT_EQ(meta.status, 200);
  EXPECT_FALSE(meta.json()["generation"].get<std::string>().empty());
  EXPECT_EQ(Http("GET", u + "/storage/v1/b/vol/o/ws%2Fout.txt?alt=media").body, "ran fused\n");
  EXPECT_EQ(Http("GET", u + "/storage/v1/b/vol/o/ws%2Fhard").status, 404);
}

}  // namespace
}  // namespace agentbox::gcpemu::testing
