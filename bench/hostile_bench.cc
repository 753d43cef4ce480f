// Hostile sandboxes (issue 10 §4, docs/reliability.md): one sandbox attacks (floods output,
// creates files until its limits, answers the daemon with huge, endless, slow or malformed HTTP,
// forks until its limit, fills /tmp and its disk, floods its log) while another sandbox's exec
// latency is measured. Prints, per attack, the victim's exec p99 quiet (measured again just
// before the attack) and under attack, the raw ratio, the daemon's resident memory growth, and
// what the attacker got back. Fails (exit 1) when the victim's p99 exceeds --max-ratio times its
// quiet value (a quiet p99 under --floor-ms counting as --floor-ms: the raw ratio is printed
// beside it and marked OVER past --max-ratio), the daemon's memory grows by more than
// --max-rss-growth-mb during an attack, the daemon dies, or the attacker gets no clear error.
//
//   agentbox-hostile-bench                              # every attack, full size
//   agentbox-hostile-bench --short                      # CI (ctest): smaller floods
//   BACKEND=docker agentbox-hostile-bench               # the same against docker sandboxes
#include <CLI/CLI.hpp>
#include <atomic>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include "reliability_harness.h"

namespace {

using reliability::Answer;
using reliability::Client;
using reliability::Json;
using reliability::Percentile;
using reliability::SteadyClock;
using namespace std::chrono_literals;

// A stand-in for the guest, run inside the attacking sandbox: it unlinks the guest's socket,
// binds its own in its place (the sandbox can write that directory) and answers every request
// the daemon sends it according to its mode.
constexpr const char* kEvilGuest = R"PY(
import os, socket, sys, threading, time
mode = sys.argv[1]
path = "/run/agentbox/guest.sock"
try:
    os.unlink(path)
except FileNotFoundError:
    pass
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o660)
srv.listen(128)
open("/tmp/evil.ready", "w").close()

def serve(c):
    try:
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        if mode == "headers":
            c.sendall(b"HTTP/1.1 200 OK\r\n")
            line = b"X-Flood: " + b"a" * 1000 + b"\r\n"
            while True:
                c.sendall(line * 64)
        elif mode == "body":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000000000\r\n\r\n")
            chunk = b"x" * 65536
            while True:
                c.sendall(chunk)
        elif mode == "chunked":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
            while True:
                c.sendall(chunk)
        elif mode == "slow":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            for b in head + b"x" * 1000:
                c.sendall(bytes([b]))
                time.sleep(0.2)
        elif mode == "garbage":
            c.sendall(os.urandom(65536))
        elif mode == "silent":
            time.sleep(600)
    except OSError:
        pass
    finally:
        c.close()

while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)PY";

struct Options {
  std::string daemon = AGENTBOXD_BIN;
  std::string backend = "jail";  // or docker (also from $BACKEND)
  bool short_form = false;
  int probes = 200;      // victim execs per measurement
  double max_ratio = 3;  // victim p99 under attack / quiet
  int repeat = 1;        // runs of each attack (the median raw ratio is printed)
  // The pass criterion's floor: a quiet p99 below this counts as this (timer noise on a shared
  // host). The raw ratio (against the quiet p99 as measured) is printed beside it; 0: no floor.
  double floor_ms = 20;
  // The daemon holds at most 128 MiB of one guest's answers at once (http/guest_budget.h), in
  // pieces of at most 1 MiB each (http/pieces_body.h: no doubling copies): guest_chunked peaked
  // at +124 to +141 MiB over nine runs on 2026-12-05 (+228 to +334 MiB while bodies were strings
  // that doubled; +1,216 MiB before the bound). 192: the bound, a piece per call in flight, and
  // what the allocator keeps.
  long max_rss_growth_mb = 192;
  std::string only;          // run one attack
  std::string flood = "2G";  // bytes of an exec's stdout flood (head -c)
  std::string attacker_limits =
      R"({"cpus":1,"pids":256,"memory_mb":512,"tmp_mb":256,"disk_bytes":268435456})";
};

