// Moving a live sandbox between backends (docs/migration.md), in-process over two ProcessBackend
// test doubles ("alpha" and "beta": real agentbox-guest processes, no isolation): what moves and
// what is listed as not moved, bad requests, failures injected mid-move (the sandbox stays where
// it was and nothing is left on the target), calls held during a move or refused with 409 and
// Retry-After, drains, and the journal a crash leaves. The same over jail and docker, with real
// kills, is tests/migrate.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/fs_util.h"
#include "fakes/daemon_fixture.h"

namespace agentbox::daemon {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class MigrateTest : public fakes::DaemonFixture {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-migrate-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.migrations_dir = dir_ + "/migrations";
    options_.spool_dir = dir_;
    options_.default_backend = "alpha";
    options_.pinnable_backends = {"alpha", "beta"};
    options_.migration_hook = [this](const std::string& step) -> Result<void> {
      std::function<Result<void>(const std::string&)> h;
      {
        std::lock_guard<std::mutex> lock(hook_mu_);
        h = hook_;
      }
      return h ? h(step) : Result<void>{};
    };
    backend_ =
        std::make_unique<fakes::ProcessBackend>(AGENTBOX_GUEST_BIN, dir_ + "/state", "alpha");
    beta_ = std::make_unique<fakes::ProcessBackend>(AGENTBOX_GUEST_BIN, dir_ + "/beta", "beta");
    StartBoth();
  }
  void TearDown() override {
    fakes::DaemonFixture::TearDown();
    beta_.reset();
  }
  void StartBoth() {
    api_ = std::make_unique<daemon::DaemonApi>(
        io_,
        std::map<std::string, SandboxBackend*>{{"alpha", backend_.get()}, {"beta", beta_.get()}},
        daemon::ApiKeys(fakes::kFixtureApiKeys), options_);
    api_->Start();
    http::ServerOptions so;
    so.max_body_bytes = 1 << 20;
    server_ = std::make_unique<http::Server>(io_, *api_, so);
    unix_sock_ = dir_ + "/agentboxd.sock";
    ::unlink(unix_sock_.c_str());
    ASSERT_TRUE(server_->Listen("unix:" + unix_sock_));
    auto tcp = server_->Listen("tcp:127.0.0.1:0");
    ASSERT_TRUE(tcp);
    tcp_base_ = "http://" + tcp->substr(4);
    if (!thread_.joinable()) {
      thread_ = std::thread([this] { io_.run(); });
    }
  }
  // As agentboxd restarting: the old daemon stops serving; a new one starts over both backends.
  void Restart() {
    server_->Stop();
    api_->BeginDrain();
    retired_servers_.push_back(std::move(server_));
    retired_apis_.push_back(std::move(api_));
    StartBoth();
  }
  void SetHook(std::function<Result<void>(const std::string&)> h) {
    std::lock_guard<std::mutex> lock(hook_mu_);
    hook_ = std::move(h);
  }
  std::string BetaWorkspace(const std::string& id) const {
    return dir_ + "/beta/" + id + "/workspace";
  }
  fakes::HttpReply Guest(const std::string& id, const std::string& op, const Json& body,
                         const std::string& key = "") {
    return Call("POST", "/v1/sandboxes/" + id + "/api/v1/" + op, DumpJson(body), key,
                {"Content-Type: application/json"});
  }
  // shell/run in `session`; its stdout.
  std::string Run(const std::string& id, const std::string& session, const std::string& cmd) {
    auto r = Guest(id, "shell/run", {{"session_id", session}, {"command", cmd}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json.is_object() ? r.json["data"].value("stdout", "") : "";
  }
  fakes::HttpReply Migrate(const std::string& id, const std::string& backend,
                           const std::string& key = "") {
    return Call("POST", "/v1/sandboxes/" + id + "/migrate", DumpJson(Json{{"backend", backend}}),
                key, {"Content-Type: application/json"});
  }
  double Metric(const std::string& name, const Labels& labels) {
    return api_->metrics().Value(name, labels);
  }
  // A sandbox of alice's with a workspace of several kinds of entries and three sessions.
  std::string Populated() {
    const std::string id =
        CreateAs("key-alice", R"({"labels":{"team":"red"},"ttl_s":900,"env":{"E0":"zero"}})");
    const std::string ws = Workspace(id);
    EXPECT_TRUE(WriteFileAtomic(ws + "/a.txt", "alpha text\n", 0644));
    std::string binary;
    for (int i = 0; i < 70000; ++i) {
      binary.push_back(static_cast<char>((i * 7919) & 0xff));
    }
    EXPECT_TRUE(EnsureDir(ws + "/sub", 0755));
    EXPECT_TRUE(EnsureDir(ws + "/sub/deeper", 0755));
    EXPECT_TRUE(WriteFileAtomic(ws + "/sub/deeper/blob.bin", binary, 0600));
    EXPECT_TRUE(WriteFileAtomic(ws + "/run.sh", "#!/bin/sh\necho ran\n", 0755));
    EXPECT_TRUE(EnsureDir(ws + "/empty", 0700));
    EXPECT_TRUE(WriteFileAtomic(ws + "/.hidden", "", 0640));
    EXPECT_EQ(::symlink("a.txt", (ws + "/link").c_str()), 0);
    for (const std::string s : {"one", "two", "three"}) {
      Run(id, s,
          "cd sub && export V_" + s + "=" + s + " && plain_" + s + "=p" + s + " && f_" + s +
              "() { echo fn-" + s + "; } && alias al_" + s + "='echo alias-" + s + "'");
    }
    return id;
  }
  void ExpectPopulated(const std::string& id, const std::string& ws) {
    EXPECT_EQ(ReadAll(ws + "/a.txt"), "alpha text\n");
    const std::string blob = ReadAll(ws + "/sub/deeper/blob.bin");
    ASSERT_EQ(blob.size(), 70000u);
    EXPECT_EQ(static_cast<unsigned char>(blob[12345]), (12345 * 7919) & 0xff);
    struct stat st {};
    ASSERT_EQ(::stat((ws + "/run.sh").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    ASSERT_EQ(::stat((ws + "/sub/deeper/blob.bin").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    ASSERT_EQ(::stat((ws + "/empty").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    EXPECT_TRUE(PathExists(ws + "/.hidden"));
    char target[64] = {};
    ASSERT_GT(::readlink((ws + "/link").c_str(), target, sizeof(target) - 1), 0);
    EXPECT_STREQ(target, "a.txt");
    for (const std::string s : {"one", "two", "three"}) {
      const std::string out = Run(id, s,
                                  "shopt -s expand_aliases; basename \"$PWD\"; echo $V_" + s +
                                      " $plain_" + s + "; f_" + s + "; alias al_" + s);
      EXPECT_EQ(out, "sub\n" + s + " p" + s + "\nfn-" + s + "\nalias al_" + s + "='echo alias-" +
                         s + "'\n")
          << "session " << s;
    }
  }

  std::unique_ptr<fakes::ProcessBackend> beta_;
  std::mutex hook_mu_;
  std::function<Result<void>(const std::string&)> hook_;
};

TEST_F(MigrateTest, MovesWorkspaceAndSessionsAndListsWhatStays) {
  const std::string id = Populated();
  const Json before = Call("GET", "/v1/sandboxes/" + id, "", "key-alice").json["data"];
  auto bg =
      Guest(id, "process/start", {{"session_id", "one"}, {"command", "sleep 300"}}, "key-alice");
  ASSERT_EQ(bg.status, 200) << bg.body;
  ASSERT_TRUE(WriteFileAtomic(Workspace(id) + "/../tmpfile", "x", 0644));  // outside: not copied

  auto r = Migrate(id, "beta", "key-alice");
  ASSERT_EQ(r.status, 200) << r.body;
  const Json d = r.json["data"];
  EXPECT_EQ(d["from"], "alpha");
  EXPECT_EQ(d["to"], "beta");
  EXPECT_EQ(d["sandbox"]["backend"], "beta");
  EXPECT_EQ(d["sandbox"]["reason"], "MIGRATED");
  EXPECT_EQ(d["selection"]["reason"], "TARGETING_MATCH");
  EXPECT_EQ(d["moved"]["sessions"].size(), 3u);
  EXPECT_GE(d["moved"]["workspace"]["bytes"].get<int>(), 70000);
  EXPECT_TRUE(d["source_destroyed"].get<bool>());
  bool listed = false;
  for (const auto& n : d["not_moved"]) {
    listed |= n["what"] == "process" && n["command"] == "sleep 300";
  }
  EXPECT_TRUE(listed) << d["not_moved"].dump();

  // Same id, owner, labels, expiry; it says where it came from.
  const Json after = Call("GET", "/v1/sandboxes/" + id, "", "key-alice").json["data"];
  EXPECT_EQ(after["backend"], "beta");
  EXPECT_EQ(after["labels"], before["labels"]);
  EXPECT_NEAR(after["expires_at"].get<double>(), before["expires_at"].get<double>(), 0.01);
  EXPECT_NEAR(after["created_at"].get<double>(), before["created_at"].get<double>(), 0.01);
  EXPECT_EQ(after["migrated_from"]["backend"], "alpha");
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id, "", "key-bob").status, 404);

  ExpectPopulated(id, BetaWorkspace(id));
  EXPECT_FALSE(PathExists(BetaWorkspace(id) + "/../tmpfile"));
  EXPECT_FALSE(backend_->Get(id).has_value()) << "the old sandbox is destroyed";
  EXPECT_EQ(
      Metric("agentbox_migrations_total", {{"from", "alpha"}, {"to", "beta"}, {"outcome", "ok"}}),
      1);
  // And back again.
  auto back = Migrate(id, "alpha", "key-alice");
  ASSERT_EQ(back.status, 200) << back.body;
  ExpectPopulated(id, Workspace(id));
  EXPECT_FALSE(beta_->Get(id).has_value());
  EXPECT_EQ(
      Call("GET", "/v1/sandboxes/" + id, "", "key-alice").json["data"]["migrated_from"]["backend"],
      "beta");
}

TEST_F(MigrateTest, BadRequests) {
  const std::string id = CreateAs("key-alice");
  EXPECT_EQ(Migrate(id, "nowhere", "key-alice").status, 400);
  EXPECT_EQ(Migrate("sb-missing", "beta", "key-alice").status, 404);
  EXPECT_EQ(Migrate(id, "beta", "key-bob").status, 404) << "another key's sandbox is not there";
  EXPECT_EQ(Migrate(id, "alpha", "key-alice").status, 409) << "already there";
  EXPECT_EQ(Call("POST", "/v1/sandboxes/" + id + "/migrate", "{}", "key-alice").status, 400);
  EXPECT_EQ(
      Call("POST", "/v1/sandboxes/" + id + "/migrate", R"({"backend":"beta","x":1})", "key-alice")
          .status,
      422);
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id + "/migrate", "", "key-alice").status, 405);
  EXPECT_EQ(
      Call("POST", "/v1/sandboxes", R"({"labels":{"agentbox.migrated_from":"x"}})", "key-alice")
          .status,
      422)
      << "a reserved label, as agentbox.idempotency_key";
  EXPECT_EQ(Call("POST", "/v1/admin/drain", R"({"backend":"alpha"})", "key-alice").status, 403);
  EXPECT_EQ(Call("POST", "/v1/admin/drain", R"({"backend":"nowhere"})").status, 400);
  EXPECT_EQ(Call("POST", "/v1/admin/drain", R"({"backend":"alpha","to":"alpha"})").status, 400);
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id, "", "key-alice").json["data"]["backend"], "alpha");
  EXPECT_EQ(Migrate(id, "beta", "k1").status, 404) << "k1 owns nothing here";
}

// A failure at any step leaves the sandbox where it was, as it was, and nothing on the target.
TEST_F(MigrateTest, FailureMidMoveLeavesTheSandboxUntouched) {
  const std::string id = Populated();
  for (const std::string step : {"create", "created", "copied", "restored"}) {
    SCOPED_TRACE(step);
    if (step == "create") {
      beta_->FailNextCreates(1);
      SetHook(nullptr);
    } else {
      SetHook([step](const std::string& at) -> Result<void> {
        if (at == step) {
          return Fail(ErrorCode::kUnavailable, "injected failure at " + at);
        }
        return {};
      });
    }
    auto r = Migrate(id, "beta");
    EXPECT_GE(r.status, 500) << r.body;
    EXPECT_NE(r.body.find("stays on alpha"), std::string::npos) << r.body;
    EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id).json["data"]["backend"], "alpha");
    auto left = beta_->List();
    ASSERT_TRUE(left);
    EXPECT_TRUE(left->empty()) << "a leftover on the target";
    EXPECT_FALSE(PathExists(dir_ + "/migrations/" + id + ".json"));
    ExpectPopulated(id, Workspace(id));
  }
  EXPECT_EQ(Metric("agentbox_migrations_total",
                   {{"from", "alpha"}, {"to", "beta"}, {"outcome", "error"}}),
            4);
  SetHook(nullptr);
  ASSERT_EQ(Migrate(id, "beta").status, 200);
}

