// agentbox-create-exec-bench: create -> first exec through agentboxd (issue 3).
//
// Each iteration: POST /v1/sandboxes, then POST .../api/v1/shell/exec `echo hi` in a new session
// of that sandbox, timed together from the first byte of the create to the last byte of the
// exec's response; then DELETE (not timed) and a pause of --gap-ms, which is the time a warm
// pool has to refill between two creates (0 = back to back). Each request is its own connection
// to agentboxd's unix socket (as a client that creates sandboxes now and then would do). Every
// response is checked; the first failure aborts the run.
//
//   agentbox-create-exec-bench --socket /tmp/d.sock [--iterations 40] [--warmup 3] [--gap-ms 300]
//                              [--body '{"ttl_s":600}'] [--json]

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

struct Reply {
  int status = 0;
  Json json;
  std::string raw;
};

// One HTTP/1.1 request with Connection: close; reads the response until EOF.
Reply Call(const std::string& socket_path, const std::string& method, const std::string& path,
           const std::string& body) {
  Reply r;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_path.c_str());
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) {
      ::close(fd);
    }
    r.raw = "cannot connect to " + socket_path;
    return r;
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: agentboxd\r\nConnection: close\r\n";
  req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
  for (size_t off = 0; off < req.size();) {
    const ssize_t n = ::write(fd, req.data() + off, req.size() - off);
    if (n <= 0) {
      break;
    }
    off += static_cast<size_t>(n);
  }
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) {
      break;
    }
    r.raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (r.raw.size() > 12 && r.raw.starts_with("HTTP/1.1 ")) {
    r.status = std::atoi(r.raw.c_str() + 9);
  }
  const size_t head = r.raw.find("\r\n\r\n");
  if (head != std::string::npos) {
    std::string payload = r.raw.substr(head + 4);
    if (r.raw.find("Transfer-Encoding: chunked") != std::string::npos ||
        r.raw.find("transfer-encoding: chunked") != std::string::npos) {
      std::string joined;
      size_t at = 0;
      while (at < payload.size()) {
        const size_t eol = payload.find("\r\n", at);
        if (eol == std::string::npos) {
          break;
        }
        const size_t len = std::stoul(payload.substr(at, eol - at), nullptr, 16);
        if (len == 0) {
          break;
        }
        joined += payload.substr(eol + 2, len);
        at = eol + 2 + len + 2;
      }
      payload = joined;
    }
    r.json = Json::parse(payload, nullptr, false);
  }
  return r;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(p * static_cast<double>(v.size()) + 0.999999);
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];  // nearest rank
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

std::string FirstMatch(const std::string& path, const std::string& key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.starts_with(key)) {
      const size_t colon = line.find(':');
      return Trim(colon == std::string::npos ? line : line.substr(colon + 2));
    }
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"create -> first exec through agentboxd"};
  std::string sock = "/run/agentbox/agentboxd.sock";
  int iterations = 40;
  int warmup = 3;
  int gap_ms = 300;
  std::string body = R"({"ttl_s":600})";
  std::string label;
  bool json_out = false;
  app.add_option("--socket", sock, "agentboxd's unix socket");
  app.add_option("--iterations", iterations, "timed create + exec pairs");
  app.add_option("--warmup", warmup, "untimed pairs first");
  app.add_option("--gap-ms", gap_ms, "pause after each delete (lets a warm pool refill)");
  app.add_option("--body", body, "JSON body of the create");
  app.add_option("--label", label, "name of this run in the report");
  app.add_flag("--json", json_out, "print the figures as JSON");
  CLI11_PARSE(app, argc, argv);

  std::vector<double> create_ms, exec_ms, total_ms;
  for (int i = 0; i < warmup + iterations; ++i) {
    const auto t0 = Clock::now();
    Reply c = Call(sock, "POST", "/v1/sandboxes", body);
    const auto t1 = Clock::now();
    if (c.status != 201 || !c.json.is_object()) {
      std::cerr << "create failed: " << c.raw.substr(0, 500) << "\n";
      return 1;
    }
    const std::string id = c.json["data"]["id"];
    Reply e = Call(sock, "POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                   R"({"id":"first","command":"echo hi","wait_seconds":10})");
    const auto t2 = Clock::now();
    if (e.status != 200 || !e.json.is_object() || e.json["data"]["output"] != "hi\n") {
      std::cerr << "exec failed: " << e.raw.substr(0, 500) << "\n";
      return 1;
    }
    Reply d = Call(sock, "DELETE", "/v1/sandboxes/" + id, "");
    if (d.status != 200) {
      std::cerr << "delete failed: " << d.raw.substr(0, 500) << "\n";
      return 1;
    }
    if (i >= warmup) {
      create_ms.push_back(Ms(t1 - t0));
      exec_ms.push_back(Ms(t2 - t1));
      total_ms.push_back(Ms(t2 - t0));
    }
    if (gap_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
    }
  }

  char date[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  Json out = {{"label", label},
              {"date", date},
              {"nproc", std::thread::hardware_concurrency()},
              {"cpu", FirstMatch("/proc/cpuinfo", "model name")},
              {"n", iterations},
              {"gap_ms", gap_ms},
              {"body", body}};
  auto add = [&](const char* name, const std::vector<double>& v) {
    out[name] = {{"p50", Percentile(v, 0.5)},
                 {"p99", Percentile(v, 0.99)},
                 {"min", Percentile(v, 0)},
                 {"max", Percentile(v, 1)}};
  };
  add("create_ms", create_ms);
  add("first_exec_ms", exec_ms);
  add("create_to_first_exec_ms", total_ms);
  if (json_out) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%s  %s, %u cores, %s\n", label.c_str(), date, std::thread::hardware_concurrency(),
              out["cpu"].get<std::string>().c_str());
  std::printf("n=%d gap=%d ms body=%s\n", iterations, gap_ms, body.c_str());
  for (const char* k : {"create_ms", "first_exec_ms", "create_to_first_exec_ms"}) {
    std::printf("%-26s p50 %7.2f  p99 %7.2f  min %7.2f  max %7.2f\n", k,
                out[k]["p50"].get<double>(), out[k]["p99"].get<double>(),
                out[k]["min"].get<double>(), out[k]["max"].get<double>());
  }
  return 0;
}
