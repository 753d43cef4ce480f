// `agentbox conformance --backend B`: the rollout plan's "flag on, 0 %" step. Runs the checks an
// agent depends on against a live daemon, in a sandbox pinned to B (which needs no traffic), prints
// a pass/fail table, and records the verdict with the daemon (PUT /v1/backends/B/validation),
// which then refuses to raise B's share of new sandboxes while its last validation failed.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <random>

#include "cli/commands.h"
#include "cli/format.h"
#include "common/fs_util.h"
#include "common/unique_fd.h"

namespace agentbox::cli {

namespace {

struct Check {
  std::string name;
  std::string outcome;  // pass, FAIL, skip
  double ms = 0;
  std::string detail;
};

// A failed expectation inside a check.
struct Mismatch {
  std::string what;
};

class Runner {
 public:
  Runner(DaemonClient& client, std::string id) : client_(client), id_(std::move(id)) {}

  Json Guest(const std::string& endpoint, Json body) {
    auto r = client_.Call("POST", "/v1/sandboxes/" + id_ + "/api/v1/" + endpoint, &body);
    if (!r) {
      throw Mismatch{endpoint + ": " + r.error().message};
    }
    return *r;
  }
  // Expects `endpoint` to be refused with `status`.
  void GuestRefuses(const std::string& endpoint, Json body, long status) {
    auto r = client_.Send("POST", "/v1/sandboxes/" + id_ + "/api/v1/" + endpoint, &body);
    if (!r) {
      throw Mismatch{endpoint + ": " + r.error().message};
    }
    if (r->status != status) {
      throw Mismatch{endpoint + ": expected " + std::to_string(status) + ", got " +
                     std::to_string(r->status)};
    }
  }
  std::string Exec(const std::string& session, const std::string& command, int wait_s = 30) {
    Json d = Guest("shell/exec", {{"id", session}, {"command", command}, {"wait_seconds", wait_s}});
    if (d.value("status", "") != "completed") {
      throw Mismatch{"'" + command + "' did not complete within " + std::to_string(wait_s) + " s"};
    }
    return d.value("output", "");
  }
  const std::string& id() const { return id_; }
  DaemonClient& client() { return client_; }

