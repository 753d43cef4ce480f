// The tunnel end to end: agentbox-guest runs as a plain local process with `serve --connect`
// (no --listen), dials the in-process daemon's GET /v1/tunnel, and the daemon drives it through
// the sandbox's tunnel socket exactly as it drives a local guest (docs/tunnel.md).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "daemon/tunnel_endpoint.h"
#include "fakes/daemon_fixture.h"
#include "fakes/tunnel_backend.h"

namespace agentbox::daemon {
namespace {

using Reply = fakes::HttpReply;
using Clock = std::chrono::steady_clock;

class TunnelTest : public fakes::DaemonFixture {
 protected:
  SandboxBackendPtr Decorate(fakes::ProcessBackend&) override {
    TunnelEndpoint::Options o;
    o.socket_dir = dir_ + "/tunnels";
    o.idle_timeout = std::chrono::seconds(2);  // heartbeats: a ping after 1 s of silence
    endpoint_ = std::make_unique<TunnelEndpoint>(io_, o);
    upgrade_ = [this](http::Request req, http::UpgradedSocket s) {
      endpoint_->Upgrade(std::move(req), std::move(s));
    };
    auto b = std::make_unique<fakes::TunnelBackend>(
        AGENTBOX_GUEST_BIN, dir_ + "/tunnel-state", *endpoint_,
        [this] { return "ws://" + tcp_base_.substr(7) + "/v1/tunnel"; });
    tunnel_backend_ = b.get();
    return b;
  }

  std::string Exec(const std::string& id, const std::string& body, Reply* out = nullptr) {
    Reply r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec", body);
    if (out) {
      *out = r;
    }
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json.is_object() ? r.json["data"].value("output", std::string()) : "";
  }

  // Polls `exec echo ok` until the sandbox answers again (after a reconnect) or 15 s pass.
  bool AnswersAgain(const std::string& id) {
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    while (Clock::now() < deadline) {
      Reply r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                     R"({"id":"probe","command":"echo ok"})");
      if (r.status == 200) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  std::unique_ptr<TunnelEndpoint> endpoint_;
  fakes::TunnelBackend* tunnel_backend_ = nullptr;
};

TEST_F(TunnelTest, ExecKeepsSessionStateThroughTheTunnel) {
  const std::string id = CreateAs("key-alice");
  ASSERT_TRUE(endpoint_->Connected(id));
  Exec(id, R"({"id":"s","command":"cd /tmp && export X=7"})");
  EXPECT_EQ(Exec(id, R"({"id":"s","command":"echo $PWD $X"})"), "/tmp 7\n");
  Reply get = Call("GET", "/v1/sandboxes/" + id);
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.body.find(".sock"), std::string::npos) << "guest endpoint leaked: " << get.body;
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id).status, 200);
  EXPECT_FALSE(endpoint_->Connected(id));
}

TEST_F(TunnelTest, UploadAndDownloadStreamThroughTheTunnel) {
  const std::string id = CreateAs("key-alice");
  // Many times the per-stream window: flow control at work.
  const std::string blob = fakes::PatternBytes(5 << 20);
  Reply down;
  UploadThenDownload(id, "key-alice", "big.bin", blob, "tUnNeLbOuNdArY", &down);
}

TEST_F(TunnelTest, ServerSentEventsStreamThroughTheTunnel) {
  const std::string id = CreateAs("key-alice");
  Reply e;
  Exec(id,
       R"({"id":"s","command":"for i in 1 2 3; do echo line$i; sleep 0.2; done","wait_seconds":0})",
       &e);
  ASSERT_EQ(e.json["data"]["status"], "running") << e.body;
  const std::string events = ReadEvents("/v1/sandboxes/" + id + "/shell/s/stream", "event: status");
  for (const char* line : {"line1", "line2", "line3"}) {
    EXPECT_NE(events.find(line), std::string::npos) << events;
  }
  EXPECT_NE(events.find("\"returncode\":0"), std::string::npos) << events;
}

TEST_F(TunnelTest, ConcurrentRequestsShareOneTunnel) {
  const std::string id = CreateAs("key-alice");
  constexpr int kClients = 12;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  const auto start = Clock::now();
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      Reply r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                     R"({"id":"c)" + std::to_string(i) + R"(","command":"sleep 0.5; echo n)" +
                         std::to_string(i) + R"("})");
      if (r.status == 200 && r.json["data"]["output"] == "n" + std::to_string(i) + "\n") {
        ++ok;
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  const auto took = Clock::now() - start;
  EXPECT_EQ(ok.load(), kClients);
  // Serially this would take 6 s; multiplexed, the commands overlap.
  EXPECT_LT(took, std::chrono::seconds(4));
}

