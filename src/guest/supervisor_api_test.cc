// /api/v1/supervisor/* end to end: a real agentbox-guest with services, libcurl as the client
// (the shapes are ai-manus's; docs/guest-api.md, "Supervisor"). Also the parsing of services.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fakes/guest_child.h"
#include "guest/supervisor/service_supervisor.h"

namespace agentbox::guest {
namespace {

using Json = nlohmann::json;

TEST(ServiceSpecs, ParsesFlagsAndJson) {
  auto s = ParseServiceFlag("web=python3 -m http.server 8000");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->name, "web");
  EXPECT_EQ(s->command, "python3 -m http.server 8000");
  EXPECT_FALSE(ParseServiceFlag("no-equals"));
  auto j = ParseServicesJson(R"({"a": "sleep 1", "b": "x=1 y"})");
  ASSERT_TRUE(j);
  ASSERT_EQ(j->size(), 2u);
  EXPECT_EQ((*j)[1].command, "x=1 y");
  EXPECT_FALSE(ParseServicesJson("[1]"));
  EXPECT_FALSE(ParseServicesJson(R"({"a": 1})"));
  EXPECT_FALSE(ParseServicesJson("{"));
}

TEST(ServiceSpecs, ChecksNamesAndCommands) {
  EXPECT_TRUE(CheckServices({{"web", "x"}, {"db.1_x-y", "y"}}));
  for (const auto& bad : std::vector<std::vector<ServiceSpec>>{
           {{"", "x"}},
           {{"has space", "x"}},
           {{std::string(65, 'a'), "x"}},
           {{"agentbox-guest", "x"}},
           {{"a", "x"}, {"a", "y"}},
           {{"a", ""}}}) {
    auto r = CheckServices(bad);
    ASSERT_FALSE(r) << bad.front().name;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_FALSE(r.error().message.empty());
  }
}

// One agentbox-guest (tests/fakes/guest_child.h) with `extra` arguments and `env` added to the
// environment, and the supervisor's status by name.
class Guest : public test_support::GuestChild {
 public:
  Guest(std::vector<std::string> extra, const std::map<std::string, std::string>& env)
      : GuestChild(AGENTBOX_GUEST_BIN, "agentbox-supervisor", std::move(extra), env) {}

  // name -> status entry of GET /api/v1/supervisor/status.
  std::map<std::string, Json> Status() {
    std::map<std::string, Json> m;
    auto r = Call("GET", "/api/v1/supervisor/status");
    EXPECT_EQ(r.status, 200) << r.json.dump();
    if (r.json.is_object() && r.json["data"].is_array()) {
      for (const auto& e : r.json["data"]) {
        m[e["name"].get<std::string>()] = e;
      }
    }
    return m;
  }
};

bool Alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

TEST(Supervisor, StatusListsTheGuestAndItsServicesInSupervisordShape) {
  Guest g({"--service", "web=sleep 600"}, {{"AGENTBOX_SERVICES", R"({"bad": "exit 3"})"}});
  ASSERT_TRUE(g.Ready()) << g.log();
  auto r = g.Call("GET", "/api/v1/supervisor/status");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json["success"], true);
  EXPECT_EQ(r.json["message"], "Services status retrieved successfully");
  ASSERT_TRUE(r.json["data"].is_array());
  ASSERT_EQ(r.json["data"].size(), 3u);
  const Json& guest = r.json["data"][0];
  EXPECT_EQ(guest["name"], "agentbox-guest");
  EXPECT_EQ(guest["statename"], "RUNNING");
  EXPECT_EQ(guest["state"], 20);
  EXPECT_EQ(guest["pid"], g.pid());
  for (const char* key : {"name", "group", "description", "start", "stop", "now", "state",
                          "statename", "spawnerr", "exitstatus", "logfile", "stdout_logfile",
                          "stderr_logfile", "pid"}) {
    EXPECT_TRUE(guest.contains(key)) << key;
  }
  EXPECT_EQ(guest.size(), 14u);
  // The service that exits by itself reads EXITED with its status.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto st = g.Status();
  while (st["bad"]["statename"] != "EXITED" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    st = g.Status();
  }
  EXPECT_EQ(st["bad"]["statename"], "EXITED");
  EXPECT_EQ(st["bad"]["state"], 100);
  EXPECT_EQ(st["bad"]["exitstatus"], 3);
  EXPECT_EQ(st["web"]["statename"], "RUNNING");
  EXPECT_TRUE(Alive(st["web"]["pid"].get<pid_t>()));
  EXPECT_NE(st["web"]["description"].get<std::string>().find("uptime"), std::string::npos);
  // The services' configuration is the guest's, not the sessions' environment.
  auto run = g.Call("POST", "/api/v1/shell/run",
                    R"({"command": "echo ${AGENTBOX_SERVICES-unset}"})");
  EXPECT_EQ(run.json["data"]["stdout"], "unset\n") << run.json.dump();
  // Services are background processes of their own session: their logs are readable.
  auto procs = g.Call("POST", "/api/v1/process/list", R"({"session_id": "service:web"})");
  ASSERT_EQ(procs.json["data"].size(), 1u) << procs.json.dump();
  EXPECT_EQ(procs.json["data"][0]["command"], "sleep 600");
}

