// Backend selection as a client sees it through agentboxd's API: two backends named docker and
// jail (test doubles whose sandboxes are real agentbox-guest processes), the selector's default
// and fallback, the decision in create responses, /v1/info, /readyz and /metrics, and sandboxes
// staying pinned to their backend when the setting changes across a daemon restart.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <thread>

#include "daemon/daemon_api.h"
#include "fakes/fixed_config.h"
#include "fakes/process_backend.h"
#include "http/envelope.h"

namespace agentbox::daemon {
namespace {

// Forwards to a ProcessBackend; Probe() can be switched off to play an engine that went down.
class Switchable : public fakes::ProcessBackend {
 public:
  using ProcessBackend::ProcessBackend;
  ProbeResult Probe() override {
    if (!up) {
      return {false, std::string(Name()) + " engine is not reachable", {}};
    }
    return ProcessBackend::Probe();
  }
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override {
    if (fail_creates) {
      return Fail(ErrorCode::kInternal, std::string(Name()) + " could not start a sandbox");
    }
    return ProcessBackend::Create(id, spec);
  }
  std::atomic<bool> up{true};
  std::atomic<bool> fail_creates{false};
};

size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

class SelectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-selection-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    docker_ = std::make_unique<Switchable>(AGENTBOX_GUEST_BIN, dir_ + "/docker", "docker");
    jail_ = std::make_unique<Switchable>(AGENTBOX_GUEST_BIN, dir_ + "/jail", "jail");
  }

  void TearDown() override {
    StopDaemon();
    docker_.reset();
    jail_.reset();
    ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0);
  }

  // Starts a daemon whose configuration is `cfg` (what agentboxd would read from its sources).
  void StartDaemon(std::map<std::string, std::string> cfg) {
    DaemonOptions o;
    o.spool_dir = dir_;
    o.load_config = fakes::FixedConfig(cfg);  // what its files and environment would say
    o.flags_file = dir_ + "/flags.json";
    o.selection =
        selector::Settings::FromConfig(Config::FromMap(std::move(cfg)), {"docker", "jail"});
    o.selection->probe_ttl = std::chrono::milliseconds(0);  // see probe changes at once
    // A fresh io_context per daemon: handlers the previous one left queued (its connections')
    // must not run against this daemon after the previous server was freed.
    io_.emplace();
    work_.emplace(boost::asio::make_work_guard(*io_));
    api_ = std::make_unique<DaemonApi>(
        *io_,
        std::map<std::string, SandboxBackend*>{{"docker", docker_.get()}, {"jail", jail_.get()}},
        ApiKeys({"alice:key-alice"}), o);
    api_->Start();
    http::ServerOptions so;
    so.error_body = &http::ErrorBody;
    server_ = std::make_unique<http::Server>(*io_, *api_, so);
    sock_ = dir_ + "/d.sock";
    ::unlink(sock_.c_str());
    ASSERT_TRUE(server_->Listen("unix:" + sock_));
    thread_ = std::thread([this] { io_->run(); });
  }

  void StopDaemon() {
    if (!api_) {
      return;
    }
    server_->Stop();
    work_.reset();
    io_->stop();
    thread_.join();
    server_.reset();
    api_.reset();
    io_.reset();  // destroys, without running, what the stopped loop left queued
  }

  struct Reply {
    long status = 0;
    std::string body;
    Json json;
  };
  Reply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    CURL* c = curl_easy_init();
    Reply r;
    const std::string url = "http://agentboxd" + path;
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock_.c_str());
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "POST" || method == "PUT") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    EXPECT_EQ(curl_easy_perform(c), CURLE_OK) << method << " " << path;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    r.json = Json::parse(r.body, nullptr, false);
    return r;
  }

  std::string Exec(const std::string& id, const std::string& command) {
    Reply r = Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                   Json{{"id", "s"}, {"command", command}}.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json["data"]["output"].is_string() ? r.json["data"]["output"].get<std::string>() : "";
  }

  std::string dir_, sock_;
  std::unique_ptr<Switchable> docker_, jail_;
  std::optional<boost::asio::io_context> io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::unique_ptr<DaemonApi> api_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

