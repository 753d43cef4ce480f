// Units of the cloudrun backend against in-memory fakes of Cloud Storage and Cloud Run: no
// network, no Docker. Commands really run: the fake executor hands run-once's arguments to the
// guest's own RunOnce, as an execution would. The end-to-end suites (conformance, selection)
// run the same backend against agentbox-gcp-emulator.
#include "backends/cloudrun/cloudrun_backend.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <future>
#include <thread>

#include "backends/cloudrun/layout.h"
#include "backends/cloudrun/memory_cloud.h"
#include "common/fs_util.h"
#include "guest/run_once.h"

namespace agentbox::cloudrun {
namespace {

using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/agentbox-cloudrun-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { (void)RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What an execution does in the job's container: run-once between objects of the bucket.
void RunOnceExecutor(MemoryObjectStore& store, const std::string& sandbox_id,
                     const std::string& workdir, FakeExecution& e) {
  Json args = e.overrides["containerOverrides"][0]["args"];
  if (args[0] == "exec") {  // the job's guest starting the daemon's: same arguments after it
    args.erase(args.begin(), args.begin() + 2);
  }
  guest::RunOnceOptions o;
  std::string out_path;
  auto object_of = [&](const std::string& container_path) {
    return layout::SessionsPrefix(sandbox_id) +
           container_path.substr(std::string(layout::kSessionsMount).size() + 1);
  };
  TempDir tmp;
  for (size_t i = 1; i < args.size(); i += 2) {
    const std::string k = args[i];
    if (k == "--combined") {
      o.combined_output = true;
      --i;
      continue;
    }
    if (i + 1 >= args.size()) {
      break;
    }
    const std::string v = args[i + 1];
    if (k == "--command") {
      o.command = v;
    } else if (k == "--out") {
      out_path = v;
    } else if (k == "--state") {
      auto d = store.Read(object_of(v), std::nullopt);
      ASSERT_TRUE(d) << d.error().message;
      o.state_path = tmp.path() + "/state.json";
      std::ofstream(o.state_path) << d->data;
    } else if (k == "--timeout") {
      o.timeout_s = std::stod(v);
    } else if (k == "--exec-dir") {
      o.exec_dir = v;
    } else if (k == "--workdir") {
      o.workdir = workdir;
    }
  }
  auto r = guest::RunOnce(o);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(store.Insert(object_of(out_path), DumpJson(*r), std::nullopt, "application/json"));
}

class CloudRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_shared<MemoryObjectStore>();
    jobs_ = std::make_shared<FakeJobRunner>([this](const std::string&, FakeExecution& e) {
      if (executor_) {
        executor_(e);
      } else {
        RunOnceExecutor(*store_, "sb1", work_.path(), e);
      }
    });
    opts_.project = "test-project";
    opts_.bucket = "test-bucket";
    opts_.state_dir = state_.path() + "/cloudrun";
    opts_.guest_binary = "/proc/self/exe";  // any file: uploaded by content hash
    opts_.start_timeout = 300ms;
    opts_.poll_max = 20ms;
    backend_ = std::make_unique<CloudRunBackend>(opts_, Cloud{store_, jobs_});
  }

  SessionEngine& Engine() {
    if (!engine_) {
      engine_ = std::make_unique<SessionEngine>(opts_, Cloud{store_, jobs_}, io_);
      io_thread_ = std::thread([this] {
        auto guard = boost::asio::make_work_guard(io_);
        io_.run();
      });
    }
    return *engine_;
  }
  void TearDown() override {
    engine_.reset();
    io_.stop();
    if (io_thread_.joinable()) {
      io_thread_.join();
    }
  }