TEST_F(TunnelTest, LinkDropAnswersTheRequestInFlightAndTheGuestReconnects) {
  const std::string id = CreateAs("key-alice");
  Exec(id, R"({"id":"s","command":"export KEPT=yes"})");
  Reply inflight;
  std::thread t([&] {
    inflight = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                    R"({"id":"slow","command":"sleep 3; echo late"})");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto dropped = Clock::now();
  endpoint_->Drop(id);
  t.join();
  EXPECT_LT(Clock::now() - dropped, std::chrono::seconds(2)) << "the request hung";
  EXPECT_EQ(inflight.status, 502) << inflight.body;
  EXPECT_NE(inflight.body.find("tunnel"), std::string::npos) << inflight.body;
  // The next request, sent at once, waits for the guest to redial (reconnect_grace) instead of
  // failing; the guest process and its sessions lived through the drop.
  EXPECT_EQ(Exec(id, R"({"id":"s","command":"echo $KEPT"})"), "yes\n");
  EXPECT_TRUE(endpoint_->Connected(id));
}

TEST_F(TunnelTest, AGoneGuestGivesAClearErrorNotAHang) {
  const std::string id = CreateAs("key-alice");
  ASSERT_GT(tunnel_backend_->GuestPid(id), 0);
  ::kill(tunnel_backend_->GuestPid(id), SIGKILL);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (endpoint_->Connected(id) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(endpoint_->Connected(id));
  const auto start = Clock::now();
  Reply r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec", R"({"command":"true"})");
  // After the reconnect grace (1 s) with no guest redialling: a clear 503, not a hang.
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(900));
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("not connected"), std::string::npos) << r.body;
}

TEST_F(TunnelTest, HeartbeatsFindASilentGuestAndItComesBack) {
  const std::string id = CreateAs("key-alice");
  Exec(id, R"({"id":"s","command":"export KEPT=yes"})");
  // Idle but alive: pings keep the tunnel up across several idle timeouts.
  std::this_thread::sleep_for(std::chrono::milliseconds(4500));
  ASSERT_TRUE(endpoint_->Connected(id));
  // A guest that stops answering (frozen, or its network gone without a FIN) is declared dead by
  // the daemon's heartbeat within the idle timeout, and requests then fail at once.
  const pid_t pid = tunnel_backend_->GuestPid(id);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);
  const auto deadline = Clock::now() + std::chrono::seconds(8);
  while (endpoint_->Connected(id) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const bool declared_dead = !endpoint_->Connected(id);
  Reply r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec", R"({"command":"true"})");
  ::kill(pid, SIGCONT);
  ASSERT_TRUE(declared_dead) << "no heartbeat noticed the frozen guest";
  EXPECT_EQ(r.status, 503) << r.body;
  // Thawed, the guest finds its link closed, redials, and its sessions are intact.
  ASSERT_TRUE(AnswersAgain(id));
  EXPECT_EQ(Exec(id, R"({"id":"s","command":"echo $KEPT"})"), "yes\n");
}

TEST_F(TunnelTest, TunnelsNeedTheSandboxsOwnToken) {
  const std::string a = CreateAs("key-alice");
  const std::vector<std::string> ws = {"Upgrade: websocket", "Connection: Upgrade",
                                       "Sec-WebSocket-Version: 13",
                                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="};
  // No token, an API key, and a token naming the sandbox with a wrong secret: all refused.
  for (const std::string& auth : {std::string(), std::string("Authorization: Bearer key-alice"),
                                  "Authorization: Bearer " + a + ".0000"}) {
    auto h = ws;
    if (!auth.empty()) {
      h.push_back(auth);
    }
    Reply r = Call("GET", "/v1/tunnel", "", "-", h);
    EXPECT_EQ(r.status, 401) << auth << ": " << r.body;
  }
  auto h = ws;
  h.push_back("Authorization: Bearer " + a + ".x");
  EXPECT_EQ(Call("GET", "/v1/other", "", "-", h).status, 404);
  EXPECT_TRUE(endpoint_->Connected(a));  // the refused attempts left the real tunnel alone
}

}  // namespace
}  // namespace agentbox::daemon