TEST(Supervisor, StopShutdownAndRestartActOnServicesOnly) {
  Guest g({"--service", "web=sleep 600", "--service", "tick=while :; do sleep 1; done"}, {});
  ASSERT_TRUE(g.Ready()) << g.log();
  auto st = g.Status();
  const pid_t web = st["web"]["pid"].get<pid_t>();
  ASSERT_TRUE(Alive(web));

  auto r = g.Call("POST", "/api/v1/supervisor/stop");
  ASSERT_EQ(r.status, 200) << r.json.dump();
  EXPECT_EQ(r.json["message"], "All services stopped");
  EXPECT_EQ(r.json["data"],
            Json::parse(R"({"status": "stopped", "result": ["web", "tick"], "stop_result": null,
                            "start_result": null, "shutdown_result": null})"));
  EXPECT_FALSE(Alive(web));  // answered once the service had ended
  st = g.Status();
  EXPECT_EQ(st["web"]["statename"], "STOPPED");
  EXPECT_EQ(st["tick"]["statename"], "STOPPED");
  EXPECT_EQ(st["agentbox-guest"]["statename"], "RUNNING");
  EXPECT_EQ(g.Call("GET", "/api/v1/health").status, 200);

  r = g.Call("POST", "/api/v1/supervisor/restart", "{}");
  ASSERT_EQ(r.status, 200) << r.json.dump();
  EXPECT_EQ(r.json["data"]["status"], "restarted");
  EXPECT_EQ(r.json["data"]["stop_result"], Json::array());
  EXPECT_EQ(r.json["data"]["start_result"], Json::parse(R"(["web", "tick"])"));
  st = g.Status();
  EXPECT_EQ(st["web"]["statename"], "RUNNING");
  const pid_t web2 = st["web"]["pid"].get<pid_t>();
  EXPECT_NE(web2, web);
  EXPECT_TRUE(Alive(web2));

  r = g.Call("POST", "/api/v1/supervisor/restart");  // running services are stopped first
  EXPECT_EQ(r.json["data"]["stop_result"], Json::parse(R"(["web", "tick"])"));
  EXPECT_FALSE(Alive(web2));

  r = g.Call("POST", "/api/v1/supervisor/shutdown");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json["data"]["status"], "shutdown");
  EXPECT_EQ(r.json["data"]["shutdown_result"], Json::parse(R"(["web", "tick"])"));
  // The guest itself never goes: it is the way back into the sandbox.
  EXPECT_TRUE(Alive(g.pid()));
  EXPECT_EQ(g.Call("POST", "/api/v1/shell/run", R"({"command": "echo up"})").json["data"]["stdout"],
            "up\n");
  EXPECT_EQ(g.Status()["agentbox-guest"]["statename"], "RUNNING");
}

TEST(Supervisor, WithoutServicesOnlyTheGuestIsListed) {
  Guest g({}, {});
  ASSERT_TRUE(g.Ready()) << g.log();
  auto st = g.Status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st["agentbox-guest"]["statename"], "RUNNING");
  auto r = g.Call("POST", "/api/v1/supervisor/stop");
  EXPECT_EQ(r.json["data"]["result"], Json::array());
}