// Calls that arrive during a move wait for it and then reach the sandbox where it is now.
TEST_F(MigrateTest, CallsDuringTheMoveWaitForIt) {
  const std::string id = CreateAs("key-alice");
  std::atomic<bool> in_move{false};
  SetHook([&](const std::string& at) -> Result<void> {
    if (at == "copied") {
      in_move = true;
      std::this_thread::sleep_for(1500ms);
    }
    return {};
  });
  std::thread mover([&] { EXPECT_EQ(Migrate(id, "beta").status, 200); });
  while (!in_move) {
    std::this_thread::sleep_for(5ms);
  }
  const auto start = Clock::now();
  auto r = Guest(id, "shell/run", {{"command", "echo during > during.txt; echo ok"}}, "key-alice");
  const auto waited = Clock::now() - start;
  mover.join();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_GE(waited, 500ms) << "the call was not held";
  EXPECT_EQ(ReadAll(BetaWorkspace(id) + "/during.txt"), "during\n") << "it ran on the new backend";
}

class MigrateShortHoldTest : public MigrateTest {
 protected:
  void SetUp() override {
    options_.migration_hold_s = 0.3;
    MigrateTest::SetUp();
  }
};

TEST_F(MigrateShortHoldTest, CallsOutlastedByTheMoveGet409WithRetryAfter) {
  const std::string id = CreateAs("key-alice");
  std::atomic<bool> in_move{false};
  SetHook([&](const std::string& at) -> Result<void> {
    if (at == "copied") {
      in_move = true;
      std::this_thread::sleep_for(1500ms);
    }
    return {};
  });
  std::thread mover([&] { EXPECT_EQ(Migrate(id, "beta").status, 200); });
  while (!in_move) {
    std::this_thread::sleep_for(5ms);
  }
  auto r = Guest(id, "shell/run", {{"command", "echo hi"}}, "key-alice");
  auto again = Migrate(id, "alpha");
  mover.join();
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.headers.find("Retry-After: 5"), std::string::npos) << r.headers;
  EXPECT_EQ(again.status, 409) << "a second move while one runs";
  EXPECT_EQ(Run(id, "default", "echo after"), "after\n");
}