// What one attack did.
struct Outcome {
  std::string attacker;      // what the attacker got back, summarised
  bool clear_error = false;  // the attacker was told (truncation, status with a message)
  std::map<std::string, long> statuses;
};

class Bench {
 public:
  Bench(Options o, crash::Daemon& d) : o_(std::move(o)), d_(d), victim_client_(d.socket()) {}

  bool Setup() {
    const Answer v = victim_client_.Call("POST", "/v1/sandboxes", R"({"ttl_s":3600})", 120);
    victim_ = v.data().value("id", "");
    if (victim_.empty()) {
      std::cerr << "victim create failed: " << v.body << "\n";
      return false;
    }
    Probe(20);  // warm: session shell started, connections pooled
    const auto quiet = Probe(o_.probes);
    quiet_p50_ = Percentile(quiet, 0.5);
    quiet_p99_ = Percentile(quiet, 0.99);
    std::printf("victim quiet: p50=%.1f ms p99=%.1f ms over %d execs\n", quiet_p50_, quiet_p99_,
                o_.probes);
    return true;
  }

  using Attack = std::function<void(const std::string& id, std::atomic<bool>& stop, Outcome&)>;

  // Runs `attack` --repeat times, each in a fresh attacker sandbox, and prints the median raw
  // ratio: one p99 of 200 sub-millisecond calls moves 2-3x between two quiet measurements on
  // this shared machine, so the target (within 3x) is judged on the median.
  int Run(const std::string& name, const Attack& attack) {
    if (!o_.only.empty() && ("," + o_.only + ",").find("," + name + ",") == std::string::npos) {
      return 0;
    }
    int failures = 0;
    std::vector<double> raw;
    for (int i = 0; i < std::max(1, o_.repeat); ++i) {
      double r = 0;
      failures += RunOnce(name, attack, r);
      raw.push_back(r);
    }
    const double median = Percentile(raw, 0.5);
    medians_.emplace_back(name, median);
    if (raw.size() > 1) {
      std::string all;
      for (const double r : raw) {
        all += (all.empty() ? "" : ", ") + Fixed(r);
      }
      std::printf("[ median  ] %-16s raw ratio %.2f%s over %zu runs (%s)\n", name.c_str(), median,
                  median > o_.max_ratio ? " OVER" : "", raw.size(), all.c_str());
    }
    return failures;
  }

  // The attacks whose median raw ratio is past --max-ratio.
  void Summary() const {
    std::string over;
    for (const auto& [name, median] : medians_) {
      if (median > o_.max_ratio) {
        over += " " + name + " (" + Fixed(median) + ")";
      }
    }
    std::printf("[ summary ] median raw ratio past %.1f: %s\n", o_.max_ratio,
                over.empty() ? "none" : over.c_str());
  }