TEST(Supervisor, TimeoutEndpointsSayThereIsNoDaemonToAsk) {
  Guest g({}, {});
  ASSERT_TRUE(g.Ready()) << g.log();
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/api/v1/supervisor/timeout/status"},
           {"POST", "/api/v1/supervisor/timeout/activate"},
           {"POST", "/api/v1/supervisor/timeout/extend"},
           {"POST", "/api/v1/supervisor/timeout/cancel"}}) {
    auto r = g.Call(method, path, method == "POST" ? std::optional<std::string>(R"({"minutes": 5})")
                                                   : std::nullopt);
    EXPECT_EQ(r.status, 503) << path;
    EXPECT_EQ(r.json["success"], false) << path;
    EXPECT_NE(r.json["message"].get<std::string>().find("no agentboxd to ask"), std::string::npos)
        << r.json.dump();
  }
}

TEST(Supervisor, WrongMethodsUnknownPathsAndBadBodies) {
  Guest g({}, {});
  ASSERT_TRUE(g.Ready()) << g.log();
  EXPECT_EQ(g.Call("POST", "/api/v1/supervisor/status").status, 405);
  EXPECT_EQ(g.Call("GET", "/api/v1/supervisor/stop").status, 405);
  EXPECT_EQ(g.Call("GET", "/api/v1/supervisor/nope").status, 404);
  auto r = g.Call("POST", "/api/v1/supervisor/stop", "[1]");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json["success"], false);
  EXPECT_EQ(g.Call("POST", "/api/v1/supervisor/stop", "").status, 200);
}

TEST(Supervisor, BadServiceConfigurationStopsTheGuestWithAMessage) {
  {
    Guest g({"--service", "agentbox-guest=sleep 1"}, {});
    EXPECT_FALSE(g.Ready());
    EXPECT_EQ(g.exit_code(), 2);
    EXPECT_NE(g.log().find("reserved"), std::string::npos) << g.log();
  }
  {
    Guest g({}, {{"AGENTBOX_SERVICES", "not json"}});
    EXPECT_FALSE(g.Ready());
    EXPECT_EQ(g.exit_code(), 2);
    EXPECT_NE(g.log().find("AGENTBOX_SERVICES"), std::string::npos) << g.log();
  }
}

}  // namespace
}  // namespace agentbox::guest

namespace agentbox::guest {
namespace {

// The messages ai-manus's sandbox API answers with, for clients that show or check them.
TEST(AiManusCompat, MessagesAreTheOriginals) {
  Guest g({}, {});
  ASSERT_TRUE(g.Ready()) << g.log();
  auto msg = [&](const std::string& path, const std::string& body) {
    return g.Call("POST", path, body).json.value("message", "");
  };
  EXPECT_EQ(msg("/api/v1/shell/exec", R"({"id": "m", "exec_dir": "/", "command": "true"})"),
            "Command executed");
  EXPECT_EQ(msg("/api/v1/shell/view", R"({"id": "m"})"), "Session content retrieved successfully");
  EXPECT_EQ(msg("/api/v1/shell/wait", R"({"id": "m"})"), "Process completed, return code: 0");
  EXPECT_EQ(msg("/api/v1/shell/kill", R"({"id": "m"})"), "Process ended");
  EXPECT_EQ(msg("/api/v1/file/write", R"({"file": "/tmp/agentbox-m.txt", "content": "a\nb\na"})"),
            "File written successfully");
  EXPECT_EQ(msg("/api/v1/file/read", R"({"file": "/tmp/agentbox-m.txt"})"),
            "File read successfully");
  EXPECT_EQ(msg("/api/v1/file/search", R"({"file": "/tmp/agentbox-m.txt", "regex": "a"})"),
            "Search completed, found 2 matches");
  EXPECT_EQ(msg("/api/v1/file/find", R"({"path": "/tmp", "glob": "agentbox-m.txt"})"),
            "Search completed, found 1 files");
  EXPECT_EQ(msg("/api/v1/file/replace",
                R"({"file": "/tmp/agentbox-m.txt", "old_str": "a", "new_str": "c"})"),
            "Replacement completed, replaced 2 occurrences");
  // A line range reads as '\n'.join(lines[start:end]): no final newline.
  auto r = g.Call("POST", "/api/v1/file/read",
                  R"({"file": "/tmp/agentbox-m.txt", "start_line": 0, "end_line": 2})");
  EXPECT_EQ(r.json["data"]["content"], "c\nb");
  ::unlink("/tmp/agentbox-m.txt");
}

}  // namespace
}  // namespace agentbox::guest
