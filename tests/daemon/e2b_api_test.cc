// The E2B layer in-process over the test-double backend: control plane auth, ownership and
// shapes, envd routing by E2b-Sandbox-Id, the access token, Connect envelopes and error codes.
// Sandboxes are created natively here: the E2B create also makes the `user` account, which the
// test double (guests running on the host, unjailed) must never do. tests/e2b covers create
// with E2B's SDK against real sandboxes.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "common/base64.h"
#include "daemon/e2b/translate.h"
#include "fakes/daemon_fixture.h"

namespace agentbox::daemon {
namespace {

using fakes::HttpReply;

class E2bApiTest : public fakes::DaemonFixture {
 protected:
  HttpReply Control(const std::string& method, const std::string& path, const std::string& key,
                    const std::string& body = "") {
    std::vector<std::string> h = {"Content-Type: application/json"};
    if (!key.empty()) {
      h.push_back("X-API-KEY: " + key);
    }
    return Call(method, path, body, "-", h);
  }
  HttpReply Envd(const std::string& id, const std::string& token, const std::string& method,
                 const std::string& body, const std::string& ctype = "application/json") {
    return Call("POST", "/" + method, body, "-",
                {"Content-Type: " + ctype, "E2b-Sandbox-Id: " + id, "X-Access-Token: " + token,
                 "Authorization: Basic " + Base64Encode("root:")});
  }
  // The JSON payloads of a Connect stream, end-of-stream last (prefixed "END:").
  static std::vector<std::string> Envelopes(const std::string& body) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos + 5 <= body.size()) {
      const auto flags = static_cast<uint8_t>(body[pos]);
      const uint32_t n = (static_cast<uint32_t>(static_cast<uint8_t>(body[pos + 1])) << 24) |
                         (static_cast<uint32_t>(static_cast<uint8_t>(body[pos + 2])) << 16) |
                         (static_cast<uint32_t>(static_cast<uint8_t>(body[pos + 3])) << 8) |
                         static_cast<uint32_t>(static_cast<uint8_t>(body[pos + 4]));
      out.push_back((flags & 2 ? "END:" : "") + body.substr(pos + 5, n));
      pos += 5 + n;
    }
    return out;
  }
};

TEST_F(E2bApiTest, ControlPlaneShapesAuthAndOwnership) {
  const std::string id = CreateAs("key-alice", R"({"labels": {"team": "a"}})");
  HttpReply got = Control("GET", "/sandboxes/" + id, "key-alice");
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.json["sandboxID"], id);
  EXPECT_EQ(got.json["templateID"], "base");
  EXPECT_EQ(got.json["envdVersion"], e2b::kEnvdVersion);
  EXPECT_EQ(got.json["metadata"], Json({{"team", "a"}}));
  EXPECT_EQ(got.json["state"], "running");
  EXPECT_FALSE(got.json["envdAccessToken"].get<std::string>().empty());

  HttpReply other = Control("GET", "/sandboxes/" + id, "key-bob");
  EXPECT_EQ(other.status, 404);
  EXPECT_EQ(other.json["code"], 404);
  HttpReply nokey = Control("GET", "/v2/sandboxes", "");
  EXPECT_EQ(nokey.status, 401);
  EXPECT_EQ(nokey.json["code"], 401);

  HttpReply list = Control("GET", "/v2/sandboxes?metadata=team%3Da&limit=10", "key-alice");
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(list.json.size(), 1u);
  EXPECT_EQ(list.json[0]["sandboxID"], id);
  EXPECT_FALSE(list.json[0].contains("envdAccessToken"));
  EXPECT_EQ(Control("GET", "/v2/sandboxes?metadata=team%3Db", "key-alice").json.size(), 0u);
  EXPECT_EQ(Control("GET", "/v2/sandboxes", "key-bob").json.size(), 0u);

  EXPECT_EQ(
      Control("POST", "/sandboxes/" + id + "/timeout", "key-alice", R"({"timeout": 600})").status,
      204);
  EXPECT_EQ(Control("POST", "/sandboxes/" + id + "/timeout", "key-alice", R"({"t": 1})").status,
            400);
  EXPECT_EQ(Control("POST", "/sandboxes/" + id + "/pause", "key-alice").status, 501);
  EXPECT_EQ(Control("DELETE", "/sandboxes/" + id, "key-bob").status, 404);
  EXPECT_EQ(Control("DELETE", "/sandboxes/" + id, "key-alice").status, 204);
  EXPECT_EQ(Control("DELETE", "/sandboxes/" + id, "key-alice").status, 404);
}