 private:
  DaemonClient& client_;
  std::string id_;
};

void Expect(bool ok, const std::string& what) {
  if (!ok) {
    throw Mismatch{what};
  }
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

int Conformance(DaemonClient& client, const std::string& backend, bool json, bool record) {
  std::vector<Check> checks;
  auto run = [&](const std::string& name, const std::function<void()>& fn) {
    Check c{name, "pass", 0, ""};
    const auto start = std::chrono::steady_clock::now();
    try {
      fn();
    } catch (const Mismatch& m) {
      c.outcome = "FAIL";
      c.detail = m.what;
    } catch (const std::exception& e) {
      c.outcome = "FAIL";
      c.detail = e.what();
    }
    c.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    checks.push_back(std::move(c));
  };

  // 1. create, pinned: the backend gets no traffic from the selector for this.
  std::string id;
  Json caps;
  run("create (pinned to " + backend + ")", [&] {
    Json body = {{"backend", backend},
                 {"ttl_s", 600},
                 {"labels", {{"agentbox.purpose", "conformance"}}}};
    auto r = client.Call("POST", "/v1/sandboxes", &body);
    Expect(r.has_value(), r ? "" : r.error().message);
    id = r->value("id", "");
    Expect(r->value("backend", "") == backend,
           "created on " + r->value("backend", "") + ", not " + backend);
  });
  if (id.empty()) {
    for (const char* n : {"exec", "session state", "exit status", "timeout", "files",
                          "upload and download", "background process", "destroy"}) {
      checks.push_back({n, "FAIL", 0, "no sandbox"});
    }
  } else {
    if (auto info = client.Call("GET", "/v1/info"); info && (*info)["backends"].contains(backend)) {
      caps = (*info)["backends"][backend].value("capabilities", Json::object());
    }
    Runner g(client, id);
    run("exec", [&] {
      const std::string out = g.Exec("c1", "echo conformance-$((6*7))");
      Expect(out == "conformance-42\n", "output " + Quote(out));
    });
    run("session state", [&] {
      g.Exec("c2",
             "mkdir -p /tmp/cf && cd /tmp/cf && export CF_ENV=e1 && CF_VAR=v1 && "
             "cf_fn() { echo fn-$1; } && alias cfa='echo alias-ok'");
      const std::string out = g.Exec("c2", "pwd; echo $CF_ENV $CF_VAR; cf_fn x; cfa");
      Expect(out == "/tmp/cf\ne1 v1\nfn-x\nalias-ok\n", "cwd/env/var/function/alias lost: " + Quote(out));
      const std::string other = g.Exec("c3", "echo ${CF_VAR:-unset}");
      Expect(other == "unset\n", "state leaked into another session: " + Quote(other));
    });
    run("exit status", [&] {
      Json d = g.Guest("shell/exec", {{"id", "c4"}, {"command", "(exit 7)"}, {"wait_seconds", 30}});
      Expect(d.value("returncode", -1) == 7, "returncode " + d["returncode"].dump());
      Json r = g.Guest("shell/run", {{"session_id", "c4"}, {"command", "echo out; echo err >&2; false"}});
      Expect(r.value("stdout", "") == "out\n" && r.value("stderr", "") == "err\n" &&
                 r.value("exit_code", -1) == 1,
             "shell/run " + r.dump());
    });
    run("timeout", [&] {
      Json d = g.Guest("shell/exec", {{"id", "c5"}, {"command", "sleep 30"}, {"wait_seconds", 20},
                                      {"timeout", 1}});
      Expect(d.value("returncode", -1) == 124 && d.value("timed_out", false),
             "a 1 s timeout on sleep 30 gave " + d.dump());
      Expect(g.Exec("c5", "echo alive") == "alive\n", "the session did not survive its timeout");
    });
    run("files", [&] {
      g.Guest("file/write", {{"file", "/workspace/cf/a.txt"}, {"content", "one\ntwo\nthree\n"}});
      Json rd = g.Guest("file/read", {{"file", "/workspace/cf/a.txt"}, {"start_line", 1}, {"end_line", 3}});
      Expect(rd.value("content", "").find("two") != std::string::npos &&
                 rd.value("content", "").find("one") == std::string::npos,
             "line range read " + Quote(rd.value("content", "")));
      Json rp = g.Guest("file/replace", {{"file", "/workspace/cf/a.txt"}, {"old_str", "two"}, {"new_str", "2"}});
      Expect(rp.value("replaced_count", 0) == 1, "replace " + rp.dump());
      Json se = g.Guest("file/search", {{"file", "/workspace/cf/a.txt"}, {"regex", "^t"}});
      Expect(se["line_numbers"] == Json::array({2}), "search " + se.dump());
      Json fi = g.Guest("file/find", {{"path", "/workspace"}, {"glob", "**/*.txt"}});
      Expect(fi["files"].size() == 1, "find " + fi.dump());
      Json ex = g.Guest("file/exists", {{"path", "/workspace/cf/a.txt"}});
      Expect(ex.value("exists", false), "exists " + ex.dump());
      g.Guest("file/delete", {{"path", "/workspace/cf"}, {"recursive", true}});
      Json gone = g.Guest("file/exists", {{"path", "/workspace/cf"}});
      Expect(!gone.value("exists", true), "delete left " + gone.dump());
      g.GuestRefuses("file/read", {{"file", "/workspace/does-not-exist"}}, 404);
    });
    run("upload and download", [&] {
      char up[] = "/tmp/agentbox-cf-up.XXXXXX";
      char down[] = "/tmp/agentbox-cf-down.XXXXXX";
      UniqueFd ufd(::mkstemp(up));
      UniqueFd dfd(::mkstemp(down));
      Expect(ufd.Get() >= 0 && dfd.Get() >= 0, "temporary files");
      std::string data(1 << 20, '\0');
      std::mt19937 rng(42);
      for (auto& ch : data) ch = static_cast<char>(rng());
      Expect(::write(ufd.Get(), data.data(), data.size()) == static_cast<ssize_t>(data.size()),
             "write temporary file");
      auto u = client.Upload("/v1/sandboxes/" + id + "/api/v1/file/upload?path=/workspace/cf.bin", up);
      auto d = u ? client.Download("/v1/sandboxes/" + id + "/api/v1/file/download?path=/workspace/cf.bin",
                                   dfd.Get())
                 : Result<void>(Fail(u.error()));
      auto back = d ? ReadSmallFile(down, 2 << 20) : Result<std::string>(Fail(d.error()));
      ::unlink(up);
      ::unlink(down);
      Expect(back.has_value(), back ? "" : back.error().message);
      Expect(*back == data, "1 MiB came back different (" + std::to_string(back->size()) + " bytes)");
    });
    if (caps.is_object() && !caps.value("background_processes", true)) {
      checks.push_back({"background process", "skip", 0,
                        backend + " says it has no background processes (capabilities)"});
    } else {
      run("background process", [&] {
        Json p = g.Guest("process/start", {{"session_id", "c6"}, {"command", "echo started; sleep 60"}});
        const int64_t pid = p.value("pid", int64_t{0});
        Expect(pid > 0, "start " + p.dump());
        bool running = false;
        for (const auto& e : g.Guest("process/list", {{"session_id", "c6"}})) {
          running |= e.value("pid", int64_t{0}) == pid && e.value("running", false);
        }
        Expect(running, "not listed as running");
        Json logs;
        for (int i = 0; i < 100; ++i) {  // its output reaches the log within 10 s
          logs = g.Guest("process/logs", {{"pid", pid}});
          if (logs.value("output", "").find("started") != std::string::npos) {
            break;
          }
          ::usleep(100 * 1000);
        }
        Expect(logs.value("output", "").find("started") != std::string::npos, "logs " + logs.dump());
        Json k = g.Guest("process/kill", {{"pid", pid}});
        Expect(k.value("killed_count", 0) == 1, "kill " + k.dump());
        bool ended = false;
        for (int i = 0; i < 100 && !ended; ++i) {
          for (const auto& e : g.Guest("process/list", {{"session_id", "c6"}})) {
            ended |= e.value("pid", int64_t{0}) == pid && !e.value("running", true);
          }
          if (!ended) {
            ::usleep(100 * 1000);
          }
        }
        Expect(ended, "still running after kill");
      });
    }
    run("destroy", [&] {
      auto r = client.Send("DELETE", "/v1/sandboxes/" + id, nullptr);
      Expect(r && r->ok(), r ? "status " + std::to_string(r->status) : r.error().message);
      auto after = client.Send("GET", "/v1/sandboxes/" + id, nullptr);
      Expect(after && after->status == 404, "still there after destroy");
    });
  }

  bool passed = true;
  Json list = Json::array();
  for (const auto& c : checks) {
    passed &= c.outcome != "FAIL";
    list.push_back({{"name", c.name}, {"outcome", c.outcome}, {"ms", c.ms}, {"detail", c.detail}});
  }
  std::string recorded;
  if (record) {
    Json body = {{"passed", passed}, {"checks", list}};
    auto r = client.Call("PUT", "/v1/backends/" + backend + "/validation", &body);
    recorded = r ? "recorded with the daemon" : "NOT recorded: " + r.error().message;
  }
  if (json) {
    std::cout << Json({{"backend", backend}, {"passed", passed}, {"checks", list},
                       {"recorded", recorded}})
                     .dump(2)
              << "\n";
  } else {
    std::vector<std::vector<std::string>> rows = {{"CHECK", "RESULT", "MS", "DETAIL"}};
    for (const auto& c : checks) {
      char ms[32];
      std::snprintf(ms, sizeof ms, "%.0f", c.ms);
      rows.push_back({c.name, c.outcome, ms, c.detail});
    }
    PrintTable(rows, std::cout);
    std::cout << backend << ": " << (passed ? "PASSED" : "FAILED")
              << (recorded.empty() ? "" : " (" + recorded + ")") << "\n";
  }
  return passed ? 0 : 1;
}

}  // namespace agentbox::cli