  // Starts a command and waits for its outcome.
  Outcome Exec(const std::string& sid, const std::string& command, SandboxRef sb = {}) {
    if (sb.id.empty()) {
      sb = sb_;
    }
    SessionEngine::StartRequest r;
    r.command = command;
    auto started = Engine().Start(sb, sid, r);
    EXPECT_TRUE(started) << started.error().message;
    if (!started) {
      return {};
    }
    return WaitFor(sb, sid, started->run);
  }
  Outcome WaitFor(const SandboxRef& sb, const std::string& sid, const std::string& run) {
    std::promise<std::optional<Outcome>> p;
    Engine().Wait(sb, sid, run, 10s, [&](std::optional<Outcome> o) { p.set_value(o); });
    auto o = p.get_future().get();
    EXPECT_TRUE(o.has_value()) << "no outcome within 10 s";
    return o.value_or(Outcome{});
  }
  SandboxRef CreateSb1() {
    SandboxSpec spec;
    spec.owner = "alice";
    spec.env = {{"GREETING", "hi"}};
    auto info = backend_->Create("sb1", spec);
    EXPECT_TRUE(info) << info.error().message;
    return sb_;
  }

  TempDir state_;
  TempDir work_;
  std::shared_ptr<MemoryObjectStore> store_;
  std::shared_ptr<FakeJobRunner> jobs_;
  std::function<void(FakeExecution&)> executor_;
  CloudRunOptions opts_;
  std::unique_ptr<CloudRunBackend> backend_;
  boost::asio::io_context io_;
  std::thread io_thread_;
  std::unique_ptr<SessionEngine> engine_;
  SandboxRef sb_{"sb1", layout::JobId("sb1"), "", "", std::nullopt};
};

TEST(CloudRunOptionsTest, NamesAreCheckedWhenTheConfigurationIsRead) {
  EXPECT_TRUE(ValidProjectId("my-project-1"));
  EXPECT_TRUE(ValidProjectId("example.com:my-project"));
  for (const char* bad : {"", "short", "My-Project", "1project", "project-", "pro ject-x",
                          "a-very-long-project-id-that-is-over-thirty"}) {
    EXPECT_FALSE(ValidProjectId(bad)) << bad;
  }
  EXPECT_TRUE(ValidRegion("us-central1"));
  EXPECT_TRUE(ValidRegion("europe-west4"));
  EXPECT_TRUE(ValidRegion("northamerica-northeast1"));
  for (const char* bad : {"", "us", "us-central", "US-CENTRAL1", "us_central1", "us-central1a"}) {
    EXPECT_FALSE(ValidRegion(bad)) << bad;
  }
  EXPECT_TRUE(ValidBucketName("my-bucket_1"));
  EXPECT_TRUE(ValidBucketName("state.example.com"));
  for (const char* bad : {"ab", "-bucket", "bucket-", "Bucket", "goog-bucket", "my-google-b",
                          "192.168.0.1", "a..b", "has space"}) {
    EXPECT_FALSE(ValidBucketName(bad)) << bad;
  }
}

Config MakeConfig(std::map<std::string, std::string> values) {
  Config::Sources s;
  s.overrides = std::move(values);
  s.use_environment = false;
  return *Config::Load(s);
}

TEST(CloudRunOptionsTest, OptionsFromConfig) {
  auto ok = OptionsFromConfig(MakeConfig({{"SANDBOX_GCP_PROJECT", "my-project"}}), "/s", "/g");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->region, "us-central1");
  EXPECT_EQ(ok->bucket, "my-project-sandbox-state");
  EXPECT_EQ(ok->mode, "job");
  auto missing = OptionsFromConfig(MakeConfig({}), "/s", "/g");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("SANDBOX_GCP_PROJECT"), std::string::npos);
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"SANDBOX_GCP_PROJECT", "Bad_Project"},
                                                        {"SANDBOX_GCP_REGION", "moon"},
                                                        {"SANDBOX_GCS_BUCKET", "No Such"},
                                                        {"AGENTBOX_CLOUDRUN_MODE", "session"},
                                                        {"AGENTBOX_CLOUDRUN_MODE", "batch"}}) {
    std::map<std::string, std::string> m = {{"SANDBOX_GCP_PROJECT", "my-project"}};
    m[key] = value;
    auto r = OptionsFromConfig(MakeConfig(m), "/s", "/g");
    ASSERT_FALSE(r) << key << "=" << value;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find(key), std::string::npos) << r.error().message;
  }
}

