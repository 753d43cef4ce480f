// StorageClient, RunClient and the credential sources against the real agentbox-gcp-emulator.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gcp/auth.h"
#include "gcp/run.h"
#include "gcp/storage.h"
#include "gcp/testing/rsa_key.h"
#include "gcp/testing/test_util.h"

namespace agentbox::gcp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The emulator as a child process: started with --listen tcp:127.0.0.1:0, ready once it printed
// its address; killed and reaped on destruction.
class Emulator {
 public:
  Emulator() {
    char tmpl[] = "/tmp/agentbox-gcp-emu-XXXXXX";
    dir_ = mkdtemp(tmpl);
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
      return;
    }
    std::string data = dir_ + "/data";
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      execl(AGENTBOX_GCP_EMULATOR_BIN, AGENTBOX_GCP_EMULATOR_BIN, "--listen", "tcp:127.0.0.1:0",
            "--data", data.c_str(), "--project", "emu-proj", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out[0], POLLIN, 0};
      if (poll(&p, 1, 100) > 0) {
        char buf[256];
        ssize_t n = read(out[0], buf, sizeof buf);
        if (n <= 0) {
          break;
        }
        line.append(buf, static_cast<size_t>(n));
      }
    }
    close(out[0]);
    const std::string prefix = "listening on ";
    if (line.rfind(prefix, 0) == 0) {
      url_ = line.substr(prefix.size(), line.find('\n') - prefix.size());
    }
  }
  ~Emulator() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const std::string& url() const { return url_; }
  std::string data_dir() const { return dir_ + "/data"; }
  std::string dir() const { return dir_; }

 private:
  pid_t pid_ = -1;
  std::string dir_;
  std::string url_;
};

class GcpEmulatorClients : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(emu_.url().empty()) << "agentbox-gcp-emulator did not start";
    endpoints_.run = emu_.url();
    endpoints_.storage = emu_.url();
    endpoints_.metadata_host = emu_.url();
    // Backoff waits are recorded and really slept: the emulator, like the real service, may
    // need a moment (e.g. it releases a resumable session just after answering a chunk).
    auto opts = testing::FastOptions(sleeps_);
    auto record = opts.sleep;
    opts.sleep = [record](std::chrono::milliseconds d) {
      record(d);
      std::this_thread::sleep_for(d);
    };
    http_ = std::make_shared<HttpTransport>(
        std::make_shared<StaticTokenSource>("emulator-token", "test token"), opts);
    storage_ = std::make_unique<StorageClient>(http_, endpoints_);
  }
  // PUT /emulator/v1/faults (the emulator's own test API).
  void SetFaults(const json& faults) {
    HttpTransport plain(nullptr);
    auto r = plain.Send({.method = "PUT",
                         .url = emu_.url() + "/emulator/v1/faults",
                         .headers = {{"Content-Type", "application/json"}},
                         .body = faults.dump()});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status / 100, 2) << r->body;
  }

  Emulator emu_;
  Endpoints endpoints_;
  std::shared_ptr<testing::RecordedSleeps> sleeps_ = std::make_shared<testing::RecordedSleeps>();
  std::shared_ptr<HttpTransport> http_;
  std::unique_ptr<StorageClient> storage_;
};

TEST_F(GcpEmulatorClients, CredentialsFromTheEmulatorsTokenEndpointAndMetadataServer) {
  testing::TestRsaKey key;
  std::string key_path = emu_.dir() + "/key.json";
  std::ofstream(key_path) << key.ServiceAccountKey(emu_.url() + "/token").dump();
  auto sa =
      MakeTokenSource(Config::FromMap({{"GOOGLE_APPLICATION_CREDENTIALS", key_path}}), endpoints_);
  ASSERT_TRUE(sa) << sa.error().message;
  auto token = (*sa)->Token();
  ASSERT_TRUE(token) << token.error().message;
  EXPECT_FALSE(token->empty());

  auto md = MakeTokenSource(Config::FromMap({}), endpoints_);
  ASSERT_TRUE(md);
  auto md_token = (*md)->Token();
  ASSERT_TRUE(md_token) << md_token.error().message;
  HttpTransport plain(nullptr);
  auto project = MetadataProjectId(endpoints_, plain);
  ASSERT_TRUE(project) << project.error().message;
  EXPECT_EQ(*project, "emu-proj");

  // A token from the service-account exchange authenticates Storage calls.
  auto authed = std::make_shared<HttpTransport>(*sa);
  StorageClient client(authed, endpoints_);
  ASSERT_TRUE(client.CreateBucket("emu-proj", "cred-bkt"));
  ASSERT_TRUE(client.GetBucket("cred-bkt"));
  // Without a token the emulator answers 401, which is kUnauthorized.
  StorageClient anonymous(std::make_shared<HttpTransport>(nullptr), endpoints_);
  auto denied = anonymous.GetBucket("cred-bkt");
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ErrorCode::kUnauthorized);
}

