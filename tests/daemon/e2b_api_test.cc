// The E2B layer in-process over the test-double backend: control plane auth, ownership and
// shapes, envd routing by E2b-Sandbox-Id, the access token, Connect envelopes and error codes.
// Sandboxes are created natively here: the E2B create also makes the `user` account, which the
// test double (guests running on the host, unjailed) must never do. tests/e2b covers create
// with E2B's SDK against real sandboxes.
#include <gtest/gtest.h>

#include <chrono>
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

  EXPECT_EQ(Control("POST", "/sandboxes/" + id + "/timeout", "key-alice", R"({"timeout": 600})")
                .status,
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

  HttpReply stat = Envd(id, token, "filesystem.Filesystem/Stat",
                        Json{{"path", Workspace(id)}}.dump());
  ASSERT_EQ(stat.status, 200) << stat.body;
  EXPECT_EQ(stat.json["entry"]["type"], "FILE_TYPE_DIRECTORY");
  HttpReply missing = Envd(id, token, "filesystem.Filesystem/Stat",
                           Json{{"path", Workspace(id) + "/nope"}}.dump());
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
  HttpReply made = Envd(id, token, "filesystem.Filesystem/CreateWatcher",
                        Json{{"path", Workspace(id)}}.dump());
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
  EXPECT_EQ(Envd(id, token, "filesystem.Filesystem/RemoveWatcher",
                 Json{{"watcherId", watcher}}.dump())
                .status,
            200);
  EXPECT_EQ(Envd(id, token, "filesystem.Filesystem/GetWatcherEvents",
                 Json{{"watcherId", watcher}}.dump())
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
  HttpReply badwatch = Envd(id, token, "filesystem.Filesystem/WatchDir",
                            e2b::Envelope(0, R"({"path":"/","recursive":"yes"})"),
                            "application/connect+json");
  EXPECT_NE(badwatch.body.find("invalid_argument"), std::string::npos) << badwatch.body;

  const std::string start =
      R"({"process":{"cmd":"/bin/sh","args":["-c","echo hi; echo e >&2; exit 3"]}})";
  HttpReply run = Envd(id, token, "process.Process/Start", e2b::Envelope(0, start),
                       "application/connect+json");
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

  HttpReply bad = Envd(id, token, "process.Process/Start", e2b::Envelope(0, "{}"),
                       "application/connect+json");
  EXPECT_EQ(bad.status, 200);  // stream errors travel in the end-of-stream envelope
  EXPECT_EQ(Json::parse(Envelopes(bad.body).back().substr(4))["error"]["code"],
            "invalid_argument");
  HttpReply gone = Envd(id, token, "process.Process/Connect",
                        e2b::Envelope(0, R"({"process":{"pid":999999}})"),
                        "application/connect+json");
  EXPECT_EQ(Json::parse(Envelopes(gone.body).back().substr(4))["error"]["code"], "not_found");
  HttpReply health = Call("GET", "/health", "", "-",
                          {"E2b-Sandbox-Id: " + id, "X-Access-Token: " + token});
  EXPECT_EQ(health.status, 204);
}

}  // namespace
}  // namespace agentbox::daemon