TEST(CloudRunLayoutTest, JobIdsAreDeterministicAndValid) {
  EXPECT_EQ(layout::JobId("sb-1"), layout::JobId("sb-1"));
  EXPECT_NE(layout::JobId("SB-1"), layout::JobId("sb-1"));
  const std::string long_id(64, 'A');
  for (const std::string& id : {std::string("sb-1"), long_id, std::string("a.b_c")}) {
    const std::string j = layout::JobId(id);
    EXPECT_LE(j.size(), 63u) << j;
    EXPECT_EQ(j.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-"), std::string::npos);
    EXPECT_TRUE(j[0] >= 'a' && j[0] <= 'z');
  }
  for (const std::string& sid :
       {std::string("default"), std::string("a b/c%"), std::string(".."), std::string("é")}) {
    const std::string enc = layout::EncodeSessionId(sid);
    EXPECT_EQ(enc.find('/'), std::string::npos);
    EXPECT_NE(enc, "..");
    EXPECT_EQ(layout::DecodeSessionId(enc), sid);
  }
}

TEST(CloudRunLayoutTest, JobAndOverrides) {
  CloudRunOptions o;
  o.project = "p-project";
  o.bucket = "b-bucket";
  SandboxSpec spec;
  spec.owner = "Alice@Example.com";
  spec.env = {{"A", "1"}};
  spec.limits.memory_bytes = 2ull << 30;
  spec.limits.cpus = 2;
  auto job = BuildJob(o, "sb1", spec, "agentbox/guest/abc");
  ASSERT_TRUE(job);
  const Json& t = (*job)["template"]["template"];
  EXPECT_EQ(t["maxRetries"], 0);
  EXPECT_EQ((*job)["template"]["taskCount"], 1);
  EXPECT_EQ((*job)["labels"]["agentbox-sandbox"], "sb1");
  EXPECT_EQ((*job)["labels"]["agentbox-owner"], "alice_example_com");
  const Json& c = t["containers"][0];
  EXPECT_EQ(c["image"], o.default_image);
  EXPECT_EQ(c["command"][0], "/agentbox/guests/abc/agentbox-guest");
  EXPECT_EQ(c["resources"]["limits"]["memory"], "2048Mi");
  EXPECT_EQ(c["resources"]["limits"]["cpu"], "2");
  EXPECT_EQ(c["env"][0], (Json{{"name", "A"}, {"value", "1"}}));
  EXPECT_EQ(t["volumes"][0]["gcs"]["readOnly"], true);
  EXPECT_EQ(t["volumes"][0]["gcs"]["mountOptions"],
            (Json{"only-dir=agentbox/guest", "file-mode=555"}));
  EXPECT_EQ(t["volumes"][1]["gcs"]["mountOptions"][0], "only-dir=sandboxes/sb1/workspace");
  o.guest_volume = false;  // the fallback: images that carry the guest
  auto baked = BuildJob(o, "sb1", spec, "agentbox/guest/abc");
  ASSERT_TRUE(baked);
  EXPECT_EQ((*baked)["template"]["template"]["volumes"].size(), 2u);
  EXPECT_EQ((*baked)["template"]["template"]["containers"][0]["volumeMounts"][0]["name"],
            "workspace");
  EXPECT_EQ((*baked)["template"]["template"]["containers"][0]["command"][0],
            "/agentbox/guests/abc/agentbox-guest");
  // The guest drops CAP_SYS_ADMIN, or makes a read-only root, asked through the environment.
  EXPECT_EQ(c["env"].size(), 2u);
  EXPECT_EQ(c["env"][1], (Json{{"name", "AGENTBOX_DROP_SYS_ADMIN"}, {"value", "1"}}));
  spec.read_only_root = true;
  auto ro = BuildJob(o, "sb1", spec, "agentbox/guest/abc");
  ASSERT_TRUE(ro);
  EXPECT_EQ((*ro)["template"]["template"]["containers"][0]["env"].back(),
            (Json{{"name", "AGENTBOX_READ_ONLY_ROOT"}, {"value", "1"}}));

  RunRequest r;
  r.session_id = "s";
  r.run_id = "r1";
  r.command = "echo hi";
  r.state_object = layout::RunObject("sb1", "s", "r0");
  r.timeout_s = 30;
  Json ov = BuildOverrides(o, "sb1", r);
  EXPECT_EQ(ov["timeout"], "150s");  // the command's timeout plus the grace
  const Json& args = ov["containerOverrides"][0]["args"];
  EXPECT_EQ(args[0], "run-once");
  EXPECT_NE(std::find(args.begin(), args.end(), "/agentbox/sessions/s/runs/r0.json"), args.end());
  EXPECT_NE(std::find(args.begin(), args.end(), "/agentbox/sessions/s/runs/r1.json"), args.end());
  // A job created with an older guest runs the daemon's current one through it.
  r.guest_dir = "agentbox/guest/new";
  r.job_guest_dir = "agentbox/guest/abc";
  Json via = BuildOverrides(o, "sb1", r)["containerOverrides"][0]["args"];
  EXPECT_EQ(via[0], "exec");
  EXPECT_EQ(via[1], "/agentbox/guests/new/agentbox-guest");
  EXPECT_EQ(via[2], "run-once");
  r.job_guest_dir = r.guest_dir;
  EXPECT_EQ(BuildOverrides(o, "sb1", r)["containerOverrides"][0]["args"][0], "run-once");
}

TEST_F(CloudRunTest, CreateWritesRecordAndJobButRunsNothing) {
  CreateSb1();
  EXPECT_EQ(jobs_->executions(), 0u);
  auto jobs = jobs_->Jobs();
  ASSERT_EQ(jobs.count(layout::JobId("sb1")), 1u);
  EXPECT_EQ(jobs[layout::JobId("sb1")]["labels"]["agentbox-owner"], "alice");
  auto names = store_->Names();
  EXPECT_EQ(names.count("sandboxes/sb1/sandbox.json"), 1u);
  size_t guests = 0;
  for (const auto& [n, d] : names) {
    guests += n.starts_with("agentbox/guest/") ? 1 : 0;
  }
  EXPECT_EQ(guests, 1u);
  EXPECT_EQ(backend_->Create("sb1", {}).error().code, ErrorCode::kConflict);

  auto info = backend_->Get("sb1");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->spec.owner, "alice");
  EXPECT_EQ(info->spec.env.at("GREETING"), "hi");
  EXPECT_EQ(info->guest_endpoint, "unix:" + backend_->SocketPath());
  EXPECT_EQ(backend_->Get("nope").error().code, ErrorCode::kNotFound);
}