TEST_F(GcpEmulatorClients, StorageRoundTrips) {
  ASSERT_TRUE(storage_->CreateBucket("emu-proj", "bkt"));
  auto missing_bucket = storage_->GetBucket("no-such-bucket");
  ASSERT_FALSE(missing_bucket);
  EXPECT_EQ(missing_bucket.error().code, ErrorCode::kNotFound);

  const std::string odd = "ws/sub dir/a+b%c&d=e~\xc3\xbc.txt";
  auto created = storage_->Insert("bkt", odd, "hello",
                                  {.content_type = "text/plain", .if_generation_match = 0});
  ASSERT_TRUE(created) << created.error().message;
  EXPECT_EQ(created->name, odd);
  EXPECT_GT(created->generation, 0);
  EXPECT_EQ(created->size, 5);
  EXPECT_EQ(created->md5_hash, "XUFAKrxLKna5cZ2REBfFkg==");  // base64 MD5 of "hello"
  // Objects are plain files under DIR/buckets/{bucket}/{name}.
  std::ifstream on_disk(emu_.data_dir() + "/buckets/bkt/" + odd);
  std::string disk((std::istreambuf_iterator<char>(on_disk)), {});
  EXPECT_EQ(disk, "hello");

  auto clash = storage_->Insert("bkt", odd, "x", {.if_generation_match = 0});
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, ErrorCode::kConflict);
  EXPECT_NE(clash.error().message.find("precondition"), std::string::npos);
  auto updated =
      storage_->Insert("bkt", odd, "hello again", {.if_generation_match = created->generation});
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_NE(updated->generation, created->generation);

  auto with_meta =
      storage_->Insert("bkt", "ws/meta.json", R"({"a":1})",
                       {.content_type = "application/json", .metadata = {{"session", "s1"}}});
  ASSERT_TRUE(with_meta) << with_meta.error().message;
  auto stat = storage_->Stat("bkt", "ws/meta.json");
  ASSERT_TRUE(stat) << stat.error().message;
  EXPECT_EQ(stat->metadata["session"], "s1");
  EXPECT_EQ(stat->content_type, "application/json");

  auto read = storage_->Read("bkt", odd);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(read->data, "hello again");
  EXPECT_EQ(read->meta.generation, updated->generation);
  auto part = storage_->Read("bkt", odd, ByteRange{6, 5});
  ASSERT_TRUE(part) << part.error().message;
  EXPECT_EQ(part->data, "again");

  storage_->set_chunk_size(256 * 1024);
  std::string big(700 * 1024 + 123, '\0');
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>(i * 31 + i / 4096);
  }
  auto resumable = storage_->InsertResumable("bkt", "ws/big.bin", big);
  ASSERT_TRUE(resumable) << resumable.error().message;
  EXPECT_EQ(resumable->size, static_cast<int64_t>(big.size()));
  std::string streamed;
  auto meta = storage_->ReadTo("bkt", "ws/big.bin", [&](std::string_view b) {
    streamed.append(b);
    return true;
  });
  ASSERT_TRUE(meta) << meta.error().message;
  EXPECT_TRUE(streamed == big);

  // Empty objects: one-shot and resumable uploads, whole and ranged reads.
  auto empty_obj = storage_->Insert("bkt", "ws/empty", "");
  ASSERT_TRUE(empty_obj) << empty_obj.error().message;
  auto empty_resumable = storage_->InsertResumable("bkt", "ws/empty2", "");
  ASSERT_TRUE(empty_resumable) << empty_resumable.error().message;
  EXPECT_EQ(empty_resumable->size, 0);
  auto empty_read = storage_->Read("bkt", "ws/empty");
  ASSERT_TRUE(empty_read) << empty_read.error().message;
  EXPECT_EQ(empty_read->data, "");
  EXPECT_EQ(empty_read->meta.generation, empty_obj->generation);
  auto empty_range = storage_->Read("bkt", "ws/empty2", ByteRange{0, 10});
  ASSERT_TRUE(empty_range) << empty_range.error().message;
  EXPECT_EQ(empty_range->data, "");

  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(storage_->Insert("bkt", "ws/list/" + std::to_string(i), "v"));
  }
  ASSERT_TRUE(storage_->Insert("bkt", "ws/list/d/x", "v"));
  auto page = storage_->List("bkt", {.prefix = "ws/list/", .delimiter = "/", .max_results = 2});
  ASSERT_TRUE(page) << page.error().message;
  EXPECT_EQ(page->items.size(), 2u);
  EXPECT_FALSE(page->next_page_token.empty());
  auto all = storage_->ListAll("bkt", "ws/list/", "/");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->items.size(), 5u);
  EXPECT_EQ(all->prefixes, (std::vector<std::string>{"ws/list/d/"}));

  auto stale = storage_->Delete("bkt", odd, created->generation);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
  ASSERT_TRUE(storage_->Delete("bkt", odd, updated->generation));
  auto gone = storage_->Read("bkt", odd);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
  auto swept = storage_->DeletePrefix("bkt", "ws/");
  ASSERT_TRUE(swept) << swept.error().message;
  EXPECT_EQ(*swept, 10u);
  auto empty = storage_->ListAll("bkt", "");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->items.empty());
}