// Metrics: the test double reports none (Capabilities::metrics false), so the native route and
// getMetrics say so with 501; unknown and foreign sandboxes are 404 first. The figures are
// tested on the real backends (cgroup_usage_test.cc, docker_metrics_test.cc, tests/e2b).
TEST_F(E2bApiTest, MetricsOfABackendWithoutThemAre501) {
  const std::string id = CreateAs("key-alice", "{}");
  HttpReply native = Call("GET", "/v1/sandboxes/" + id + "/metrics", "", "key-alice");
  EXPECT_EQ(native.status, 501) << native.body;
  EXPECT_EQ(native.json["success"], false);
  EXPECT_NE(native.json["message"].get<std::string>().find("does not report metrics"),
            std::string::npos);
  HttpReply e2b = Control("GET", "/sandboxes/" + id + "/metrics?start=1&end=2", "key-alice");
  EXPECT_EQ(e2b.status, 501) << e2b.body;
  EXPECT_EQ(e2b.json["code"], 501);
  EXPECT_EQ(Control("GET", "/sandboxes/" + id + "/metrics", "key-bob").status, 404);
  EXPECT_EQ(Control("GET", "/sandboxes/sb-nope/metrics", "key-alice").status, 404);
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id + "/metrics", "", "key-bob").status, 404);
  EXPECT_EQ(Control("GET", "/sandboxes/" + id + "/metrics", "").status, 401);
}

