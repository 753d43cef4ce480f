#include "gcp/run.h"

#include <gtest/gtest.h>

#include <atomic>

#include "gcp/testing/fake_http.h"
#include "gcp/testing/test_util.h"

namespace agentbox::gcp {
namespace {

using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::FakeResponse;
using testing::RecordedSleeps;

const std::string kParent = "projects/proj/locations/us-central1";
const std::string kJob = kParent + "/jobs/ab-s1";
const std::string kExec = kJob + "/executions/ab-s1-x7k2p";

class GcpRun : public ::testing::Test {
 protected:
  using Handler = std::function<FakeResponse(const FakeRequest&)>;
  void Start(Handler h) {
    server_ = std::make_unique<FakeHttpServer>(std::move(h));
    Endpoints e;
    e.run = server_->url();
    client_ = std::make_unique<RunClient>(testing::TransportWithToken("tok", sleeps_), e);
  }
  std::shared_ptr<RecordedSleeps> sleeps_ = std::make_shared<RecordedSleeps>();
  std::unique_ptr<FakeHttpServer> server_;
  std::unique_ptr<RunClient> client_;
};

TEST_F(GcpRun, CreateJobPostsTheJobUnderItsIdAndRetriesIntoAlreadyExists) {
  std::atomic<int> n{0};
  Start([&](const FakeRequest& r) {
    int i = ++n;
    if (i == 1) {
      return FakeResponse::Json(
          200,
          R"({"name":"projects/proj/locations/us-central1/operations/op1","metadata":{"@type":"type.googleapis.com/google.cloud.run.v2.Job"}})");
    }
    if (i == 2) {
      return FakeResponse::Json(
          503, R"({"error":{"code":503,"message":"try again","status":"UNAVAILABLE"}})");
    }
    (void)r;
    return FakeResponse::Json(
        409,
        R"({"error":{"code":409,"message":"Resource 'ab-s1' already exists.","status":"ALREADY_EXISTS"}})");
  });
  Json job = {{"labels", {{"agentbox-sandbox", "s1"}}},
              {"template",
               {{"taskCount", 1},
                {"template",
                 {{"containers", {{{"image", "busybox"}, {"command", {"/bin/true"}}}}},
                  {"timeout", "600s"},
                  {"maxRetries", 0}}}}}};
  auto op = client_->CreateJob(kParent, "ab-s1", job);
  ASSERT_TRUE(op) << op.error().message;
  EXPECT_EQ((*op)["name"], "projects/proj/locations/us-central1/operations/op1");
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].target, "/v2/projects/proj/locations/us-central1/jobs?jobId=ab-s1");
  EXPECT_EQ(reqs[0].Header("content-type"), "application/json");
  EXPECT_EQ(reqs[0].Header("authorization"), "Bearer tok");
  EXPECT_EQ(Json::parse(reqs[0].body), job);

  // A create whose first attempt failed transiently lands on ALREADY_EXISTS: kConflict.
  auto again = client_->CreateJob(kParent, "ab-s1", job);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_NE(again.error().message.find("Cloud Run: 409 ALREADY_EXISTS"), std::string::npos);
  EXPECT_EQ(server_->requests().size(), 3u);
}

TEST_F(GcpRun, RunJobSendsOverridesAndIsNeverResentAfterItMayHaveArrived) {
  std::atomic<int> n{0};
  Start([&](const FakeRequest&) {
    int i = ++n;
    if (i == 1) {
      return FakeResponse::Json(
          429, R"({"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}})");
    }
    if (i == 2) {
      return FakeResponse::Json(200, Json{{"name", kParent + "/operations/op2"},
                                          {"metadata", {{"name", kExec}}},
                                          {"done", false}}
                                         .dump());
    }
    FakeResponse reset;
    reset.action = FakeResponse::Action::kReset;
    return reset;
  });
  Json overrides = {{"containerOverrides",
                     {{{"args", {"run-once", "--snapshot", "gs://b/s"}},
                       {"env", {{{"name", "A"}, {"value", "1"}}}}}}},
                    {"taskCount", 1},
                    {"timeout", "30s"}};
  auto op = client_->RunJob(kJob, overrides);
  ASSERT_TRUE(op) << op.error().message;
  EXPECT_EQ((*op)["metadata"]["name"], kExec);
  auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 2u);  // the 429 was retried: the service did not act on it
  EXPECT_EQ(reqs[1].target, "/v2/" + kJob + ":run");
  EXPECT_EQ(Json::parse(reqs[1].body), (Json{{"overrides", overrides}}));

  auto lost = client_->RunJob(kJob, nullptr);
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(lost.error().message.rfind("Cloud Run: POST ", 0), 0u) << lost.error().message;
  reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[2].body, "{}");
}