TEST_F(SelectionTest, NewSandboxesGoToDockerByDefault) {
  StartDaemon({});
  Reply c = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.json["data"]["backend"], "docker");
  EXPECT_EQ(c.json["data"]["reason"], "DEFAULT");
  EXPECT_TRUE(c.json["data"]["selection"]["error_code"].is_null());
  EXPECT_EQ(c.json["data"]["selection"]["requested_backend"], "docker");
}

TEST_F(SelectionTest, AnEngineThatIsDownMakesNewSandboxesFallBackAndSaysWhy) {
  StartDaemon({});
  docker_->up = false;
  Reply c = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.json["data"]["id"];
  EXPECT_EQ(c.json["data"]["backend"], "jail");
  EXPECT_EQ(c.json["data"]["reason"], "FALLBACK");
  EXPECT_EQ(c.json["data"]["selection"]["error_code"], "PROVIDER_NOT_READY");
  EXPECT_NE(c.json["data"]["selection"]["detail"].get<std::string>().find(
                "docker engine is not reachable"),
            std::string::npos);
  EXPECT_EQ(Exec(id, "echo fine"), "fine\n");

  Reply info = Call("GET", "/v1/info");
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.json["data"]["implementation"], "JailSandbox");
  EXPECT_EQ(info.json["data"]["reason"], "FALLBACK");
  EXPECT_EQ(info.json["data"]["error_code"], "PROVIDER_NOT_READY");
  EXPECT_EQ(info.json["data"]["probes"]["docker"]["usable"], false);

  Reply m = Call("GET", "/metrics");
  EXPECT_NE(m.body.find("agentbox_selection_total{backend=\"jail\",reason=\"FALLBACK\"} 1"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("agentbox_fallback_total{from=\"docker\",to=\"jail\","
                        "error_code=\"PROVIDER_NOT_READY\"} 1"),
            std::string::npos);
  EXPECT_NE(m.body.find("agentbox_selection_duration_seconds_count 1"), std::string::npos);

  // The engine comes back: the next sandbox goes to docker again, the first stays on jail.
  docker_->up = true;
  Reply d = Call("POST", "/v1/sandboxes", "{}");
  EXPECT_EQ(d.json["data"]["backend"], "docker");
  EXPECT_EQ(Call("GET", "/v1/sandboxes/" + id).json["data"]["backend"], "jail");
}

TEST_F(SelectionTest, NothingUsableIs503WithTheReasonAndNotReady) {
  StartDaemon({});
  docker_->up = false;
  jail_->up = false;
  Reply c = Call("POST", "/v1/sandboxes", "{}");
  EXPECT_EQ(c.status, 503) << c.body;
  EXPECT_NE(c.body.find("docker engine is not reachable"), std::string::npos);
  EXPECT_NE(c.body.find("jail engine is not reachable"), std::string::npos);
  Reply ready = Call("GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.json["data"]["ready"], false);
  EXPECT_EQ(ready.json["data"]["reason"], "ERROR");
  EXPECT_TRUE(Call("GET", "/v1/sandboxes").json["data"]["sandboxes"].empty());
}

TEST_F(SelectionTest, InvalidSettingFallsBackInsteadOfFailing) {
  StartDaemon({{"SANDBOX_BACKEND", "dokcer"}});
  Reply c = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.json["data"]["backend"], "docker");
  EXPECT_EQ(c.json["data"]["selection"]["error_code"], "INVALID_CONFIG");
}

TEST_F(SelectionTest, ChangingTheSettingNeverStrandsASandbox) {
  StartDaemon({{"SANDBOX_BACKEND", "docker"}});
  Reply c = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(c.status, 201);
  const std::string old_id = c.json["data"]["id"];
  EXPECT_EQ(Exec(old_id, "cd /tmp && export KEPT=yes"), "");
  const std::string version = Call("GET", "/v1/info").json["data"]["config_version"];

  // One setting changes, the daemon restarts: new sandboxes go to jail, the old one stays on
  // docker with its session intact.
  StopDaemon();
  StartDaemon({{"SANDBOX_BACKEND", "jail"}});
  Reply info = Call("GET", "/v1/info");
  EXPECT_EQ(info.json["data"]["backend"], "jail");
  EXPECT_NE(info.json["data"]["config_version"], version);
  Reply old = Call("GET", "/v1/sandboxes/" + old_id);
  ASSERT_EQ(old.status, 200) << old.body;
  EXPECT_EQ(old.json["data"]["backend"], "docker");
  EXPECT_EQ(Exec(old_id, "echo $PWD $KEPT"), "/tmp yes\n");
  Reply n = Call("POST", "/v1/sandboxes", "{}");
  EXPECT_EQ(n.json["data"]["backend"], "jail");
  EXPECT_EQ(n.json["data"]["reason"], "DEFAULT");
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + old_id).status, 200);
}

