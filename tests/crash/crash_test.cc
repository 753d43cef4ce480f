// Crash consistency (issue 10, docs/reliability.md): agentboxd killed with SIGKILL at named points
// of every multi-step operation (create, destroy, warm-pool refill and claim) on jail and docker,
// and at a random moment of 12 concurrent creates. After each restart every sandbox is complete
// (listed, and a command runs in it) or gone with nothing left on the host (process, cgroup, mount,
// loop device, id slot, directory, container); a create retried with its Idempotency-Key returns
// the sandbox the first attempt made, if any, and never a second one.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <random>

#include "crash_harness.h"

namespace crash {
namespace {

enum class Op { kCreate, kDestroy, kRefill, kClaim };
enum class Expect { kGone, kKept };

struct Case {
  std::string backend;
  Op op;
  std::string point;
  Expect expect;
  std::string repaired;  // agentbox_recovered_total{what=...} the restart must count, if any
};

std::string OpName(Op op);

// gtest prints a parameter in test listings: the point, not the bytes of the struct.
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.backend << " " << OpName(c.op) << " at " << c.point;
}

std::string OpName(Op op) {
  switch (op) {
    case Op::kCreate:
      return "create";
    case Op::kDestroy:
      return "destroy";
    case Op::kRefill:
      return "refill";
    case Op::kClaim:
      return "claim";
  }
  return "";
}

// Whether `backend` can run sandboxes here (root, a Docker engine with agentbox/base); the reason
// when not. Asked once per backend.
std::string WhyUnusable(const std::string& backend) {
  static std::mutex mu;
  static std::map<std::string, std::string> known;
  std::lock_guard lock(mu);
  if (auto it = known.find(backend); it != known.end()) {
    return it->second;
  }
  std::string why;
  if (geteuid() != 0) {
    why = "needs root (id ranges, cgroups, loop devices)";
  } else {
    Daemon d(AGENTBOXD_CRASHTEST_BIN, backend);
    if (!d.Start("", 0)) {
      why = "agentboxd-crashtest did not start: " + d.LogText();
    } else {
      const Reply r = d.Call("GET", "/readyz");
      const Json j = r.json();
      if (r.status != 200 || !j.is_object() || j["data"]["backend"] != backend) {
        why = "backend " + backend + " is not usable here: " + r.body;
      }
    }
  }
  known[backend] = why;
  return why;
}

std::string Series(const std::string& backend, const std::string& what) {
  return "agentbox_recovered_total{backend=\"" + backend + "\",what=\"" + what + "\"}";
}

// The invariant over `ids` (and whatever the daemon lists): each is listed and works, or has
// nothing left on the host.
void ExpectConsistent(const Daemon& d, const std::string& backend, std::set<std::string> ids) {
  const std::set<std::string> listed = d.ListedIds();
  ids.insert(listed.begin(), listed.end());
  for (const auto& more : KnownIds(d, backend)) {
    ids.insert(more);
  }
  for (const auto& id : ids) {
    if (listed.count(id) != 0) {
      EXPECT_TRUE(d.Works(id)) << "sandbox " << id << " is listed but does not work";
      continue;
    }
    const auto left = Leftovers(d, backend, id);
    EXPECT_TRUE(left.empty()) << "sandbox " << id
                              << " is not listed but left: " << testing::PrintToString(left);
  }
}

// Destroys every sandbox, then nothing of any of them (or of `ids`) may be left.
void DestroyAllAndExpectNothingLeft(const Daemon& d, const std::string& backend,
                                    std::set<std::string> ids) {
  for (const auto& id : d.ListedIds()) {
    ids.insert(id);
    const Reply r = d.Call("DELETE", "/v1/sandboxes/" + id);
    EXPECT_EQ(r.status, 200) << r.body;
  }
  EXPECT_TRUE(d.ListedIds().empty());
  for (const auto& more : KnownIds(d, backend)) {
    ids.insert(more);
  }
  for (const auto& id : ids) {
    const auto left = Leftovers(d, backend, id);
    EXPECT_TRUE(left.empty()) << "destroyed sandbox " << id << " left "
                              << testing::PrintToString(left);
  }
}

std::string NewKey() {
  static std::mt19937_64 rng(std::random_device{}());
  return "crash-" + std::to_string(rng());
}

class CrashPointTest : public ::testing::TestWithParam<Case> {};

TEST_P(CrashPointTest, RestartLeavesEverySandboxCompleteOrGone) {
  const Case& c = GetParam();
  if (auto why = WhyUnusable(c.backend); !why.empty()) {
    GTEST_SKIP() << "SKIPPED: " << why;
  }
  Daemon d(AGENTBOXD_CRASHTEST_BIN, c.backend);
  const std::string key = NewKey();
  const std::string body = R"({"ttl_s":900,"labels":{"suite":"crash"}})";
  const std::vector<std::string> with_key = {"Idempotency-Key: " + key};
  std::string destroyed;
  const int pool = c.op == Op::kRefill || c.op == Op::kClaim ? 1 : 0;

  // 1. The daemon dies at the crash point.
  ASSERT_TRUE(d.Start(c.point, pool, c.op != Op::kRefill)) << d.LogText();
  if (c.op == Op::kCreate) {
    const Reply r = d.Call("POST", "/v1/sandboxes", body, with_key);
    EXPECT_EQ(r.status, 0) << "the create was answered before the crash point: " << r.body;
  } else if (c.op == Op::kDestroy) {
    const Reply made = d.Call("POST", "/v1/sandboxes", body);
    ASSERT_EQ(made.status, 201) << made.body;
    destroyed = made.data()["id"];
    const Reply r = d.Call("DELETE", "/v1/sandboxes/" + destroyed);
    EXPECT_EQ(r.status, 0) << r.body;
  } else if (c.op == Op::kClaim) {
    const std::string ready = "agentbox_pool_ready{backend=\"" + c.backend + "\"}";
    for (auto deadline = SteadyClock::now() + 60s;
         SteadyClock::now() < deadline && d.Metric(ready) < 1; std::this_thread::sleep_for(50ms)) {
    }
    ASSERT_GE(d.Metric(ready), 1) << "the warm pool did not fill";
    const Reply r = d.Call("POST", "/v1/sandboxes", body, with_key);
    EXPECT_EQ(r.status, 0) << r.body;
  }
  ASSERT_TRUE(d.WaitKilled()) << d.LogText();
  ASSERT_NE(d.LogText().find("crash point " + c.point), std::string::npos) << d.LogText();
  const std::set<std::string> at_crash = KnownIds(d, c.backend);

  // 2. A new daemon (no pool: it would add sandboxes of its own) repairs what it finds.
  ASSERT_TRUE(d.Start("", 0)) << d.LogText();
  ExpectConsistent(d, c.backend, at_crash);
  // A warm pool's own sandboxes are no client's: the new daemon, whose pool is off, destroys
  // them (pool_leftover); the claim's case lists the client's only.
  const std::set<std::string> listed = c.op == Op::kRefill ? d.ListedIds() : d.ClientIds();
  if (c.expect == Expect::kGone) {
    EXPECT_TRUE(listed.empty()) << testing::PrintToString(listed);
  } else {
    EXPECT_EQ(listed.size(), 1u) << testing::PrintToString(listed);
    if (c.op == Op::kDestroy) {
      EXPECT_EQ(listed.count(destroyed), 1u);
    }
  }
  if (!c.repaired.empty()) {
    EXPECT_GE(d.Metric(Series(c.backend, c.repaired)), 1)
        << d.Call("GET", "/metrics").body << d.LogText();
  }

  // 3. The client's retry of the create gets the sandbox the first attempt made, or a new one.
  if (c.op == Op::kCreate || c.op == Op::kClaim) {
    const Reply again = d.Call("POST", "/v1/sandboxes", body, with_key);
    ASSERT_EQ(again.status, 201) << again.body;
    const std::string id = again.data()["id"];
    if (c.expect == Expect::kKept) {
      EXPECT_EQ(listed.count(id), 1u) << "the retry made a second sandbox " << id;
      EXPECT_NE(again.headers.find("Idempotent-Replayed: true"), std::string::npos)
          << again.headers;
    }
    const Reply replay = d.Call("POST", "/v1/sandboxes", body, with_key);
    EXPECT_EQ(replay.status, 201) << replay.body;
    EXPECT_EQ(replay.data()["id"], id);
    const Reply other = d.Call("POST", "/v1/sandboxes", R"({"ttl_s":901})", with_key);
    EXPECT_EQ(other.status, 422) << other.body;
    EXPECT_EQ(d.ClientIds(), std::set<std::string>{id});
    EXPECT_TRUE(d.Works(id));
  }
  DestroyAllAndExpectNothingLeft(d, c.backend, at_crash);
}

std::vector<Case> Cases() {
  const Expect gone = Expect::kGone, kept = Expect::kKept;
  std::vector<Case> out = {
      // jail: create
      {"jail", Op::kCreate, "daemon.create.key_recorded", gone, ""},
      {"jail", Op::kCreate, "jail.create.dir", gone, "create_rolled_back"},
      {"jail", Op::kCreate, "jail.create.slot", gone, "id_slot"},
      {"jail", Op::kCreate, "jail.create.disk", gone, "mount"},
      {"jail", Op::kCreate, "jail.create.image", gone, "create_rolled_back"},
      {"jail", Op::kCreate, "jail.create.config", gone, "create_rolled_back"},
      {"jail", Op::kCreate, "jail.create.launched", gone, "process"},
      {"jail", Op::kCreate, "jail.create.recorded", kept, ""},
      {"jail", Op::kCreate, "daemon.create.registered", kept, ""},
      // jail: destroy
      {"jail", Op::kDestroy, "daemon.destroy.unregistered", kept, ""},
      {"jail", Op::kDestroy, "jail.destroy.journaled", gone, "destroy_finished"},
      {"jail", Op::kDestroy, "jail.destroy.killed", gone, "destroy_finished"},
      {"jail", Op::kDestroy, "jail.destroy.unmounted", gone, "destroy_finished"},
      {"jail", Op::kDestroy, "jail.destroy.removed", gone, "id_slot"},
      // jail: warm pool
      {"jail", Op::kRefill, "jail.create.launched", gone, "create_rolled_back"},
      {"jail", Op::kRefill, "pool.refill.created", gone, "pool_leftover"},
      {"jail", Op::kClaim, "jail.claim.recorded", kept, ""},
      {"jail", Op::kClaim, "pool.claim.claimed", kept, ""},
      // docker: create
      {"docker", Op::kCreate, "docker.create.dir", gone, "create_rolled_back"},
      {"docker", Op::kCreate, "docker.create.disk", gone, "create_rolled_back"},
      {"docker", Op::kCreate, "docker.create.meta", gone, "create_rolled_back"},
      {"docker", Op::kCreate, "docker.create.container", gone, "container"},
      {"docker", Op::kCreate, "docker.create.started", kept, ""},
      {"docker", Op::kCreate, "docker.create.ready", kept, ""},
      {"docker", Op::kCreate, "daemon.create.registered", kept, ""},
      // docker: destroy
      {"docker", Op::kDestroy, "docker.destroy.journaled", gone, "destroy_finished"},
      {"docker", Op::kDestroy, "docker.destroy.container_removed", gone, "destroy_finished"},
      // docker: warm pool
      {"docker", Op::kRefill, "docker.create.container", gone, "container"},
      {"docker", Op::kRefill, "pool.refill.created", gone, "pool_leftover"},
      {"docker", Op::kClaim, "docker.claim.recorded", kept, ""},
  };
  return out;
}

std::string CaseName(const testing::TestParamInfo<Case>& info) {
  std::string name = info.param.backend + "_" + OpName(info.param.op) + "_" + info.param.point;
  for (char& ch : name) {
    ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Points, CrashPointTest, testing::ValuesIn(Cases()), CaseName);

// The issue's report, as a test: SIGKILL while 12 creates are in flight, at a moment that varies
// (`GetParam()` ms after they were sent). Every client then retries with its key.
class ConcurrentCreatesKilled : public ::testing::TestWithParam<std::tuple<const char*, int>> {};

TEST_P(ConcurrentCreatesKilled, EachRetryGetsOneWorkingSandboxAndNothingLeaks) {
  const std::string backend = std::get<0>(GetParam());
  const int delay_ms = std::get<1>(GetParam());
  if (auto why = WhyUnusable(backend); !why.empty()) {
    GTEST_SKIP() << "SKIPPED: " << why;
  }
  constexpr int kClients = 12;
  Daemon d(AGENTBOXD_CRASHTEST_BIN, backend);
  ASSERT_TRUE(d.Start("", 0)) << d.LogText();
  std::vector<std::string> keys;
  for (int i = 0; i < kClients; ++i) {
    keys.push_back(NewKey());
  }
  const std::string body = R"({"ttl_s":900})";
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      if (d.Call("POST", "/v1/sandboxes", body, {"Idempotency-Key: " + keys[i]}).status == 201) {
        ++answered;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  d.Kill9();
  for (auto& t : clients) {
    t.join();
  }
  ASSERT_TRUE(d.WaitKilled());
  const std::set<std::string> at_crash = KnownIds(d, backend);

  ASSERT_TRUE(d.Start("", 0)) << d.LogText();
  const size_t survived = d.ListedIds().size();
  ExpectConsistent(d, backend, at_crash);
  std::set<std::string> ids;
  for (const auto& key : keys) {
    const Reply r = d.Call("POST", "/v1/sandboxes", body, {"Idempotency-Key: " + key});
    ASSERT_EQ(r.status, 201) << r.body;
    ids.insert(r.data()["id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kClients));
  EXPECT_EQ(d.ListedIds(), ids) << "a sandbox no client holds survived";
  for (const auto& id : ids) {
    EXPECT_TRUE(d.Works(id)) << id;
  }
  const double rolled_back = d.Metric(Series(backend, "create_rolled_back"));
  std::cout << "[ figures ] backend=" << backend << " kill_after_ms=" << delay_ms
            << " answered_before_kill=" << answered.load() << " in_flight_dirs=" << at_crash.size()
            << " complete_after_restart=" << survived << " rolled_back=" << rolled_back
            << " retried=" << kClients << " distinct=" << ids.size() << "\n";
  DestroyAllAndExpectNothingLeft(d, backend, at_crash);
}

std::string TimingName(const testing::TestParamInfo<std::tuple<const char*, int>>& p) {
  return std::string(std::get<0>(p.param)) + "_" + std::to_string(std::get<1>(p.param)) + "ms";
}

// Moments chosen so that some creates have finished and others are in flight: a jail starts in
// tens of milliseconds, a container in hundreds (4 creates run at once, the rest queue).
INSTANTIATE_TEST_SUITE_P(Timing, ConcurrentCreatesKilled,
                         testing::Values(std::tuple{"jail", 40}, std::tuple{"jail", 120},
                                         std::tuple{"jail", 250}, std::tuple{"docker", 150},
                                         std::tuple{"docker", 600}, std::tuple{"docker", 1500}),
                         TimingName);

// The CLI's own retry: its create's connection is lost when the daemon dies (after the sandbox was
// recorded, before the answer); a new daemon comes up while the CLI waits to retry; the CLI's
// retry, with the same key, prints the sandbox the first attempt made, and there is no other.
TEST(CliAcrossACrash, CreateIsRetriedWithItsKeyAndGetsTheFirstSandbox) {
  if (auto why = WhyUnusable("jail"); !why.empty()) {
    GTEST_SKIP() << "SKIPPED: " << why;
  }
  Daemon d(AGENTBOXD_CRASHTEST_BIN, "jail");
  ASSERT_TRUE(d.Start("jail.create.recorded", 0)) << d.LogText();
  const std::string out = d.dir() + "/cli.out", err = d.dir() + "/cli.err";
  const pid_t cli = fork();
  if (cli == 0) {
    FILE* o = freopen(out.c_str(), "w", stdout);
    FILE* e = freopen(err.c_str(), "w", stderr);
    (void)o;
    (void)e;
    unsetenv("AGENTBOX_URL");
    execl(AGENTBOX_CLI_BIN, AGENTBOX_CLI_BIN, "--socket", d.socket().c_str(), "create", "--ttl",
          "600", nullptr);
    _exit(127);
  }
  ASSERT_TRUE(d.WaitKilled()) << d.LogText();
  ASSERT_TRUE(d.Start("", 0)) << d.LogText();
  int status = 0;
  ASSERT_EQ(waitpid(cli, &status, 0), cli);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(err);
  std::string id = ReadFile(out);
  while (!id.empty() && id.back() == '\n') {
    id.pop_back();
  }
  EXPECT_NE(ReadFile(err).find("sending the create again"), std::string::npos) << ReadFile(err);
  EXPECT_EQ(d.ListedIds(), std::set<std::string>{id});
  EXPECT_TRUE(d.Works(id));
  DestroyAllAndExpectNothingLeft(d, "jail", {id});
}

}  // namespace
}  // namespace crash

int main(int argc, char** argv) {
  curl_global_init(CURL_GLOBAL_ALL);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