TEST_F(CloudRunTest, ReplicasShareSandboxesThroughTheBucket) {
  CreateSb1();
  CloudRunOptions other = opts_;
  other.state_dir = state_.path() + "/replica2";
  CloudRunBackend replica(other, Cloud{store_, jobs_});
  auto list = replica.List();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, "sb1");
  ASSERT_TRUE(replica.SetExpiry("sb1", 12345));
  EXPECT_EQ(backend_->Get("sb1")->expires_at, 12345);
  ASSERT_TRUE(replica.Destroy("sb1"));
  EXPECT_EQ(backend_->Get("sb1").error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(jobs_->Jobs().empty());
  EXPECT_EQ(backend_->Destroy("sb1").error().code, ErrorCode::kNotFound);  // idempotent
  for (const auto& [n, d] : store_->Names()) {
    EXPECT_FALSE(n.starts_with("sandboxes/sb1/")) << n;
  }
}

TEST_F(CloudRunTest, ProbeNamesAMissingBucket) {
  EXPECT_TRUE(backend_->Probe().usable);
  store_->bucket_exists = false;
  ProbeResult p = backend_->Probe();
  EXPECT_FALSE(p.usable);
  EXPECT_NE(p.reason.find("gs://test-bucket does not exist"), std::string::npos) << p.reason;
}