TEST_F(E2bApiTest, EnvdRoutingTokenAndConnect) {
  const std::string id = CreateAs("key-alice");
  const std::string token =
      Control("GET", "/sandboxes/" + id, "key-alice").json["envdAccessToken"].get<std::string>();

  HttpReply stat =
      Envd(id, token, "filesystem.Filesystem/Stat", Json{{"path", Workspace(id)}}.dump());
  ASSERT_EQ(stat.status, 200) << stat.body;
  EXPECT_EQ(stat.json["entry"]["type"], "FILE_TYPE_DIRECTORY");
  HttpReply missing =
      Envd(id, token, "filesystem.Filesystem/Stat", Json{{"path", Workspace(id) + "/nope"}}.dump());
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.json["code"], "not_found");
  EXPECT_EQ(Envd(id, "wrong", "process.Process/List", "{}").json["code"], "unauthenticated");
  EXPECT_EQ(Envd("sb-nope", token, "process.Process/List", "{}").status, 502);
  // Update (pty.resize) needs a process and a size; the polling watchers are not served.
  EXPECT_EQ(Envd(id, token, "process.Process/Update", "{}").json["code"], "invalid_argument");
  EXPECT_EQ(Envd(id, token, "process.Process/Update",
                 R"({"process":{"pid":1},"pty":{"size":{"cols":0,"rows":5}}})")
                .json["code"],
            "invalid_argument");
  EXPECT_EQ(Envd(id, token, "process.Process/Update",
                 R"({"process":{"pid":999999},"pty":{"size":{"cols":80,"rows":24}}})")
                .json["code"],
            "not_found");
  // The polling watchers: events buffered by the daemon until fetched.
  HttpReply made =
      Envd(id, token, "filesystem.Filesystem/CreateWatcher", Json{{"path", Workspace(id)}}.dump());
  ASSERT_EQ(made.status, 200) << made.body;
  const std::string watcher = made.json["watcherId"];
  HttpReply wrote = Envd(id, token, "filesystem.Filesystem/MakeDir",
                         Json{{"path", Workspace(id) + "/watched-dir"}}.dump());
  ASSERT_EQ(wrote.status, 200) << wrote.body;
  Json seen = Json::array();
  for (int i = 0; i < 200 && seen.empty(); ++i) {
    HttpReply got = Envd(id, token, "filesystem.Filesystem/GetWatcherEvents",
                         Json{{"watcherId", watcher}}.dump());
    ASSERT_EQ(got.status, 200) << got.body;
    seen = got.json["events"];
    if (seen.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen[0], Json({{"name", "watched-dir"}, {"type", "EVENT_TYPE_CREATE"}}));
  EXPECT_EQ(
      Envd(id, token, "filesystem.Filesystem/RemoveWatcher", Json{{"watcherId", watcher}}.dump())
          .status,
      200);
  EXPECT_EQ(
      Envd(id, token, "filesystem.Filesystem/GetWatcherEvents", Json{{"watcherId", watcher}}.dump())
          .json["code"],
      "not_found");
  EXPECT_EQ(Envd(id, token, "filesystem.Filesystem/CreateWatcher",
                 Json{{"path", Workspace(id) + "/nope"}}.dump())
                .json["code"],
            "not_found");
  EXPECT_EQ(Envd(id, token, "filesystem.Filesystem/CreateWatcher", "{}").json["code"],
            "invalid_argument");
  // WatchDir: a missing directory ends the stream with not_found; a malformed request with
  // invalid_argument.
  HttpReply nowatch = Envd(id, token, "filesystem.Filesystem/WatchDir",
                           e2b::Envelope(0, Json{{"path", Workspace(id) + "/nope"}}.dump()),
                           "application/connect+json");
  EXPECT_NE(nowatch.body.find("not_found"), std::string::npos) << nowatch.body;
  HttpReply badwatch =
      Envd(id, token, "filesystem.Filesystem/WatchDir",
           e2b::Envelope(0, R"({"path":"/","recursive":"yes"})"), "application/connect+json");
  EXPECT_NE(badwatch.body.find("invalid_argument"), std::string::npos) << badwatch.body;

  const std::string start =
      R"({"process":{"cmd":"/bin/sh","args":["-c","echo hi; echo e >&2; exit 3"]}})";
  HttpReply run =
      Envd(id, token, "process.Process/Start", e2b::Envelope(0, start), "application/connect+json");
  ASSERT_EQ(run.status, 200) << run.body;
  EXPECT_EQ(run.content_type, "application/connect+json");
  auto env = Envelopes(run.body);
  ASSERT_GE(env.size(), 4u) << run.body;
  EXPECT_TRUE(Json::parse(env.front())["event"].contains("start")) << env.front();
  std::string out;
  std::string err;
  for (const auto& e : env) {
    const Json j = Json::parse(e.starts_with("END:") ? e.substr(4) : e);
    if (j.contains("event") && j["event"].contains("data")) {
      out += *Base64Decode(j["event"]["data"].value("stdout", ""));
      err += *Base64Decode(j["event"]["data"].value("stderr", ""));
    }
  }
  EXPECT_EQ(out, "hi\n");
  EXPECT_EQ(err, "e\n");
  EXPECT_EQ(Json::parse(env[env.size() - 2])["event"]["end"]["exitCode"], 3);
  EXPECT_EQ(env.back(), "END:{}");

  HttpReply bad =
      Envd(id, token, "process.Process/Start", e2b::Envelope(0, "{}"), "application/connect+json");
  EXPECT_EQ(bad.status, 200);  // stream errors travel in the end-of-stream envelope
  EXPECT_EQ(Json::parse(Envelopes(bad.body).back().substr(4))["error"]["code"], "invalid_argument");
  HttpReply gone =
      Envd(id, token, "process.Process/Connect", e2b::Envelope(0, R"({"process":{"pid":999999}})"),
           "application/connect+json");
  EXPECT_EQ(Json::parse(Envelopes(gone.body).back().substr(4))["error"]["code"], "not_found");
  HttpReply health =
      Call("GET", "/health", "", "-", {"E2b-Sandbox-Id: " + id, "X-Access-Token: " + token});
  EXPECT_EQ(health.status, 204);
}