TEST_F(SelectionTest, APinIsHonouredOrRefusedNeverRedirected) {
  StartDaemon({});
  Reply c = Call("POST", "/v1/sandboxes", R"({"backend":"jail"})");
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.json["data"]["backend"], "jail");
  EXPECT_EQ(c.json["data"]["reason"], "TARGETING_MATCH");
  jail_->up = false;
  Reply refused = Call("POST", "/v1/sandboxes", R"({"backend":"jail"})");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(Call("POST", "/v1/sandboxes", R"({"backend":"lxc"})").status, 422);
}

TEST_F(SelectionTest, ListingShowsLiveStateNotTheCreateTimeCopy) {
  StartDaemon({});
  const std::string kept = Call("POST", "/v1/sandboxes", "{}").json["data"]["id"];
  const std::string lost = Call("POST", "/v1/sandboxes", "{}").json["data"]["id"];
  ASSERT_TRUE(docker_->Destroy(lost));  // behind the daemon's back
  Reply r = Call("GET", "/v1/sandboxes");
  ASSERT_EQ(r.status, 200);
  std::map<std::string, Json> by_id;
  for (const auto& s : r.json["data"]["sandboxes"]) {
    by_id[s["id"]] = s;
  }
  EXPECT_EQ(by_id.at(kept)["state"], "running");
  EXPECT_EQ(by_id.at(lost)["state"], "failed");
  EXPECT_NE(by_id.at(lost)["detail"].get<std::string>().find("no longer has"), std::string::npos);
}