TEST_F(CloudRunTest, SessionStatePersistsAcrossExecutions) {
  CreateSb1();
  Outcome a = Exec("s", "cd /tmp && export E=1 && V=2 && f() { echo f$1; }; echo one");
  EXPECT_EQ(a.last.exit_code, 0);
  EXPECT_EQ(a.result["output"], "one\n");
  EXPECT_EQ(a.cwd, "/tmp");
  Outcome b = Exec("s", "echo $PWD $E $V; f 3; exit 4");
  EXPECT_EQ(b.last.exit_code, 4);
  EXPECT_EQ(b.result["output"], "/tmp 1 2\nf3\n");
  auto head = Engine().ReadHead("sb1", "s");
  ASSERT_TRUE(head);
  EXPECT_FALSE(head->running);
  EXPECT_EQ(head->state_object, layout::RunObject("sb1", "s", b.last.run));
  // The snapshot the second command replaced is deleted (after the answer, off its path).
  size_t runs = 0;
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(10ms)) {
    runs = 0;
    for (const auto& [n, d] : store_->Names()) {
      runs += n.find("/runs/") != std::string::npos ? 1 : 0;
    }
    if (runs == 1) {
      break;
    }
  }
  EXPECT_EQ(runs, 1u);
  // Another session starts fresh.
  Outcome c = Exec("t", "echo [${E-}]");
  EXPECT_EQ(c.result["output"], "[]\n");
}

TEST_F(CloudRunTest, ASecondExecOnABusySessionIsAConflictOnEveryReplica) {
  CreateSb1();
  executor_ = [](FakeExecution& e) {
    e.done = false;  // runs until cancelled
  };
  SessionEngine::StartRequest r;
  r.command = "sleep 100";
  auto first = Engine().Start(sb_, "s", r);
  ASSERT_TRUE(first);
  auto again = Engine().Start(sb_, "s", r);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  // A second daemon on the same bucket sees the same.
  boost::asio::io_context io2;
  SessionEngine replica(opts_, Cloud{store_, jobs_}, io2);
  auto other = replica.Start(sb_, "s", r);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, ErrorCode::kConflict);
  // Kill cancels the execution; the session is usable again.
  auto killed = Engine().Kill(sb_, "s");
  ASSERT_TRUE(killed) << killed.error().message;
  EXPECT_TRUE(*killed);
  Outcome o = WaitFor(sb_, "s", first->run);
  EXPECT_TRUE(o.last.killed);
  EXPECT_EQ(o.last.exit_code, 137);
  executor_ = nullptr;
  EXPECT_EQ(Exec("s", "echo ok").result["output"], "ok\n");
}

TEST_F(CloudRunTest, MissingOrCorruptResultIsAClearErrorAndKeepsTheState) {
  CreateSb1();
  Exec("s", "export KEEP=1");
  const std::string before = Engine().ReadHead("sb1", "s")->state_object;
  executor_ = [](FakeExecution&) {};  // succeeds without writing a result
  Outcome missing = Exec("s", "export LOST=1");
  EXPECT_NE(missing.last.error.find("is missing"), std::string::npos) << missing.last.error;
  EXPECT_EQ(Engine().ReadHead("sb1", "s")->state_object, before);
  executor_ = [this](FakeExecution& e) {
    const std::string out = e.overrides["containerOverrides"][0]["args"][4];
    store_->Insert(layout::SessionsPrefix("sb1") + out.substr(19), "{not json", std::nullopt,
                   "application/json");
  };
  Outcome corrupt = Exec("s", "export LOST=1");
  EXPECT_NE(corrupt.last.error.find("corrupt"), std::string::npos) << corrupt.last.error;
  EXPECT_EQ(Engine().ReadHead("sb1", "s")->state_object, before);
  executor_ = nullptr;
  EXPECT_EQ(Exec("s", "echo ${KEEP-} ${LOST-}").result["output"], "1\n");
}

TEST_F(CloudRunTest, AnExecutionThatFailsOrNeverStartsIsAClearError) {
  CreateSb1();
  executor_ = [](FakeExecution& e) {
    e.succeeded = false;
    e.exit_code = 137;
    e.message = "Task failed: container was OOM killed";
  };
  Outcome oom = Exec("s", "true");
  EXPECT_NE(oom.last.error.find("failed before the command finished"), std::string::npos)
      << oom.last.error;
  EXPECT_NE(oom.last.error.find("exit code 137"), std::string::npos) << oom.last.error;
  EXPECT_NE(oom.last.error.find("OOM"), std::string::npos) << oom.last.error;
  executor_ = [](FakeExecution& e) {
    e.started = false;
    e.done = false;
  };
  Outcome never = Exec("s", "true");
  EXPECT_NE(never.last.error.find("did not start within"), std::string::npos) << never.last.error;
  auto e = jobs_->GetExecution(jobs_->last_execution());
  EXPECT_EQ(e->value("cancelledCount", 0), 1);  // cancelled, not left queued
  EXPECT_FALSE(Engine().ReadHead("sb1", "s")->running);
}

