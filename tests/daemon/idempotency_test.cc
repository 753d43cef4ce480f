// Idempotency-Key on POST /v1/sandboxes (docs/reliability.md): the store on its own (durable
// across instances, pending keys resolved after a crash, expiry) and the daemon in front of the
// ProcessBackend test double (replay, 422, per caller, concurrent duplicates, failures, 409).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <set>
#include <thread>

#include "daemon/idempotency.h"
#include "fakes/daemon_fixture.h"

namespace agentbox {
namespace {

using daemon::IdempotencyStore;
using Outcome = IdempotencyStore::Outcome;

class IdempotencyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-idem-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    int rc = system(("rm -rf '" + dir_ + "'").c_str());
    (void)rc;
  }
  static void NoWaiter(const std::string&, int, const std::string&) {}
  std::string dir_;
};

TEST_F(IdempotencyStoreTest, KeysSurviveANewStoreAndAreScopedToTheCaller) {
  std::string digest;
  {
    IdempotencyStore s(dir_, 3600);
    auto b = s.Begin("alice", "k", "h1", NoWaiter);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->outcome, Outcome::kNew);
    digest = b->digest;
    s.Complete(digest, "sb-1");
  }
  IdempotencyStore again(dir_, 3600);
  auto b = again.Begin("alice", "k", "h1", NoWaiter);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->outcome, Outcome::kReplay);
  EXPECT_EQ(b->id, "sb-1");
  EXPECT_EQ(again.Begin("alice", "k", "h2", NoWaiter)->outcome, Outcome::kMismatch);
  EXPECT_EQ(again.Begin("bob", "k", "h1", NoWaiter)->outcome, Outcome::kNew);
  EXPECT_NE(IdempotencyStore::Digest("alice", "k"), IdempotencyStore::Digest("bob", "k"));
}

TEST_F(IdempotencyStoreTest, PendingKeysOfACrashedDaemonAreResolvedByTheSandboxLabel) {
  std::string found, lost;
  {
    IdempotencyStore s(dir_, 3600);
    found = s.Begin("alice", "made", "h", NoWaiter)->digest;
    lost = s.Begin("alice", "rolled-back", "h", NoWaiter)->digest;
    // The daemon dies here: neither create completed.
  }
  IdempotencyStore s(dir_, 3600);
  const int resolved = s.ResolvePending(
      [&](const std::string& owner, const std::string& digest) -> std::optional<std::string> {
        if (owner == "alice" && digest == found) {
          return "sb-made";
        }
        return std::nullopt;
      });
  EXPECT_EQ(resolved, 1);
  auto made = s.Begin("alice", "made", "h", NoWaiter);
  EXPECT_EQ(made->outcome, Outcome::kReplay);
  EXPECT_EQ(made->id, "sb-made");
  EXPECT_EQ(s.Begin("alice", "rolled-back", "h", NoWaiter)->outcome, Outcome::kNew);
}

TEST_F(IdempotencyStoreTest, ExpiredKeysAreForgotten) {
  {
    IdempotencyStore s(dir_, 0.01);
    s.Complete(s.Begin("alice", "k", "h", NoWaiter)->digest, "sb-1");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // the key's lifetime, not a wait
  IdempotencyStore s(dir_, 3600);
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.Begin("alice", "k", "h", NoWaiter)->outcome, Outcome::kNew);
}

TEST_F(IdempotencyStoreTest, WaitersGetTheFirstRequestsOutcome) {
  IdempotencyStore s("", 3600);  // memory only
  auto first = s.Begin("alice", "k", "h", NoWaiter);
  std::string got;
  int status = 0;
  auto second = s.Begin("alice", "k", "h", [&](const std::string& id, int st, const std::string&) {
    got = id;
    status = st;
  });
  EXPECT_EQ(second->outcome, Outcome::kWaiting);
  s.Abandon(first->digest, 503, "{}");
  EXPECT_EQ(got, "");
  EXPECT_EQ(status, 503);
  EXPECT_EQ(s.Begin("alice", "k", "h", NoWaiter)->outcome, Outcome::kNew);  // free again
}

TEST(IdempotencyKeyFormat, VisibleAsciiUpTo255) {
  EXPECT_FALSE(IdempotencyStore::InvalidKey("a-Z_0.9:~"));
  EXPECT_TRUE(IdempotencyStore::InvalidKey(""));
  EXPECT_TRUE(IdempotencyStore::InvalidKey("has space"));
  EXPECT_TRUE(IdempotencyStore::InvalidKey(std::string(256, 'k')));
}