  // One run of `attack` in a fresh attacker sandbox: `attack` begins it (it may keep threads
  // busy until `stop` is set) and fills the outcome. `raw_ratio`: the victim's p99 under attack
  // over its quiet p99 just before.
  int RunOnce(const std::string& name, const Attack& attack, double& raw_ratio_out) {
    Client c(d_.socket());
    const Answer made = c.Call("POST", "/v1/sandboxes",
                               R"({"ttl_s":3600,"limits":)" + o_.attacker_limits + "}", 120);
    const std::string id = made.data().value("id", "");
    if (id.empty()) {
      std::printf("%s: attacker create failed: %s\n", name.c_str(), made.body.c_str());
      return 1;
    }
    // The victim's quiet p99 again, just before this attack: on a shared machine the load of
    // others drifts over the run, and the ratio compares like with like.
    const auto quiet = Probe(o_.probes);
    const double quiet_p99 = Percentile(quiet, 0.99);
    const long rss_before = reliability::SampleOf(d_.pid(), 0).rss_kb;
    std::atomic<long> rss_peak{rss_before};
    std::atomic<bool> stop{false};
    std::atomic<bool> sampling{true};
    std::thread sampler([&] {
      while (sampling) {
        rss_peak = std::max(rss_peak.load(), reliability::SampleOf(d_.pid(), 0).rss_kb);
        std::this_thread::sleep_for(100ms);
      }
    });
    Outcome out;
    std::thread attacker([&] { attack(id, stop, out); });
    std::this_thread::sleep_for(1500ms);  // the attack gets going
    const auto during = Probe(o_.probes);
    stop = true;
    attacker.join();
    sampling = false;
    sampler.join();
    c.Call("DELETE", "/v1/sandboxes/" + id, "", 120);
    const long rss_after = reliability::SampleOf(d_.pid(), 0).rss_kb;
    const bool alive = kill(d_.pid(), 0) == 0 &&
                       crash::Http(d_.socket(), "GET", "http://agentboxd/healthz").status == 200;
    const double p99 = Percentile(during, 0.99);
    const double raw_ratio = p99 / quiet_p99;
    raw_ratio_out = raw_ratio;
    const double ratio = p99 / std::max(quiet_p99, o_.floor_ms);
    const double growth_mb = static_cast<double>(rss_peak - rss_before) / 1024.0;
    const bool pass = alive && ratio <= o_.max_ratio &&
                      growth_mb <= static_cast<double>(o_.max_rss_growth_mb) && out.clear_error &&
                      during.size() == static_cast<size_t>(o_.probes);
    std::string statuses;
    for (const auto& [s, n] : out.statuses) {
      statuses += (statuses.empty() ? "" : ",") + s + "x" + std::to_string(n);
    }
    std::printf(
        "[ figures ] %-16s victim p50=%.1f ms p99=%.1f ms (quiet p50 %.1f p99 %.1f; raw ratio "
        "%.2f%s; ratio with the %.0f ms floor %.2f) daemon rss %+.1f MiB peak, %+.1f MiB after; "
        "attacker: %s [%s] %s\n",
        name.c_str(), Percentile(during, 0.5), p99, Percentile(quiet, 0.5), quiet_p99, raw_ratio,
        raw_ratio > o_.max_ratio ? " OVER" : "", o_.floor_ms, ratio, growth_mb,
        static_cast<double>(rss_after - rss_before) / 1024.0, out.attacker.c_str(),
        statuses.c_str(), pass ? "PASS" : "FAIL");
    if (!alive) {
      std::printf("  the daemon died: %s\n", d_.LogText().c_str());
    }
    std::fflush(stdout);
    return pass ? 0 : 1;
  }

  const Options& options() const { return o_; }

  // The victim goes with the bench: a stopped daemon leaves its sandboxes running.
  void Teardown() { victim_client_.Call("DELETE", "/v1/sandboxes/" + victim_, "", 120); }

 private:
  // Sequential `echo` execs in the victim; latencies of the successful ones.
  std::vector<double> Probe(int n) {
    std::vector<double> ms;
    for (int i = 0; i < n; ++i) {
      const Answer a =
          victim_client_.Call("POST", "/v1/sandboxes/" + victim_ + "/api/v1/shell/exec",
                              R"({"id":"probe","command":"echo ok","wait_seconds":30})");
      if (a.status == 200 && a.data().value("output", "") == "ok\n") {
        ms.push_back(a.ms);
      } else {
        std::printf("  victim exec failed: %ld %s\n", a.status, a.body.substr(0, 200).c_str());
      }
    }
    return ms;
  }

  static std::string Fixed(double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2f", v);
    return buf;
  }

  Options o_;
  std::vector<std::pair<std::string, double>> medians_;
  crash::Daemon& d_;
  Client victim_client_;
  std::string victim_;
  double quiet_p50_ = 0, quiet_p99_ = 0;
};

std::string Api(const std::string& id, const std::string& op) {
  return "/v1/sandboxes/" + id + "/api/v1/" + op;
}