TEST_F(SelectionTest, PullStreamsProgressLinesThenDone) {
  StartDaemon({});
  Reply r = Call("POST", "/v1/images/pull", R"({"image":"remote/tool:1"})");
  ASSERT_EQ(r.status, 200) << r.body;
  std::vector<Json> lines;
  size_t pos = 0;
  while (pos < r.body.size()) {
    size_t nl = r.body.find('\n', pos);
    ASSERT_NE(nl, std::string::npos) << "every line ends with a newline";
    lines.push_back(Json::parse(r.body.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  ASSERT_EQ(lines.size(), 4u) << r.body;
  EXPECT_EQ(lines[0]["progress"], "Pulling remote/tool:1");
  EXPECT_EQ(lines[2]["progress"], "Pull complete");
  EXPECT_EQ(lines[3]["done"], true);
  EXPECT_EQ(lines[3]["backend"], "docker");
}

TEST_F(SelectionTest, PullFailuresNameTheImage) {
  StartDaemon({});
  Reply missing = Call("POST", "/v1/images/pull", R"({"image":"missing/x"})");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("missing/x"), std::string::npos);
  // A failure after progress was streamed ends the stream with an error line.
  Reply flaky = Call("POST", "/v1/images/pull", R"({"image":"flaky/x"})");
  EXPECT_EQ(flaky.status, 200);
  EXPECT_NE(flaky.body.find(R"("error":{"code":"unavailable")"), std::string::npos) << flaky.body;
  EXPECT_NE(flaky.body.find("flaky/x"), std::string::npos);
  EXPECT_EQ(Call("POST", "/v1/images/pull", R"({"image":""})").status, 422);
  EXPECT_EQ(Call("POST", "/v1/images/pull", R"({"image":7})").status, 422);
  EXPECT_EQ(Call("POST", "/v1/images/pull", R"({"image":"a","backend":"lxc"})").status, 422);
  EXPECT_EQ(Call("POST", "/v1/images/pull", "{").status, 400);
}

TEST_F(SelectionTest, CreatingFromAMissingImageIsAClearErrorAndLeavesNothing) {
  StartDaemon({});
  Reply c = Call("POST", "/v1/sandboxes", R"({"image":"missing/nothing:1"})");
  EXPECT_EQ(c.status, 404) << c.body;
  EXPECT_NE(c.body.find("missing/nothing:1"), std::string::npos);
  EXPECT_TRUE(Call("GET", "/v1/sandboxes").json["data"]["sandboxes"].empty());
  Reply ok = Call("POST", "/v1/sandboxes", R"({"image":"remote/tool:1"})");
  EXPECT_EQ(ok.status, 201) << ok.body;
}

TEST_F(SelectionTest, ARolloutIsStickyPerSubjectAndCounted) {
  StartDaemon({{"SANDBOX_BACKEND", "docker"},
               {"AGENTBOX_ROLLOUT_BACKEND", "jail"},
               {"AGENTBOX_ROLLOUT_PERCENTAGE", "50"}});
  // Unleash's normalized hash of "AGENTBOX_ROLLOUT_BACKEND:<subject>" puts some subjects in
  // buckets 1..50 (jail) and the others in 51..100 (docker); each keeps its backend.
  std::map<std::string, std::string> first;
  std::vector<std::string> ids;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 6; ++i) {
      const std::string subject = "user-" + std::to_string(i);
      Reply c = Call("POST", "/v1/sandboxes", Json{{"subject", subject}}.dump());
      ASSERT_EQ(c.status, 201) << c.body;
      ids.push_back(c.json["data"]["id"]);
      const Json& sel = c.json["data"]["selection"];
      EXPECT_EQ(c.json["data"]["reason"], "SPLIT") << c.body;
      EXPECT_EQ(sel["rule_id"], "rollout:AGENTBOX_ROLLOUT_BACKEND");
      const int bucket = sel["bucket"];
      const std::string backend = c.json["data"]["backend"];
      EXPECT_EQ(backend, bucket <= 50 ? "jail" : "docker") << bucket;
      if (round == 0) {
        first[subject] = backend;
      } else {
        EXPECT_EQ(backend, first[subject]) << subject;
      }
    }
  }
  const std::string metrics = Call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("reason=\"SPLIT\""), std::string::npos) << metrics;
  // Bad subjects are refused with the field named.
  for (const char* bad : {R"({"subject":""})", R"({"subject":7})"}) {
    Reply r = Call("POST", "/v1/sandboxes", bad);
    EXPECT_EQ(r.status, 422) << bad << " " << r.body;
    EXPECT_NE(r.body.find("subject"), std::string::npos) << r.body;
  }
  for (const auto& id : ids) {
    EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id).status, 200);
  }
}

TEST_F(SelectionTest, FailingCreatesOnTheCandidateTripTheBreakerAndRollBack) {
  StartDaemon({{"SANDBOX_BACKEND", "docker"},
               {"AGENTBOX_ROLLOUT_BACKEND", "jail"},
               {"AGENTBOX_ROLLOUT_PERCENTAGE", "100"},
               {"AGENTBOX_BREAKER_WINDOW_MS", "300"},
               {"AGENTBOX_BREAKER_MIN_SAMPLES", "3"},
               {"AGENTBOX_BREAKER_WINDOWS", "1"}});
  // A caller's mistake (an image that does not exist: 404) is not the backend failing.
  for (int i = 0; i < 4; ++i) {
    Reply c =
        Call("POST", "/v1/sandboxes", Json{{"subject", "user-1"}, {"image", "missing/x"}}.dump());
    EXPECT_EQ(c.status, 404) << c.body;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  Reply ok = Call("POST", "/v1/sandboxes", Json{{"subject", "user-1"}}.dump());
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(ok.json["data"]["backend"], "jail");
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + ok.json["data"]["id"].get<std::string>()).status,
            200);

  jail_->fail_creates = true;
  for (int i = 0; i < 3; ++i) {
    Reply c = Call("POST", "/v1/sandboxes", Json{{"subject", "user-1"}}.dump());
    EXPECT_EQ(c.status, 500) << c.body;
    EXPECT_NE(c.body.find("jail could not start a sandbox"), std::string::npos) << c.body;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(350));  // the window closes
  Reply c = Call("POST", "/v1/sandboxes", Json{{"subject", "user-1"}}.dump());
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.json["data"]["backend"], "docker");
  EXPECT_EQ(c.json["data"]["reason"], "AUTO_ROLLBACK");
  const std::string id = c.json["data"]["id"];
  EXPECT_EQ(Exec(id, "echo rolled back"), "rolled back\n");
  Reply info = Call("GET", "/v1/info");
  EXPECT_EQ(info.json["data"]["breaker"]["state"], "open") << info.body;
  const std::string metrics = Call("GET", "/metrics").body;
  EXPECT_NE(metrics.find("agentbox_breaker_state{backend=\"jail\"} 1"), std::string::npos)
      << metrics;
  EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id).status, 200);
}

