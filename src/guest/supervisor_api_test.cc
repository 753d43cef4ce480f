// /api/v1/supervisor/* end to end: a real agentbox-guest with services, libcurl as the client
// (the shapes are ai-manus's; docs/guest-api.md, "Supervisor"). Also the parsing of services.
#include <curl/curl.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "guest/supervisor/service_supervisor.h"

extern char** environ;

namespace agentbox::guest {
namespace {

namespace fs = std::filesystem;
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

struct Reply {
  long status = 0;
  Json json;
};

size_t Collect(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One agentbox-guest on a unix socket in a temporary directory, with `extra` arguments and
// `env` added to the environment; stopped and removed by the destructor.
class Guest {
 public:
  Guest(std::vector<std::string> extra, std::map<std::string, std::string> env) {
    char tmpl[] = "/tmp/agentbox-supervisor-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
      return;
    }
    root_ = tmpl;
    socket_ = root_ + "/g.sock";
    log_ = root_ + "/guest.log";
    fs::create_directories(root_ + "/work");
    std::vector<std::string> args = {AGENTBOX_GUEST_BIN, "serve",     "--listen",
                                     "unix:" + socket_,  "--workdir", root_ + "/work"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) {
      envs.emplace_back(*e);
    }
    for (const auto& [k, v] : env) {
      envs.push_back(k + "=" + v);
    }
    std::vector<char*> envp;
    for (auto& e : envs) {
      envp.push_back(e.data());
    }
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      ADD_FAILURE() << "posix_spawn: " << std::strerror(rc);
      pid_ = 0;
    }
  }

  ~Guest() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 250 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (::waitpid(pid_, &status, WNOHANG) == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // Polls /api/v1/health until the guest answers; false (with its log) if it exits first.
  bool Ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (Call("GET", "/api/v1/health").status != 200) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return false;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "guest not ready:\n" << ReadAll(log_);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  Reply Call(const std::string& method, const std::string& path,
             const std::optional<std::string>& body = std::nullopt) {
    Reply r;
    std::string out;
    CURL* c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
    const std::string url = "http://guest" + path;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_slist* headers = nullptr;
    if (method != "GET") {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
      const std::string& b = body ? *body : std::string();
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(b.size()));
      curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, b.c_str());
      if (body) {
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
      }
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (curl_easy_perform(c) == CURLE_OK) {
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    r.json = Json::parse(out, nullptr, false);
    return r;
  }

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

  pid_t pid() const { return pid_; }
  int exit_code() const { return exit_code_; }
  std::string log() const { return ReadAll(log_); }

 private:
  std::string root_, socket_, log_;
  pid_t pid_ = 0;
  bool exited_ = false;
  int exit_code_ = -1;
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