// The entries of a file/list answer ({"success":true,"data":{"entries":[...],"truncated":b}})
// and its truncated flag, read with nlohmann's SAX interface: nothing of the answer is built.
// entries is -1 when the answer has no data.entries array.
struct ListCount {
  long entries = -1;
  bool truncated = false;
};

ListCount CountListed(const std::string& body) {
  struct Counter : nlohmann::json_sax<Json> {
    ListCount out;
    int depth = 0;          // objects and arrays open
    int entries_depth = 0;  // depth of the entries array once open, else 0
    std::string last_key;   // the last key at depth 2 (inside data)
    bool Value(bool is_true = false) {
      if (depth == 2 && last_key == "truncated") {
        out.truncated = is_true;
      }
      if (entries_depth != 0 && depth == entries_depth) {
        ++out.entries;
      }
      return true;
    }
    bool null() override { return Value(); }
    bool boolean(bool v) override { return Value(v); }
    bool number_integer(number_integer_t) override { return Value(); }
    bool number_unsigned(number_unsigned_t) override { return Value(); }
    bool number_float(number_float_t, const string_t&) override { return Value(); }
    bool string(string_t&) override { return Value(); }
    bool binary(binary_t&) override { return Value(); }
    bool start_object(std::size_t) override {
      Value();
      ++depth;
      return true;
    }
    bool end_object() override {
      --depth;
      return true;
    }
    bool start_array(std::size_t) override {
      if (depth == 2 && last_key == "entries") {
        out.entries = 0;
        ++depth;
        entries_depth = depth;
        return true;
      }
      Value();
      ++depth;
      return true;
    }
    bool end_array() override {
      if (depth == entries_depth) {
        entries_depth = 0;
      }
      --depth;
      return true;
    }
    bool key(string_t& k) override {
      if (depth == 2) {
        last_key = k;
      }
      return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
      return false;
    }
  } counter;
  if (!Json::sax_parse(body, &counter, Json::input_format_t::json, false)) {
    return {};
  }
  return counter.out;
}

void Count(Outcome& out, const Answer& a, std::mutex& mu) {
  std::lock_guard lock(mu);
  ++out.statuses[std::to_string(a.status)];
}

// The attacker's own calls while its guest socket answers as `mode` does: several at once, over
// and over, so that fresh connections reach the stand-in.
void EvilGuest(const std::string& socket, const std::string& id, const std::string& mode,
               std::atomic<bool>& stop, Outcome& out) {
  Client c(socket);
  const Answer py = c.Call("POST", Api(id, "shell/exec"),
                           R"({"command":"command -v python3","wait_seconds":10})");
  Answer started;
  if (!py.data().value("output", "").empty()) {
    c.Call("POST", Api(id, "file/write"),
           Json{{"file", "/tmp/evil.py"}, {"content", kEvilGuest}}.dump());
    started = c.Call("POST", Api(id, "process/start"),
                     Json{{"command", "exec python3 /tmp/evil.py " + mode}}.dump());
  } else {
    // No python3 in the image (docker's agentbox/base): the same stand-in, compiled and static,
    // in /workspace (docker mounts /tmp noexec).
    const std::string binary = crash::ReadFile(EVIL_GUEST_BIN);
    c.Call("POST", Api(id, "file/upload?path=/workspace/.evil-guest"), binary, 60,
           "application/octet-stream");
    const std::string path = "/workspace/.evil-guest";
    started =
        c.Call("POST", Api(id, "process/start"),
               Json{{"command", "chmod 755 " + path + " && exec " + path + " " + mode}}.dump());
  }
  bool ready = false;
  for (auto deadline = SteadyClock::now() + 10s; SteadyClock::now() < deadline;
       std::this_thread::sleep_for(100ms)) {
    const Answer r = c.Call("POST", Api(id, "file/read"), R"({"file":"/tmp/evil.ready"})", 5);
    if (r.status == 200) {
      ready = true;
      break;
    }
  }
  if (!ready) {
    const Answer logs = c.Call("POST", Api(id, "process/logs"),
                               Json{{"pid", started.data().value("pid", Json())}}.dump());
    out.attacker = "the stand-in guest did not start: " + started.body.substr(0, 200) + " " +
                   logs.body.substr(0, 300);
    return;
  }
  std::mutex mu;
  std::string last_error;
  std::vector<std::thread> callers;
  for (int k = 0; k < 20; ++k) {
    callers.emplace_back([&] {
      Client mine(socket);
      int calls = 0;
      while (!stop || calls == 0) {
        const Answer a = mine.Call("POST", Api(id, "shell/exec"),
                                   R"({"command":"echo hi","wait_seconds":1})", 60);
        ++calls;
        Count(out, a, mu);
        // Paced (about 200 calls/s in all): the attack is what the guest answers, not the
        // number of calls, which any client can make (and would slow every sandbox alike).
        std::this_thread::sleep_for(100ms);
        if (a.status >= 500 || a.status == 413) {
          std::lock_guard lock(mu);
          last_error = std::to_string(a.status) + " " + a.message();
        }
      }
    });
  }
  for (auto& t : callers) {
    t.join();
  }
  out.attacker = last_error.empty() ? "no error seen" : Json(last_error).dump();
  out.clear_error = !last_error.empty();
}