TEST_F(SelectionTest, RuntimeFlagsChangeDecisionsAtOnceAndSurviveARestart) {
  StartDaemon({{"SANDBOX_BACKEND", "docker"},
               {"AGENTBOX_ROLLOUT_BACKEND", "jail"},
               {"AGENTBOX_ROLLOUT_PERCENTAGE", "100"}});
  Reply c = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.json["data"]["backend"], "jail");
  std::vector<std::string> ids = {c.json["data"]["id"]};
  const std::string v1 = Call("GET", "/v1/info").json["data"]["config_version"];

  // The kill switch, flipped at runtime: the next sandbox goes to the baseline.
  Reply put = Call("PUT", "/v1/flags", R"({"flags":{"AGENTBOX_ROLLOUT_KILL_SWITCH":true}})");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.json["data"]["flags"]["AGENTBOX_ROLLOUT_KILL_SWITCH"], "true");
  EXPECT_EQ(put.json["data"]["decision"]["reason"], "DISABLED");
  const std::string v2 = put.json["data"]["config_version"];
  EXPECT_NE(v2, v1);
  c = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.json["data"]["backend"], "docker");
  EXPECT_EQ(c.json["data"]["reason"], "DISABLED");
  ids.push_back(c.json["data"]["id"]);
  Reply info = Call("GET", "/v1/info");
  EXPECT_EQ(info.json["data"]["settings"]["rollout"]["kill_switch"], true);

  // Refused, and nothing changes: a value that does not parse, a key that is not a flag, junk.
  Reply bad = Call("PUT", "/v1/flags", R"({"flags":{"AGENTBOX_ROLLOUT_PERCENTAGE":"lots"}})");
  EXPECT_EQ(bad.status, 422) << bad.body;
  EXPECT_NE(bad.body.find("AGENTBOX_ROLLOUT_PERCENTAGE"), std::string::npos) << bad.body;
  Reply not_flag = Call("PUT", "/v1/flags", R"({"flags":{"AGENTBOX_LISTEN":"tcp:0.0.0.0:1"}})");
  EXPECT_EQ(not_flag.status, 422) << not_flag.body;
  for (const char* junk : {"[]", "{\"flags\":1}", "{\"flags\":{\"SANDBOX_BACKEND\":[1]}}", "{"}) {
    EXPECT_GE(Call("PUT", "/v1/flags", junk).status, 400) << junk;
  }
  EXPECT_EQ(Call("GET", "/v1/info").json["data"]["config_version"], v2);
  EXPECT_EQ(Call("DELETE", "/v1/flags").status, 405);

  // Kept across a restart, from the state directory.
  StopDaemon();
  StartDaemon({{"SANDBOX_BACKEND", "docker"},
               {"AGENTBOX_ROLLOUT_BACKEND", "jail"},
               {"AGENTBOX_ROLLOUT_PERCENTAGE", "100"}});
  Reply flags = Call("GET", "/v1/flags");
  ASSERT_EQ(flags.status, 200) << flags.body;
  EXPECT_EQ(flags.json["data"]["flags"]["AGENTBOX_ROLLOUT_KILL_SWITCH"], "true");
  EXPECT_EQ(Call("GET", "/v1/info").json["data"]["reason"], "DISABLED");

  // null removes a flag: the file's and environment's value is back.
  put = Call("PUT", "/v1/flags", R"({"flags":{"AGENTBOX_ROLLOUT_KILL_SWITCH":null}})");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_TRUE(put.json["data"]["flags"].empty());
  c = Call("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(c.json["data"]["backend"], "jail");
  ids.push_back(c.json["data"]["id"]);
  for (const auto& id : ids) {
    EXPECT_EQ(Call("DELETE", "/v1/sandboxes/" + id).status, 200);
  }
}

}  // namespace
}  // namespace agentbox::daemon