TEST_F(CloudRunTest, ARefusedRequestIsTheCallersErrorNotTheServices) {
  CreateSb1();
  SessionEngine::StartRequest r;
  r.command = "pwd";
  r.exec_dir = "/no/such/dir";
  auto started = Engine().Start(sb_, "s", r);
  ASSERT_TRUE(started);
  Outcome o = WaitFor(sb_, "s", started->run);
  EXPECT_TRUE(o.last.request_error);
  EXPECT_NE(o.last.error.find("is not a directory"), std::string::npos) << o.last.error;
  EXPECT_EQ(Exec("s", "echo fine").result["output"], "fine\n");
}

TEST_F(CloudRunTest, HeadWritesAreConditional) {
  CreateSb1();
  Exec("s", "true");
  auto head = Engine().ReadHead("sb1", "s");
  ASSERT_TRUE(head);
  // A writer holding an old generation loses, loudly.
  ASSERT_TRUE(store_->Insert(layout::HeadObject("sb1", "s"), DumpJson(HeadToJson(*head)),
                             head->generation, "application/json"));
  auto stale =
      store_->Insert(layout::HeadObject("sb1", "s"), "{}", head->generation, "application/json");
  ASSERT_FALSE(stale);
  EXPECT_NE(stale.error().message.find("precondition"), std::string::npos);
}

class WorkspaceFilesTest : public ::testing::Test {
 protected:
  Json Op(const std::string& op, const Json& req, int expect_ok = 1) {
    auto r = files_.Op(op, "sb1", req);
    if (expect_ok) {
      EXPECT_TRUE(r) << op << ": " << r.error().message;
    }
    return r ? *r : Json{{"error", r.error().message}, {"code", ErrorCodeName(r.error().code)}};
  }
  TempDir scratch_;
  std::shared_ptr<MemoryObjectStore> store_ = std::make_shared<MemoryObjectStore>();
  WorkspaceFiles files_{store_, scratch_.path() + "/s", guest::FileConfig{}};
};

TEST_F(WorkspaceFilesTest, AnswersLikeTheGuest) {
  EXPECT_EQ(
      Op("write", {{"file", "/workspace/a/b.txt"}, {"content", "one\ntwo 2\nthree\n"}})["file"],
      "/workspace/a/b.txt");
  EXPECT_EQ(store_->Names().at("sandboxes/sb1/workspace/a/b.txt"), "one\ntwo 2\nthree\n");
  EXPECT_EQ(Op("read", {{"file", "a/b.txt"}, {"start_line", 1}, {"end_line", 2}})["content"],
            "two 2");
  EXPECT_EQ(Op("exists", {{"path", "/workspace/a"}})["type"], "directory");
  EXPECT_EQ(Op("exists", {{"path", "/workspace/a/b.txt"}})["type"], "file");
  EXPECT_EQ(Op("exists", {{"path", "/workspace/zz"}})["exists"], false);
  EXPECT_EQ(Op("search", {{"file", "/workspace/a/b.txt"}, {"regex", "[0-9]"}})["line_numbers"],
            Json::array({1}));
  EXPECT_EQ(
      Op("replace",
         {{"file", "/workspace/a/b.txt"}, {"old_str", "t"}, {"new_str", "T"}})["replaced_count"],
      2);
  EXPECT_EQ(Op("find", {{"path", "/workspace"}, {"glob", "**/*.txt"}})["files"],
            Json::array({"/workspace/a/b.txt"}));
  Json list = Op("list", {{"path", "/workspace/a"}});
  ASSERT_EQ(list["entries"].size(), 1u);
  EXPECT_EQ(list["entries"][0]["name"], "b.txt");
  EXPECT_EQ(list["entries"][0]["size"], 16);
  Op("write", {{"file", "/workspace/a/b.txt"}, {"content", "more\n"}, {"append", true}});
  EXPECT_EQ(store_->Names().at("sandboxes/sb1/workspace/a/b.txt"), "one\nTwo 2\nThree\nmore\n");
  Json not_empty = Op("delete", {{"path", "/workspace/a"}}, 0);
  EXPECT_TRUE(not_empty.contains("error")) << not_empty;
  EXPECT_EQ(Op("delete", {{"path", "/workspace/a"}, {"recursive", true}})["deleted"], true);
  Json gone = Op("read", {{"file", "/workspace/a/b.txt"}}, 0);
  EXPECT_EQ(gone["code"], ErrorCodeName(ErrorCode::kNotFound));
  EXPECT_EQ(gone["error"].get<std::string>().find(scratch_.path()), std::string::npos) << gone;
  EXPECT_NE(gone["error"].get<std::string>().find("/workspace/a/b.txt"), std::string::npos);
  Json outside = Op("read", {{"file", "/etc/hostname"}}, 0);
  EXPECT_EQ(outside["code"], ErrorCodeName(ErrorCode::kInvalidArgument));
  EXPECT_NE(outside["error"].get<std::string>().find("job mode"), std::string::npos);
  Json bad = Op("search", {{"file", "/workspace/x"}, {"regex", "("}}, 0);
  EXPECT_EQ(bad["code"], ErrorCodeName(ErrorCode::kNotFound));
  Json missing_field = Op("read", Json::object(), 0);
  EXPECT_EQ(missing_field["code"], ErrorCodeName(ErrorCode::kValidation));
}