// A sandbox controls its guest: one that answers every call with JSON of unexpected shapes must
// get defaults or errors, never an exception in the daemon (a throw on an io thread would end it
// and every other sandbox's service). Found by fuzz_connect_envelope and an audit (2026-12-05).
TEST_F(E2bApiTest, AHostileGuestsOddAnswersNeverTakeTheDaemonDown) {
  const std::string id = CreateAs("key-alice");
  const std::string token =
      Control("GET", "/sandboxes/" + id, "key-alice").json["envdAccessToken"].get<std::string>();
  // The stand-in guest: binds the sandbox's guest socket and answers each call with the next
  // body, over and over.
  const std::vector<std::string> bodies = {
      R"({"success":true,"data":{"processes":[1,"x",{"pid":"x","cmd":5,"args":"a","tag":7}]}})",
      R"({"success":true,"data":null})",
      R"({"success":true,"data":"x"})",
      R"({"success":true,"data":{"entry":{"size":1e30,"mode":"x","mtime":-1.7e20}}})",
      R"({"success":"yes","message":5})",
      R"({"success":true,"data":{"created":"yes","entry":[]}})",
  };
  const std::string sock = dir_ + "/state/" + id + "/guest.sock";
  ASSERT_EQ(::unlink(sock.c_str()), 0);
  const int srv = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock.c_str());
  ASSERT_EQ(::bind(srv, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(srv, 16), 0);
  std::atomic<bool> stop{false};
  std::thread guest([&] {
    for (size_t n = 0; !stop; ++n) {
      const int c = ::accept(srv, nullptr, nullptr);
      if (c < 0) {
        return;
      }
      char buf[4096];
      (void)::recv(c, buf, sizeof(buf), 0);  // the request; its body is not needed
      const std::string& body = bodies[n % bodies.size()];
      const std::string answer =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
          "Content-Length: " +
          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  });
  const std::vector<std::pair<std::string, std::string>> calls = {
      {"process.Process/List", "{}"},
      {"filesystem.Filesystem/Stat", Json{{"path", "/tmp"}}.dump()},
      {"filesystem.Filesystem/ListDir", Json{{"path", "/tmp"}}.dump()},
      {"filesystem.Filesystem/MakeDir", Json{{"path", "/tmp/d"}}.dump()},
      {"filesystem.Filesystem/Move", Json{{"source", "/tmp/a"}, {"destination", "/tmp/b"}}.dump()},
      {"filesystem.Filesystem/Remove", Json{{"path", "/tmp/a"}}.dump()},
  };
  // The first call meets the first answer: its process list, entries of other shapes skipped.
  HttpReply list = Envd(id, token, "process.Process/List", "{}");
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(list.json["processes"].size(), 1u) << list.body;
  EXPECT_EQ(list.json["processes"][0]["config"]["cmd"], "");
  int answered = 0;
  for (int round = 0; round < 3; ++round) {
    for (const auto& [method, body] : calls) {
      HttpReply r = Envd(id, token, method, body);
      EXPECT_TRUE(r.status == 200 || (r.status >= 400 && r.status < 600)) << method << r.body;
      answered += r.status != 0;
    }
  }
  EXPECT_EQ(answered, 3 * static_cast<int>(calls.size()));
  EXPECT_EQ(Call("GET", "/healthz").status, 200);  // the daemon is still there
  stop = true;
  ::shutdown(srv, SHUT_RDWR);
  ::close(srv);
  guest.join();
}

}  // namespace
}  // namespace agentbox::daemon