TEST_F(GcpRun, ExecutionsTasksAndPagination) {
  Start([&](const FakeRequest& r) {
    if (r.path == "/v2/" + kJob + "/executions") {
      if (r.Query("pageToken").empty()) {
        return FakeResponse::Json(200, Json{{"executions", {{{"name", kJob + "/executions/e1"}}}},
                                            {"nextPageToken", "t1"}}
                                           .dump());
      }
      return FakeResponse::Json(200,
                                Json{{"executions", {{{"name", kJob + "/executions/e2"}}}}}.dump());
    }
    if (r.path == "/v2/" + kExec + "/tasks") {
      return FakeResponse::Json(
          200, R"({"tasks":[{"name":"t0","index":0,"lastAttemptResult":{"exitCode":3}}]})");
    }
    if (r.path == "/v2/" + kExec && r.method == "GET") {
      return FakeResponse::Json(
          200, Json{{"name", kExec}, {"completionTime", "2026-12-05T00:00:01Z"}, {"failedCount", 1}}
                   .dump());
    }
    if (r.path == "/v2/" + kExec && r.method == "DELETE") {
      return FakeResponse::Json(200, R"({"name":"op-del"})");
    }
    return FakeResponse::Json(
        404, R"({"error":{"code":404,"message":"not found","status":"NOT_FOUND"}})");
  });
  auto execs = client_->ListExecutions(kJob);
  ASSERT_TRUE(execs) << execs.error().message;
  ASSERT_EQ(execs->size(), 2u);
  EXPECT_EQ((*execs)[1]["name"], kJob + "/executions/e2");
  auto reqs = server_->requests();
  EXPECT_EQ(reqs[0].target, "/v2/" + kJob + "/executions?pageSize=100");
  EXPECT_EQ(reqs[1].target, "/v2/" + kJob + "/executions?pageSize=100&pageToken=t1");

  auto tasks = client_->ListTasks(kExec);
  ASSERT_TRUE(tasks);
  EXPECT_EQ((*tasks)[0]["lastAttemptResult"]["exitCode"], 3);
  auto exec = client_->GetExecution(kExec);
  ASSERT_TRUE(exec);
  EXPECT_TRUE(RunClient::ExecutionDone(*exec));
  EXPECT_TRUE(client_->DeleteExecution(kExec));
  auto missing = client_->GetJob(kParent + "/jobs/nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message, "Cloud Run: 404 NOT_FOUND: not found");
}

TEST_F(GcpRun, DeleteWhoseRetryFindsNothingIsDone) {
  std::atomic<int> n{0};
  Start([&](const FakeRequest& r) {
    if (r.method == "DELETE" && r.path == "/v2/" + kJob) {
      return ++n == 1 ? FakeResponse::Json(502, "{}")  // deleted, answer lost
                      : FakeResponse::Json(404, R"({"error":{"code":404,"status":"NOT_FOUND"}})");
    }
    return FakeResponse::Json(404, R"({"error":{"code":404,"status":"NOT_FOUND"}})");
  });
  EXPECT_TRUE(client_->DeleteJob(kJob));
  auto missing = client_->DeleteJob(kParent + "/jobs/never");  // first answer: not found
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_F(GcpRun, CancelToleratesAFinishedExecution) {
  Start([&](const FakeRequest& r) {
    if (r.method == "POST" && r.path == "/v2/" + kExec + ":cancel") {
      EXPECT_EQ(r.body, "{}");
      return FakeResponse::Json(
          400,
          R"({"error":{"code":400,"message":"Execution already finished","status":"FAILED_PRECONDITION"}})");
    }
    return FakeResponse::Json(
        200, Json{{"name", kExec},
                  {"succeededCount", 1},
                  {"conditions", {{{"type", "Completed"}, {"state", "CONDITION_SUCCEEDED"}}}}}
                 .dump());
  });
  auto r = client_->CancelExecution(kExec);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["succeededCount"], 1);
  EXPECT_TRUE(RunClient::ExecutionDone(*r));
}

TEST_F(GcpRun, WaitOperationPollsUntilDoneAndMapsItsError) {
  std::atomic<int> polls{0};
  Start([&](const FakeRequest& r) {
    if (r.path == "/v2/" + kParent + "/operations/ok") {
      return FakeResponse::Json(200, Json{{"name", "ok"}, {"done", ++polls >= 3}}.dump());
    }
    if (r.path == "/v2/" + kParent + "/operations/bad") {
      return FakeResponse::Json(
          200,
          R"({"name":"bad","done":true,"error":{"code":7,"message":"Permission 'iam.serviceaccounts.actAs' denied"}})");
    }
    return FakeResponse::Json(200, R"({"name":"slow","done":false})");
  });
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto ok = client_->WaitOperation(kParent + "/operations/ok", deadline);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(polls.load(), 3);
  auto bad = client_->WaitOperation(kParent + "/operations/bad", deadline);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kForbidden);
  EXPECT_NE(bad.error().message.find("iam.serviceaccounts.actAs"), std::string::npos);
  auto slow =
      client_->WaitOperation(kParent + "/operations/slow",
                             std::chrono::steady_clock::now() + std::chrono::milliseconds(300));
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().code, ErrorCode::kTimeout);
}

TEST_F(GcpRun, ForbiddenNamesTheMissingPermission) {
  Start([&](const FakeRequest&) {
    return FakeResponse::Json(
        403,
        R"({"error":{"code":403,"message":"Permission denied on resource project proj.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"run.googleapis.com","metadata":{"permission":"run.jobs.runWithOverrides"}}]}})");
  });
  auto r = client_->RunJob(kJob, Json{{"taskCount", 1}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  EXPECT_EQ(r.error().message,
            "Cloud Run: 403 PERMISSION_DENIED: Permission denied on resource project proj. "
            "(missing permission run.jobs.runWithOverrides)");
}

TEST(GcpRunStatic, ExecutionDoneReadsCompletionTimeOrTheCompletedCondition) {
  EXPECT_FALSE(RunClient::ExecutionDone(Json{{"name", "e"}, {"runningCount", 1}}));
  EXPECT_FALSE(RunClient::ExecutionDone(
      Json{{"conditions", {{{"type", "Completed"}, {"state", "CONDITION_PENDING"}}}}}));
  EXPECT_TRUE(
      RunClient::ExecutionDone(Json{{"conditions",
                                     {{{"type", "Ready"}, {"state", "CONDITION_SUCCEEDED"}},
                                      {{"type", "Completed"}, {"state", "CONDITION_FAILED"}}}}}));
  EXPECT_TRUE(RunClient::ExecutionDone(Json{{"completionTime", "2026-12-05T00:00:00Z"}}));
}

}  // namespace
}  // namespace agentbox::gcp