// limits.disk_bytes bounds what passes through the daemon: writes and uploads that would take
// /workspace past it fail like a full disk and store nothing; replacing a file counts its new
// size only; another sandbox is untouched.
TEST_F(WorkspaceFilesTest, WritesAndUploadsPastTheDiskLimitFailLikeAFullDisk) {
  const uint64_t limit = 100;
  const std::string sixty(60, 'x');
  ASSERT_TRUE(files_.Op("write", "sb1", {{"file", "/workspace/a"}, {"content", sixty}}, limit));
  // 60 + 60 > 100: refused, nothing stored.
  auto full = files_.Op("write", "sb1", {{"file", "/workspace/b"}, {"content", sixty}}, limit);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ErrorCode::kTooLarge);
  EXPECT_EQ(full.error().sys_errno, ENOSPC);
  EXPECT_NE(full.error().message.find("No space left on device"), std::string::npos)
      << full.error().message;
  EXPECT_EQ(store_->Names().count("sandboxes/sb1/workspace/b"), 0u);
  // An append that would pass it is refused too; the file keeps its bytes.
  auto append =
      files_.Op("write", "sb1",
                {{"file", "/workspace/a"}, {"content", sixty}, {"append", true}}, limit);
  ASSERT_FALSE(append);
  EXPECT_EQ(store_->Names().at("sandboxes/sb1/workspace/a"), sixty);
  // Overwriting a file counts its new size, not both.
  EXPECT_TRUE(
      files_.Op("write", "sb1",
                {{"file", "/workspace/a"}, {"content", std::string(90, 'y')}}, limit));
  // Uploads likewise.
  const std::string local = scratch_.path() + "/upload";
  { std::ofstream(local) << std::string(20, 'z'); }
  auto up = files_.Store("sb1", "/workspace/u", local, 20, limit);
  ASSERT_FALSE(up);
  EXPECT_EQ(up.error().code, ErrorCode::kTooLarge);
  EXPECT_EQ(store_->Names().count("sandboxes/sb1/workspace/u"), 0u);
  const std::string small = scratch_.path() + "/small";
  { std::ofstream(small) << std::string(10, 'z'); }
  EXPECT_TRUE(files_.Store("sb1", "/workspace/u", small, 10, limit));  // 90 + 10 fits
  // Another sandbox has its own budget; no limit, no check.
  EXPECT_TRUE(Op("write", {{"file", "/workspace/c"}, {"content", sixty}}).contains("file"));
  EXPECT_TRUE(files_.Store("sb2", "/workspace/u", local, 20, limit));
}

}  // namespace
}  // namespace agentbox::cloudrun