TEST_F(GcpEmulatorClients, InjectedFaultsAreRetriedOrReported) {
  ASSERT_TRUE(storage_->CreateBucket("emu-proj", "fbkt"));
  SetFaults({{"rules",
              {{{"method", "storage.objects.insert"}, {"status", 503}, {"count", 2}},
               {{"method", "storage.objects.get"}, {"status", 429}, {"count", 1}}}}});
  auto put = storage_->Insert("fbkt", "o", "data", {.if_generation_match = 0});
  ASSERT_TRUE(put) << put.error().message;
  auto got = storage_->Read("fbkt", "o");
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got->data, "data");
  EXPECT_EQ(sleeps_->Get().size(), 3u);  // two 503s and one 429, each waited out

  SetFaults({{"rules",
              {{{"method", "storage.objects.insert"},
                {"status", 403},
                {"message",
                 "sa@p.iam.gserviceaccount.com does not have storage.objects.create access"}}}}});
  auto denied = storage_->Insert("fbkt", "p", "data");
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ErrorCode::kForbidden);
  EXPECT_NE(denied.error().message.find("storage.objects.create"), std::string::npos);

  SetFaults({{"rules",
              {{{"method", "storage.objects.insert"},
                {"precondition_race", true},
                {"status", 0},
                {"count", 1}}}}});
  auto raced = storage_->Insert("fbkt", "o", "mine", {.if_generation_match = put->generation});
  ASSERT_FALSE(raced);
  EXPECT_EQ(raced.error().code, ErrorCode::kConflict);
  EXPECT_NE(raced.error().message.find("precondition"), std::string::npos);
}

TEST_F(GcpEmulatorClients, RunJobExecutesAndReportsTheExitCode) {
  if (access("/var/run/docker.sock", W_OK) != 0) {
    GTEST_SKIP() << "no Docker engine at /var/run/docker.sock: the emulator cannot run executions";
  }
  RunClient run(http_, endpoints_);
  const std::string parent = "projects/emu-proj/locations/us-central1";
  json job = {{"template",
               {{"taskCount", 1},
                {"template",
                 {{"containers",
                   {{{"name", "main"},
                     {"image", "agentbox/base:latest"},
                     {"command", {"/bin/sh", "-c"}},
                     {"args", {"exit 3"}}}}},
                  {"timeout", "120s"},
                  {"maxRetries", 0}}}}}};
  auto op = run.CreateJob(parent, "gcp-clients-test", job);
  ASSERT_TRUE(op) << op.error().message;
  auto again = run.CreateJob(parent, "gcp-clients-test", job);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  const std::string job_name = parent + "/jobs/gcp-clients-test";
  auto got = run.GetJob(job_name);
  ASSERT_TRUE(got) << got.error().message;

  json overrides = {{"containerOverrides", {{{"name", "main"}, {"args", {"echo hi; exit 7"}}}}}};
  auto started = run.RunJob(job_name, overrides);
  ASSERT_TRUE(started) << started.error().message;
  std::string exec_name = (*started)["metadata"].value("name", "");
  ASSERT_FALSE(exec_name.empty()) << started->dump();

  json exec;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  for (;;) {
    auto e = run.GetExecution(exec_name);
    ASSERT_TRUE(e) << e.error().message;
    exec = *e;
    if (RunClient::ExecutionDone(exec)) {
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << exec.dump();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(exec.value("failedCount", 0), 1) << exec.dump();
  auto tasks = run.ListTasks(exec_name);
  ASSERT_TRUE(tasks) << tasks.error().message;
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ((*tasks)[0]["lastAttemptResult"].value("exitCode", -1), 7) << (*tasks)[0].dump();
  auto cancel = run.CancelExecution(exec_name);  // finished: tolerated
  EXPECT_TRUE(cancel) << cancel.error().message;

  // A :run refused with 503 is retried (the service did not act), and starts one execution.
  SetFaults({{"rules", {{{"method", "run.jobs.run"}, {"status", 503}, {"count", 1}}}}});
  auto second = run.RunJob(job_name, nullptr);
  ASSERT_TRUE(second) << second.error().message;
  auto execs = run.ListExecutions(job_name);
  ASSERT_TRUE(execs) << execs.error().message;
  EXPECT_EQ(execs->size(), 2u);
  // Permission errors name the permission.
  SetFaults({{"rules",
              {{{"method", "run.jobs.run"},
                {"status", 403},
                {"message", "Permission 'run.jobs.runWithOverrides' denied on resource"}}}}});
  auto denied = run.RunJob(job_name, overrides);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ErrorCode::kForbidden);
  EXPECT_NE(denied.error().message.find("missing permission run.jobs.runWithOverrides"),
            std::string::npos)
      << denied.error().message;
  SetFaults(json::object());
  auto del = run.DeleteJob(job_name);
  ASSERT_TRUE(del) << del.error().message;
  auto gone = run.GetJob(job_name);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace agentbox::gcp