// The host file of a docker sandbox's container log.
std::string DockerLogPath(const std::string& id) {
  std::string path;
  if (FILE* p = ::popen(("docker inspect --format '{{.LogPath}}' agentbox-" + id).c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof(buf), p) != nullptr) {
      path += buf;
    }
    ::pclose(p);
  }
  while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) {
    path.pop_back();
  }
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"hostile sandboxes against agentboxd (docs/reliability.md)"};
  app.add_option("--daemon", o.daemon, "agentboxd binary");
  if (const char* b = std::getenv("BACKEND"); b != nullptr && *b != '\0') {
    o.backend = b;
  }
  app.add_option("--backend", o.backend, "backend of the sandboxes (jail, docker; $BACKEND)");
  app.add_flag("--short", o.short_form, "CI form: smaller floods, fewer probes");
  app.add_option("--probes", o.probes, "victim execs per measurement");
  app.add_option("--max-ratio", o.max_ratio, "victim p99 under attack / quiet allowed");
  app.add_option("--floor-ms", o.floor_ms, "quiet p99 floor for the ratio");
  app.add_option("--max-rss-growth-mb", o.max_rss_growth_mb, "daemon RSS growth allowed");
  app.add_option("--repeat", o.repeat, "runs of each attack; prints the median raw ratio");
  app.add_option("--only", o.only, "run these attacks (names, comma-separated)");
  app.add_option("--flood", o.flood, "bytes of the exec stdout flood (head -c syntax)");
  app.add_option("--attacker-limits", o.attacker_limits, "limits of the attacking sandboxes");
  CLI11_PARSE(app, argc, argv);
  if (o.short_form) {
    o.probes = std::min(o.probes, 60);
    o.flood = "256M";
  }
  curl_global_init(CURL_GLOBAL_ALL);
  crash::Daemon d(o.daemon, o.backend);
  if (const int rc = reliability::StartDaemon(d, o.backend); rc != 0) {
    return rc;
  }
  std::printf("backend: %s\n", o.backend.c_str());
  std::cout << "machine: " << reliability::MachineLine() << "\n";
  Bench b(o, d);
  if (!b.Setup()) {
    return 2;
  }
  const std::string sock = d.socket();
  int failures = 0;

  failures +=
      b.Run("exec_stdout", [&](const std::string& id, std::atomic<bool>& stop, Outcome& out) {
        Client c(sock);
        long calls = 0, truncated = 0;
        uint64_t largest = 0;
        while (!stop || calls == 0) {
          const Answer a = c.Call(
              "POST", Api(id, "shell/exec"),
              Json{{"id", "flood"},
                   {"command", "head -c " + o.flood + " /dev/zero | tr '\\0' a; echo; echo done"},
                   {"wait_seconds", 120}}
                  .dump(),
              180);
          ++calls;
          largest = std::max<uint64_t>(largest, c.received());
          const Json data = a.data();
          truncated += data.is_object() && data.value("output_truncated", false) ? 1 : 0;
          ++out.statuses[std::to_string(a.status)];
        }
        out.attacker = std::to_string(calls) + " execs of " + o.flood + ", " +
                       std::to_string(truncated) + " output_truncated, largest answer " +
                       std::to_string(largest) + " bytes";
        out.clear_error = truncated == calls;
      });

  failures +=
      b.Run("process_stdout", [&](const std::string& id, std::atomic<bool>& stop, Outcome& out) {
        Client c(sock);
        const Answer s =
            c.Call("POST", Api(id, "process/start"), R"({"command":"yes flood-flood-flood"})");
        const Json pid = s.data().value("pid", Json());
        bool truncated = false;
        uint64_t largest = 0;
        while (!stop) {
          const Answer l = c.Call("POST", Api(id, "process/logs"), Json{{"pid", pid}}.dump());
          largest = std::max<uint64_t>(largest, c.received());
          ++out.statuses[std::to_string(l.status)];
          truncated = truncated || l.data().value("truncated", false);
          std::this_thread::sleep_for(200ms);
        }
        c.Call("POST", Api(id, "process/kill"), Json{{"pid", pid}}.dump());
        out.attacker = std::string("background `yes`: logs ") +
                       (truncated ? "truncated: true" : "never truncated") + ", largest answer " +
                       std::to_string(largest) + " bytes";
        out.clear_error = truncated && largest < (4u << 20);
      });

  failures += b.Run("million_files", [&](const std::string& id, std::atomic<bool>& stop,
                                         Outcome& out) {
    Client c(sock);
    const Answer a = c.Call(
        "POST", Api(id, "shell/exec"),
        R"({"command":"mkdir -p /workspace/m && cd /workspace/m && (seq 1 1000000 | xargs touch) 2>&1 | head -1; ls -f | wc -l","wait_seconds":300})",
        360);
    ++out.statuses[std::to_string(a.status)];
    const std::string said = a.data().value("output", "");
    long listed = 0;
    bool truncated = false;
    while (!stop || listed == 0) {
      const Answer l = c.Call("POST", Api(id, "file/list"), R"({"path":"/workspace/m"})", 60);
      ++out.statuses[std::to_string(l.status)];
      // Every answer is read whole; the entries are counted (without building the answer: 4.7 MB
      // for 65,000 entries) in the first and the last only. Counting each took this harness, on
      // the victim's 2 cores, CPU that is neither the daemon's nor the sandbox's.
      if (!stop && listed != 0 && l.status == 200) {
        continue;
      }
      const ListCount n = CountListed(l.body);
      listed = n.entries;
      truncated = n.truncated;
      if (listed < 0) {
        break;
      }
    }
    out.attacker = "touch said " + Json(said.substr(0, 160)).dump() + "; file/list returned " +
                   std::to_string(listed) + " entries, truncated=" + (truncated ? "true" : "false");
    out.clear_error = said.find("No space left") != std::string::npos ||
                      said.find("1000000") != std::string::npos;
  });

  for (const std::string mode : {"headers", "body", "chunked", "garbage", "slow", "silent"}) {
    failures +=
        b.Run("guest_" + mode, [&, mode](const std::string& id, std::atomic<bool>& stop,
                                         Outcome& out) { EvilGuest(sock, id, mode, stop, out); });
  }

  failures += b.Run("fork_bomb", [&](const std::string& id, std::atomic<bool>& stop, Outcome& out) {
    Client c(sock);
    const Answer a = c.Call(
        "POST", Api(id, "shell/exec"),
        Json{
            {"command",
             "bomb() { bomb | bomb & }; bomb; sleep 3; echo pids=$(cat "
             "/sys/fs/cgroup/pids/pids.current /sys/fs/cgroup/pids.current 2>/dev/null | head -1)"},
            {"wait_seconds", 30},
            {"timeout", 25}}
            .dump(),
        60);
    ++out.statuses[std::to_string(a.status)];
    const std::string said = a.data().value("output", "");
    while (!stop) {
      std::this_thread::sleep_for(100ms);
    }
    const size_t at = said.find("pids=");
    const bool refused = said.find("Resource temporarily unavailable") != std::string::npos ||
                         said.find("retry") != std::string::npos;
    out.attacker = std::string(refused ? "fork refused (EAGAIN)" : "no fork error") + ", " +
                   (at == std::string::npos ? "pids=?" : said.substr(at, 12));
    out.clear_error = refused;
  });

  failures += b.Run("fill_tmp_disk", [&](const std::string& id, std::atomic<bool>& stop,
                                         Outcome& out) {
    Client c(sock);
    const Answer a = c.Call(
        "POST", Api(id, "shell/exec"),
        Json{{"command",
              "dd if=/dev/zero of=/tmp/fill bs=1M count=100000 2>&1 | grep -m1 -o 'No space left "
              "on device'; dd if=/dev/zero of=/workspace/fill bs=1M count=100000 2>&1 | grep -m1 "
              "-o 'No space left on device'; df -m /tmp /workspace | tail -2"},
             {"wait_seconds", 120}}
            .dump(),
        180);
    ++out.statuses[std::to_string(a.status)];
    const std::string said = a.data().value("output", "");
    while (!stop) {
      std::this_thread::sleep_for(100ms);
    }
    // And the attacker's next write fails with a clear error too.
    const Answer w =
        c.Call("POST", Api(id, "file/write"),
               Json{{"file", "/workspace/more"}, {"content", std::string(8 << 20, 'x')}}.dump());
    ++out.statuses[std::to_string(w.status)];
    out.attacker = Json(said).dump() + "; file/write " + std::to_string(w.status) + " " +
                   Json(w.message()).dump();
    size_t enospc = 0;
    for (size_t at = said.find("No space left"); at != std::string::npos;
         at = said.find("No space left", at + 1)) {
      ++enospc;
    }
    out.clear_error = enospc == 2 && w.status >= 400;
  });

  failures += b.Run("log_flood", [&](const std::string& id, std::atomic<bool>& stop, Outcome& out) {
    // Everything the guest writes to its standard error lands in <state>/jail/<id>/jail.log on
    // the host, outside the sandbox's disk: make it log as fast as it can.
    Client c(sock);
    // docker: the container's log (json-file, bounded by its max-size).
    const std::string log =
        o.backend == "docker" ? DockerLogPath(id) : d.backend_state() + "/" + id + "/jail.log";
    const long before = static_cast<long>(crash::ReadFile(log).size());
    long calls = 0;
    const std::string padded = "/" + std::string(3000, '/') + "bin/true";
    while (!stop) {
      const Answer a =
          c.Call("POST", Api(id, "process/start"), Json{{"command", "exec " + padded}}.dump());
      ++out.statuses[std::to_string(a.status)];
      ++calls;
    }
    const long after = static_cast<long>(crash::ReadFile(log).size());
    out.attacker = std::to_string(calls) + " process starts grew " + log + " by " +
                   std::to_string(after - before) + " bytes (" +
                   std::to_string(calls == 0 ? 0 : (after - before) / calls) + " per call)";
    out.clear_error = true;
  });

  b.Summary();
  b.Teardown();
  d.Stop();
  std::printf("%s: %d attack runs failed\n", failures == 0 ? "PASS" : "FAIL", failures);
  return failures == 0 ? 0 : 1;
}