TEST_F(MigrateTest, DrainMovesEverySandboxOffABackend) {
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(CreateAs(i % 2 ? "key-alice" : "key-bob"));
    Run(ids.back(), "default", "echo " + std::to_string(i) + " > n.txt");
  }
  auto r = Call("POST", "/v1/admin/drain", R"({"backend":"alpha","to":"beta","concurrency":2})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/x-ndjson");
  std::vector<Json> lines;
  std::stringstream ss(r.body);
  for (std::string line; std::getline(ss, line);) {
    lines.push_back(Json::parse(line));
  }
  ASSERT_EQ(lines.size(), 6u) << r.body;
  EXPECT_EQ(lines.front()["event"], "start");
  EXPECT_EQ(lines.front()["sandboxes"], 4);
  EXPECT_EQ(lines.back()["event"], "done");
  EXPECT_EQ(lines.back()["moved"], 4);
  EXPECT_EQ(lines.back()["failed"], 0);
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_EQ(lines[i]["event"], "result");
    EXPECT_TRUE(lines[i]["ok"].get<bool>()) << lines[i].dump();
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(ReadAll(BetaWorkspace(ids[i]) + "/n.txt"), std::to_string(i) + "\n");
  }
  EXPECT_TRUE(backend_->List()->empty());
  EXPECT_EQ(beta_->List()->size(), 4u);
}