class IdempotentCreateTest : public fakes::DaemonFixture {};

TEST_F(IdempotentCreateTest, SameKeyAndBodyGetTheSameSandbox) {
  const std::string body = R"({"ttl_s":600,"labels":{"a":"b"}})";
  auto first = Call("POST", "/v1/sandboxes", body, "key-alice", {"Idempotency-Key: one"});
  ASSERT_EQ(first.status, 201) << first.body;
  const std::string id = first.json["data"]["id"];
  EXPECT_EQ(first.json["data"]["labels"]["a"], "b");
  // The daemon's label finds the sandbox after a crash; the client sees its own labels only.
  EXPECT_FALSE(first.json["data"]["labels"].contains(daemon::kIdempotencyLabel));
  EXPECT_EQ(backend_->Get(id)->spec.labels.count(daemon::kIdempotencyLabel), 1u);
  // Same JSON, other spacing and key order.
  auto retry = Call("POST", "/v1/sandboxes", R"({ "labels": {"a": "b"}, "ttl_s": 600 })",
                    "key-alice", {"Idempotency-Key: one"});
  ASSERT_EQ(retry.status, 201) << retry.body;
  EXPECT_EQ(retry.json["data"]["id"], id);
  EXPECT_NE(retry.headers.find("Idempotent-Replayed: true"), std::string::npos) << retry.headers;
  EXPECT_EQ(Call("GET", "/v1/sandboxes", "", "key-alice").json["data"]["sandboxes"].size(), 1u);

  auto other = Call("POST", "/v1/sandboxes", R"({"ttl_s":601})", "key-alice",
                    {"Idempotency-Key: one"});
  EXPECT_EQ(other.status, 422) << other.body;

  // Another caller's key of the same name is another key.
  auto bob = Call("POST", "/v1/sandboxes", body, "key-bob", {"Idempotency-Key: one"});
  ASSERT_EQ(bob.status, 201) << bob.body;
  EXPECT_NE(bob.json["data"]["id"], id);

  // Once the sandbox is gone the key cannot hand it out any more.
  ASSERT_EQ(Call("DELETE", "/v1/sandboxes/" + id, "", "key-alice").status, 200);
  auto gone = Call("POST", "/v1/sandboxes", body, "key-alice", {"Idempotency-Key: one"});
  EXPECT_EQ(gone.status, 409) << gone.body;
}

TEST_F(IdempotentCreateTest, ConcurrentDuplicatesWaitForTheFirst) {
  constexpr int kClients = 8;
  std::vector<std::thread> threads;
  std::vector<std::string> ids(kClients);
  std::vector<long> statuses(kClients);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto r = Call("POST", "/v1/sandboxes", "{}", "key-alice", {"Idempotency-Key: burst"});
      statuses[i] = r.status;
      if (r.status == 201) {
        ids[i] = r.json["data"]["id"];
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(statuses[i], 201);
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
  EXPECT_EQ(Call("GET", "/v1/sandboxes", "", "key-alice").json["data"]["sandboxes"].size(), 1u);
}

TEST_F(IdempotentCreateTest, AFailedCreateFreesItsKey) {
  backend_->FailNextCreates(1);
  auto failed = Call("POST", "/v1/sandboxes", "{}", "key-alice", {"Idempotency-Key: retry-me"});
  EXPECT_GE(failed.status, 500) << failed.body;
  auto ok = Call("POST", "/v1/sandboxes", "{}", "key-alice", {"Idempotency-Key: retry-me"});
  EXPECT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(ok.headers.find("Idempotent-Replayed"), std::string::npos);
}

TEST_F(IdempotentCreateTest, BadKeysAndTheReservedLabelAreRefused) {
  auto spaced = Call("POST", "/v1/sandboxes", "{}", "key-alice", {"Idempotency-Key: a b"});
  EXPECT_EQ(spaced.status, 400) << spaced.body;
  auto label = Call("POST", "/v1/sandboxes",
                    std::string(R"({"labels":{")") + daemon::kIdempotencyLabel + R"(":"x"}})",
                    "key-alice");
  EXPECT_EQ(label.status, 422) << label.body;  // a field error, like every other
  EXPECT_EQ(Call("GET", "/v1/sandboxes", "", "key-alice").json["data"]["sandboxes"].size(), 0u);
}

}  // namespace
}  // namespace agentbox