class MigrateSelectionTest : public MigrateTest {
 protected:
  void SetUp() override {
    selector::Settings s;
    s.requested_backend = "alpha";
    s.requested_source = "test";
    s.fallback_chain = {"alpha", "beta"};
    s.known_backends = {"alpha", "beta"};
    s.hash = "0000000000000000";
    options_.selection = s;
    MigrateTest::SetUp();
  }
};

TEST_F(MigrateSelectionTest, DrainWithoutATargetLetsTheSelectorChooseAnotherBackend) {
  const std::string id = CreateAs("key-alice");
  auto r = Call("POST", "/v1/admin/drain", R"({"backend":"alpha"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("moved":1)"), std::string::npos) << r.body;
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id).json["data"]["backend"], "beta");
}

// What a crash mid-move leaves, and what the next start makes of it: before the switch the
// sandbox stays on its old backend; after it, on the new one; never on both.
TEST_F(MigrateTest, TheJournalOfACutMoveIsResolvedAtStart) {
  for (const std::string phase : {"copying", "switched"}) {
    SCOPED_TRACE(phase);
    const std::string id = CreateAs("key-alice");
    auto info = backend_->Get(id);
    ASSERT_TRUE(info);
    ASSERT_TRUE(beta_->Create(id, info->spec));  // the target, as a cut move left it
    ASSERT_TRUE(EnsureDir(dir_ + "/migrations", 0700));
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/migrations/" + id + ".json",
                                DumpJson(Json{{"version", 1},
                                              {"id", id},
                                              {"from", "alpha"},
                                              {"to", "beta"},
                                              {"phase", phase},
                                              {"started_at", 1}}),
                                0600));
    Restart();
    const std::string kept = phase == "copying" ? "alpha" : "beta";
    EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id).json["data"]["backend"], kept);
    EXPECT_EQ(backend_->Get(id).has_value(), kept == "alpha");
    EXPECT_EQ(beta_->Get(id).has_value(), kept == "beta");
    EXPECT_FALSE(PathExists(dir_ + "/migrations/" + id + ".json"));
    EXPECT_EQ(Run(id, "default", "echo up"), "up\n");
    ASSERT_EQ(Call("DELETE", "/v1/sandboxes/" + id).status, 200);
  }
}

}  // namespace
}  // namespace agentbox::daemon
