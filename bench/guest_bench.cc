// agentbox-guest-bench: latency and memory of a guest API server (sandbox-api.md §1).
//
// Every request goes over ONE keep-alive HTTP/1.1 connection, so the figures are the server's
// per-request cost and not TCP or Unix-socket setup. The client counts its connects and the run
// fails if the server closes the connection: `connects == 1` in the report is the proof of
// reuse. Every response is checked (HTTP 200, JSON envelope with success:true, expected data);
// the first bad one aborts the run, because figures over failed requests mean nothing.
//
// The same program measures agentbox-guest (`--flavor agentbox`) and the ai-manus sandbox API
// (`--flavor ai-manus`), which differ only in the shell/exec request body.

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace agentbox::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

// Aborts the run: the message says which request or measurement failed and why.
class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Flavor { kAgentbox, kAiManus };

// --- target ---------------------------------------------------------------------------------

struct Target {
  std::string spec;  // as given on the command line, for reports
  bool is_unix = false;
  std::string path;  // Unix socket path
  std::string host;  // TCP host
  std::string port;  // TCP port
};

// Parses `unix:PATH` or `tcp:HOST:PORT` (HOST may be `[v6]`). Throws BenchError otherwise.
Target ParseTarget(const std::string& spec) {
  Target target;
  target.spec = spec;
  if (spec.starts_with("unix:") && spec.size() > 5) {
    target.is_unix = true;
    target.path = spec.substr(5);
    return target;
  }
  if (spec.starts_with("tcp:")) {
    const std::string rest = spec.substr(4);
    const auto colon = rest.rfind(':');
    if (colon != std::string::npos && colon > 0 && colon + 1 < rest.size()) {
      target.host = rest.substr(0, colon);
      if (target.host.size() > 2 && target.host.front() == '[' && target.host.back() == ']') {
        target.host = target.host.substr(1, target.host.size() - 2);
      }
      target.port = rest.substr(colon + 1);
      return target;
    }
  }
  throw BenchError("--target must be unix:PATH or tcp:HOST:PORT, got '" + spec + "'");
}

// --- HTTP client ----------------------------------------------------------------------------
//
// Plain POSIX sockets plus Beast's HTTP parser, without an Asio io_context: the benchmark is
// synchronous, and Asio's reactor trips GCC 12's -Wnull-dereference at -O2 and above.

struct Reply {
  unsigned status = 0;
  std::string body;
  double ms = 0;  // from the first byte sent to the response fully parsed
};

// Owns one file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

std::string ErrnoMessage(const std::string& what) { return what + ": " + std::strerror(errno); }

UniqueFd ConnectUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    throw BenchError("unix socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    throw BenchError(ErrnoMessage("socket(AF_UNIX)"));
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw BenchError(ErrnoMessage("connect unix:" + path));
  }
  return fd;
}

UniqueFd ConnectTcp(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &list); rc != 0) {
    throw BenchError("cannot resolve " + host + ":" + port + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(list, &::freeaddrinfo);
  std::string last_error = "no address";
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) {
      last_error = ErrnoMessage("socket");
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      last_error = ErrnoMessage("connect");
      continue;
    }
    // Nagle plus delayed ACK would add tens of milliseconds to small keep-alive requests.
    const int one = 1;
    if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
      throw BenchError(ErrnoMessage("setsockopt(TCP_NODELAY)"));
    }
    return fd;
  }
  throw BenchError("cannot connect to tcp:" + host + ":" + port + ": " + last_error);
}

// A minimal synchronous HTTP/1.1 client over one persistent connection. Not thread-safe.
class HttpClient {
 public:
  HttpClient(Target target, std::string token)
      : target_(std::move(target)), token_(std::move(token)) {
    host_header_ = target_.is_unix ? "localhost" : target_.host + ":" + target_.port;
  }

  // Connects now, so that memory can be measured right after connect, before any request.
  void Connect() {
    fd_ = target_.is_unix ? ConnectUnix(target_.path) : ConnectTcp(target_.host, target_.port);
    pending_.clear();
    ++connects_;
  }

  // Sends `POST path` with a JSON body and reads the whole response. Connects if not yet
  // connected; throws if the server closed the connection after an earlier response, since every
  // figure is meant for one reused connection.
  // Prepended to every request path: "/v1/sandboxes/ID" measures a guest through agentboxd.
  void set_path_prefix(std::string prefix) { path_prefix_ = std::move(prefix); }

  Reply Post(const std::string& path, const std::string& body) {
    if (!fd_.valid()) {
      if (connects_ > 0) {
        throw BenchError("the server closed the keep-alive connection after request " +
                         std::to_string(requests_) + "; the benchmark needs one reused connection");
      }
      Connect();
    }
    std::string request = "POST " + path_prefix_ + path + " HTTP/1.1\r\nHost: " + host_header_ +
                          "\r\nContent-Type: application/json\r\nAccept: application/json\r\n";
    if (!token_.empty()) {
      request += "X-Access-Token: " + token_ + "\r\n";
    }
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    request += body;

    const auto start = Clock::now();
    SendAll(request);
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    parser.body_limit(64 * 1024 * 1024);
    ReadResponse(parser);
    const auto end = Clock::now();
    ++requests_;

    auto response = parser.release();
    if (!response.keep_alive()) {
      fd_.Reset();
    }
    return Reply{response.result_int(), std::move(response.body()),
                 std::chrono::duration<double, std::milli>(end - start).count()};
  }

  // The server's pid as the kernel saw it at connect (SO_PEERCRED); Unix sockets only.
  std::optional<pid_t> PeerPid() const {
    if (!target_.is_unix || !fd_.valid()) {
      return std::nullopt;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd_.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0) {
      return std::nullopt;
    }
    return cred.pid;
  }

  int connects() const { return connects_; }
  int64_t requests() const { return requests_; }

 private:
  void SendAll(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        throw BenchError(ErrnoMessage("send to " + target_.spec));
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  // Feeds the parser from pending_ and the socket until one response is complete; bytes past
  // it stay in pending_ (a server may not send them, but the parser must not lose them).
  void ReadResponse(http::response_parser<http::string_body>& parser) {
    bool need_data = pending_.empty();
    while (!parser.is_done()) {
      if (need_data) {
        char buf[64 * 1024];
        const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
        if (n < 0) {
          if (errno == EINTR) {
            continue;
          }
          throw BenchError(ErrnoMessage("recv from " + target_.spec));
        }
        if (n == 0) {
          fd_.Reset();
          beast::error_code ec;
          parser.put_eof(ec);
          if (ec || !parser.is_done()) {
            throw BenchError("the server closed the connection before a complete response");
          }
          return;
        }
        pending_.append(buf, static_cast<size_t>(n));
      }
      beast::error_code ec;
      const size_t used = parser.put(asio::buffer(pending_.data(), pending_.size()), ec);
      pending_.erase(0, used);
      if (ec == http::error::need_more) {
        need_data = true;
      } else if (ec) {
        throw BenchError("bad HTTP response from " + target_.spec + ": " + ec.message());
      } else {
        need_data = pending_.empty();
      }
    }
  }

  Target target_;
  std::string token_;
  std::string host_header_;
  std::string path_prefix_;
  UniqueFd fd_;
  std::string pending_;  // received bytes not yet consumed by a parser
  int connects_ = 0;
  int64_t requests_ = 0;
};

// --- memory ---------------------------------------------------------------------------------

// Reads a "Name:   123 kB" field from a /proc file; nullopt if the file or field is absent.
std::optional<uint64_t> ReadKibField(const std::string& file, std::string_view field) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > field.size() && line.starts_with(field) && line[field.size()] == ':') {
      return std::stoull(line.substr(field.size() + 1));
    }
  }
  return std::nullopt;
}

struct ProcMemory {
  std::optional<uint64_t> rss_kib;  // VmRSS from /proc/PID/status
  std::optional<uint64_t> pss_kib;  // Pss from /proc/PID/smaps_rollup (needs ptrace access)
};

ProcMemory ReadProcMemory(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  return ProcMemory{ReadKibField(dir + "/status", "VmRSS"),
                    ReadKibField(dir + "/smaps_rollup", "Pss")};
}

// Parent pid from /proc/PID/stat; the command name may contain spaces and parentheses, so the
// fields are counted from the last ')'.
std::optional<pid_t> ReadParentPid(const std::string& stat_path) {
  std::ifstream in(stat_path);
  std::string stat;  // one line
  std::getline(in, stat);
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream fields(stat.substr(paren + 1));
  std::string state;
  pid_t ppid = 0;
  if (!(fields >> state >> ppid)) {
    return std::nullopt;
  }
  return ppid;
}

// All descendants of `root` (children, grandchildren, ...) at the time of the scan.
std::vector<pid_t> Descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children_of;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(),
                                     [](unsigned char c) { return std::isdigit(c) != 0; })) {
      continue;
    }
    if (auto ppid = ReadParentPid(entry.path().string() + "/stat")) {  // gone: skipped
      children_of.emplace(*ppid, static_cast<pid_t>(std::stol(name)));
    }
  }
  std::vector<pid_t> result;
  std::vector<pid_t> frontier{root};
  while (!frontier.empty()) {
    const pid_t parent = frontier.back();
    frontier.pop_back();
    auto [first, last] = children_of.equal_range(parent);
    for (auto it = first; it != last; ++it) {
      result.push_back(it->second);
      frontier.push_back(it->second);
    }
  }
  return result;
}

// Memory of one process and of everything it started.
struct TreeMemory {
  pid_t pid = 0;
  std::string comm;  // empty if the process does not exist
  ProcMemory self;
  int children = 0;  // descendants, recursively
  uint64_t children_rss_kib = 0;
  std::optional<uint64_t> children_pss_kib;  // nullopt if any child's Pss was unreadable
};

std::string ReadComm(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

TreeMemory MeasureTree(pid_t pid) {
  TreeMemory tree;
  tree.pid = pid;
  tree.comm = ReadComm(pid);
  tree.self = ReadProcMemory(pid);
  if (!tree.self.rss_kib) {
    tree.comm.clear();
    return tree;
  }
  uint64_t pss_sum = 0;
  bool pss_complete = true;
  for (pid_t child : Descendants(pid)) {
    const ProcMemory mem = ReadProcMemory(child);
    if (!mem.rss_kib) {
      continue;  // exited during the scan, or a kernel thread without VmRSS
    }
    ++tree.children;
    tree.children_rss_kib += *mem.rss_kib;
    if (mem.pss_kib) {
      pss_sum += *mem.pss_kib;
    } else {
      pss_complete = false;
    }
  }
  if (pss_complete) {
    tree.children_pss_kib = pss_sum;
  }
  return tree;
}

struct MemorySnapshot {
  std::string state;
  TreeMemory server;
  std::vector<TreeMemory> extras;  // --extra-pid processes, e.g. the peer's supervisord
};

MemorySnapshot SnapshotMemory(pid_t pid, const std::vector<pid_t>& extra_pids, std::string state) {
  MemorySnapshot snap;
  snap.state = std::move(state);
  snap.server = MeasureTree(pid);
  if (!snap.server.self.rss_kib) {
    throw BenchError("cannot read /proc/" + std::to_string(pid) + "/status (is --pid right?)");
  }
  for (pid_t extra : extra_pids) {
    snap.extras.push_back(MeasureTree(extra));
  }
  return snap;
}

// --- latency --------------------------------------------------------------------------------

struct LatencyStats {
  std::string operation;
  size_t n = 0;
  double p50 = 0, p99 = 0, mean = 0, min = 0, max = 0;  // milliseconds
};

// Nearest-rank percentiles.
LatencyStats Summarize(std::string operation, std::vector<double> ms) {
  LatencyStats stats;
  stats.operation = std::move(operation);
  stats.n = ms.size();
  if (ms.empty()) {
    return stats;
  }
  std::sort(ms.begin(), ms.end());
  auto rank = [&](double q) {
    const auto index = static_cast<size_t>(std::ceil(q * static_cast<double>(ms.size())));
    return ms[std::clamp<size_t>(index, 1, ms.size()) - 1];
  };
  stats.p50 = rank(0.50);
  stats.p99 = rank(0.99);
  stats.mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  stats.min = ms.front();
  stats.max = ms.back();
  return stats;
}

// --- API calls ------------------------------------------------------------------------------

std::string Excerpt(const std::string& body) {
  constexpr size_t kMax = 400;
  return body.size() <= kMax ? body : body.substr(0, kMax) + "...";
}

// Checks the envelope {success:true, data:{...}} of a 200 reply and returns `data`.
Json CheckEnvelope(const std::string& path, const Reply& reply) {
  if (reply.status != 200) {
    throw BenchError("POST " + path + " answered HTTP " + std::to_string(reply.status) + ": " +
                     Excerpt(reply.body));
  }
  Json doc = Json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    throw BenchError("POST " + path +
                     " answered a body that is not a JSON object: " + Excerpt(reply.body));
  }
  if (doc.value("success", false) != true) {
    throw BenchError("POST " + path + " answered success != true: " + Excerpt(reply.body));
  }
  if (!doc.contains("data") || !doc["data"].is_object()) {
    throw BenchError("POST " + path + " answered without a data object: " + Excerpt(reply.body));
  }
  return doc["data"];
}

void Require(bool ok, const std::string& path, const std::string& what, const Json& data) {
  if (!ok) {
    throw BenchError("POST " + path + ": expected " + what + ", got data " +
                     Excerpt(data.dump(-1, ' ', false, Json::error_handler_t::replace)));
  }
}

struct Operation {
  std::string name;
  std::string path;
  std::string body;
  std::function<void(const Json& data)> check;  // throws BenchError on an unexpected reply
};

// One checked request; returns its latency.
double Call(HttpClient& client, const Operation& op) {
  const Reply reply = client.Post(op.path, op.body);
  const Json data = CheckEnvelope(op.path, reply);
  if (op.check) {
    op.check(data);
  }
  return reply.ms;
}

std::vector<double> Measure(HttpClient& client, const Operation& op, int warmup, int iterations) {
  for (int i = 0; i < warmup; ++i) {
    Call(client, op);
  }
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    ms.push_back(Call(client, op));
  }
  return ms;
}

constexpr std::string_view kExecPath = "/api/v1/shell/exec";

// exec bodies differ: ai-manus has no wait_seconds (it always waits up to 5 s) and its
// exec_dir, though optional, defaults to $HOME; /tmp exists on every target.
std::string ExecBody(Flavor flavor, const std::string& id, const std::string& command) {
  Json body = {{"id", id}, {"command", command}};
  if (flavor == Flavor::kAgentbox) {
    body["wait_seconds"] = 10;
  } else {
    body["exec_dir"] = "/tmp";
  }
  return body.dump();
}

// Counts exec replies whose output lacks the expected text. For agentbox a lost output is an
// error (the contract promises byte-exact capture); for the peer it is reported.
struct OutputCheck {
  Flavor flavor;
  int64_t missing = 0;
};

Operation ExecOperation(Flavor flavor, std::string name, const std::string& id,
                        const std::string& command, std::string expected_output,
                        OutputCheck* output_check) {
  const std::string path(kExecPath);
  return Operation{
      std::move(name), path, ExecBody(flavor, id, command),
      [path, expected_output, output_check](const Json& data) {
        Require(data.value("status", "") == "completed", path, "status \"completed\"", data);
        Require(data.contains("returncode") && data["returncode"] == 0, path, "returncode 0", data);
        if (expected_output.empty()) {
          return;
        }
        const bool has_output =
            data.contains("output") && data["output"].is_string() &&
            data["output"].get<std::string>().find(expected_output) != std::string::npos;
        if (!has_output) {
          Require(output_check->flavor != Flavor::kAgentbox, path,
                  "output containing \"" + expected_output + "\"", data);
          ++output_check->missing;
        }
      }};
}

// 1 KiB in 20 lines "line N ...", every one matched by the search regex "line [0-9]+".
std::string MakeContent() {
  constexpr size_t kLines = 20;
  constexpr size_t kTotal = 1024;
  std::string content;
  for (size_t i = 0; i < kLines; ++i) {
    const size_t length = kTotal / kLines + (i < kTotal % kLines ? 1 : 0);  // with '\n'
    std::string line = "line " + std::to_string(i) + " ";
    while (line.size() + 1 < length) {
      line.push_back(static_cast<char>('a' + (line.size() % 26)));
    }
    content += line + "\n";
  }
  return content;
}

// --- machine facts and report ---------------------------------------------------------------

struct Machine {
  unsigned nproc = 0;
  std::string cpu_model;
  std::string kernel;
  std::string date_utc;
};

Machine DescribeMachine() {
  Machine machine;
  machine.nproc = std::thread::hardware_concurrency();
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.starts_with("model name")) {
      const auto colon = line.find(':');
      machine.cpu_model = colon == std::string::npos ? line : line.substr(colon + 2);
      break;
    }
  }
  utsname uts{};
  if (uname(&uts) == 0) {
    machine.kernel = std::string(uts.sysname) + " " + uts.release;
  }
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  machine.date_utc = buf;
  return machine;
}

std::string Mib(std::optional<uint64_t> kib) {
  if (!kib) {
    return "n/a";
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(*kib) / 1024.0);
  return buf;
}

// --- CPU accounting -------------------------------------------------------------------------
//
// Busy CPU time of the machine and of the processes under test over the timed phase, so that
// the report says how much other work ran meanwhile: on 2 cores a compiler next door doubles
// every latency.

// (busy, steal) jiffies of all CPUs from /proc/stat; busy excludes idle, iowait and steal.
std::pair<uint64_t, uint64_t> MachineJiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return {user + nice + system + irq + softirq, steal};
}

// utime + stime + cutime + cstime (fields 14-17 of /proc/PID/stat); 0 if the process is gone.
uint64_t ProcessJiffies(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos) {
    return 0;
  }
  std::istringstream fields(stat.substr(paren + 1));  // starts at field 3
  std::string field;
  uint64_t sum = 0;
  for (int index = 3; index <= 17 && fields >> field; ++index) {
    if (index >= 14) {
      sum += std::stoull(field);
    }
  }
  return sum;
}

uint64_t TreeJiffies(pid_t root) {
  uint64_t sum = ProcessJiffies(root);
  for (pid_t pid : Descendants(root)) {
    sum += ProcessJiffies(pid);
  }
  return sum;
}

struct CpuSample {
  Clock::time_point at;
  uint64_t busy = 0;
  uint64_t steal = 0;
  uint64_t measured = 0;  // server and --extra-pid trees
  uint64_t client = 0;    // this process
};

CpuSample SampleCpu(const std::vector<pid_t>& roots) {
  CpuSample sample;
  sample.at = Clock::now();
  std::tie(sample.busy, sample.steal) = MachineJiffies();
  for (pid_t root : roots) {
    sample.measured += TreeJiffies(root);
  }
  sample.client = ProcessJiffies(::getpid());
  return sample;
}

// Percent of one core, averaged over the interval.
struct CpuShare {
  double measured = 0, client = 0, other = 0, steal = 0;
};

CpuShare CpuBetween(const CpuSample& start, const CpuSample& end) {
  const double seconds = std::chrono::duration<double>(end.at - start.at).count();
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK)) * std::max(seconds, 1e-3);
  auto pct = [ticks](uint64_t jiffies) { return 100.0 * static_cast<double>(jiffies) / ticks; };
  auto diff = [](uint64_t a, uint64_t b) { return b > a ? b - a : 0; };
  const uint64_t busy = diff(start.busy, end.busy);
  const uint64_t measured = diff(start.measured, end.measured);
  const uint64_t client = diff(start.client, end.client);
  CpuShare share;
  share.measured = pct(measured);
  share.client = pct(client);
  share.other = pct(diff(measured + client, busy));
  share.steal = pct(diff(start.steal, end.steal));
  return share;
}

struct Options {
  std::string target;
  Flavor flavor = Flavor::kAgentbox;
  std::string token;
  pid_t pid = 0;
  std::vector<pid_t> extra_pids;
  int iterations = 2000;
  int warmup = 100;
  int sessions = 10;
  std::string label;
  std::string work_dir = "/tmp/agentbox-bench";
  std::string prefix;
  bool json = false;
};

struct Results {
  Machine machine;
  std::vector<LatencyStats> latency;
  std::optional<pid_t> pid;
  std::vector<MemorySnapshot> memory;
  int connects = 0;
  int64_t requests = 0;
  int64_t exec_output_missing = 0;
  CpuShare cpu;
};

void PrintTable(const Options& options, const Results& results) {
  std::printf("agentbox-guest-bench  label=%s  flavor=%s  target=%s\n", options.label.c_str(),
              options.flavor == Flavor::kAgentbox ? "agentbox" : "ai-manus",
              options.target.c_str());
  std::printf("machine: %u cpus, %s, %s, %s\n", results.machine.nproc,
              results.machine.cpu_model.c_str(), results.machine.kernel.c_str(),
              results.machine.date_utc.c_str());
  const CpuShare& cpu = results.cpu;
  std::printf(
      "CPU during the timed requests, %% of one core: server%s %.0f, this client %.0f, "
      "other processes %.0f, steal %.0f%s\n",
      results.pid ? " (and --extra-pid trees)" : " unknown (no --pid), counted as other",
      cpu.measured, cpu.client, cpu.other, cpu.steal,
      cpu.other > 10 ? "  <- other work on the machine disturbs these figures" : "");
  std::printf("one keep-alive connection: %d connect(s) for %lld requests\n\n", results.connects,
              static_cast<long long>(results.requests));
  std::printf("%-22s %9s %9s %9s %9s %9s %7s\n", "operation", "p50 ms", "p99 ms", "mean ms",
              "min ms", "max ms", "n");
  for (const auto& s : results.latency) {
    std::printf("%-22s %9.3f %9.3f %9.3f %9.3f %9.3f %7zu\n", s.operation.c_str(), s.p50, s.p99,
                s.mean, s.min, s.max, s.n);
  }
  if (results.exec_output_missing > 0) {
    std::printf("note: %lld exec replies had no \"hi\" in their output (peer lost output)\n",
                static_cast<long long>(results.exec_output_missing));
  }
  std::printf("\n");
  if (!results.pid) {
    std::printf("memory: not measured (give --pid PID of the server)\n");
    return;
  }
  std::printf("memory (MiB; children = all descendants, summed)\n");
  std::printf("%-30s %-24s %9s %9s %9s %13s %13s\n", "state", "process", "RSS", "PSS", "children",
              "children RSS", "children PSS");
  for (const auto& m : results.memory) {
    auto row = [](const std::string& state, const std::string& role, const TreeMemory& t) {
      const std::string process = role + " " + std::to_string(t.pid) + " " + t.comm;
      if (t.comm.empty()) {
        std::printf("%-30s %-24s not running\n", state.c_str(), process.c_str());
        return;
      }
      std::printf("%-30s %-24s %9s %9s %9d %13s %13s\n", state.c_str(), process.c_str(),
                  Mib(t.self.rss_kib).c_str(), Mib(t.self.pss_kib).c_str(), t.children,
                  Mib(t.children_rss_kib).c_str(), Mib(t.children_pss_kib).c_str());
    };
    row(m.state, "server", m.server);
    for (const auto& extra : m.extras) {
      row("", "+", extra);
    }
  }
}

Json ToJson(const Options& options, const Results& results) {
  auto opt = [](std::optional<uint64_t> v) { return v ? Json(*v) : Json(nullptr); };
  Json doc = {
      {"label", options.label},
      {"flavor", options.flavor == Flavor::kAgentbox ? "agentbox" : "ai-manus"},
      {"target", options.target},
      {"iterations", options.iterations},
      {"warmup", options.warmup},
      {"connects", results.connects},
      {"requests", results.requests},
      {"exec_output_missing", results.exec_output_missing},
      {"machine",
       {{"nproc", results.machine.nproc},
        {"cpu_model", results.machine.cpu_model},
        {"kernel", results.machine.kernel},
        {"date_utc", results.machine.date_utc}}},
      {"cpu_percent_of_one_core",
       {{"server", results.cpu.measured},
        {"client", results.cpu.client},
        {"other", results.cpu.other},
        {"steal", results.cpu.steal}}},
  };
  doc["latency_ms"] = Json::array();
  for (const auto& s : results.latency) {
    doc["latency_ms"].push_back({{"operation", s.operation},
                                 {"p50", s.p50},
                                 {"p99", s.p99},
                                 {"mean", s.mean},
                                 {"min", s.min},
                                 {"max", s.max},
                                 {"n", s.n}});
  }
  doc["memory"] = {{"pid", results.pid ? Json(*results.pid) : Json(nullptr)},
                   {"snapshots", Json::array()}};
  auto tree_json = [&opt](const TreeMemory& t) {
    return Json{{"pid", t.pid},
                {"comm", t.comm.empty() ? Json(nullptr) : Json(t.comm)},
                {"rss_kib", opt(t.self.rss_kib)},
                {"pss_kib", opt(t.self.pss_kib)},
                {"children", t.children},
                {"children_rss_kib", t.children_rss_kib},
                {"children_pss_kib", opt(t.children_pss_kib)}};
  };
  for (const auto& m : results.memory) {
    Json snap = {{"state", m.state}, {"server", tree_json(m.server)}, {"extras", Json::array()}};
    for (const auto& extra : m.extras) {
      snap["extras"].push_back(tree_json(extra));
    }
    doc["memory"]["snapshots"].push_back(std::move(snap));
  }
  return doc;
}

// --- the run --------------------------------------------------------------------------------

void Progress(const Options& options, const std::string& message) {
  if (!options.json) {
    std::fprintf(stderr, "... %s\n", message.c_str());
  }
}

Results Run(const Options& options) {
  Results results;
  results.machine = DescribeMachine();
  HttpClient client(ParseTarget(options.target), options.token);
  client.set_path_prefix(options.prefix);
  client.Connect();

  // Idle memory first: connected, no request served yet.
  results.pid = options.pid > 0 ? std::optional<pid_t>(options.pid) : client.PeerPid();
  auto snapshot = [&](const std::string& state) {
    if (results.pid) {
      results.memory.push_back(SnapshotMemory(*results.pid, options.extra_pids, state));
    }
  };
  snapshot("idle (connected, no request)");

  OutputCheck output_check{options.flavor};
  Progress(options, "creating " + std::to_string(options.sessions) + " sessions");
  for (int i = 0; i < options.sessions; ++i) {
    Call(client, ExecOperation(options.flavor, "create", "s" + std::to_string(i), "true", "",
                               &output_check));
  }
  snapshot("after " + std::to_string(options.sessions) + " sessions");

  const std::string file = options.work_dir + "/f.txt";
  const std::string content = MakeContent();
  Call(client, ExecOperation(options.flavor, "setup", "bench", "mkdir -p " + options.work_dir, "",
                             &output_check));

  std::vector<Operation> operations;
  operations.push_back(
      ExecOperation(options.flavor, "shell/exec echo hi", "bench", "echo hi", "hi", &output_check));
  const std::string write_path = "/api/v1/file/write";
  operations.push_back(
      Operation{"file/write 1 KiB", write_path, Json{{"file", file}, {"content", content}}.dump(),
                [write_path, &content](const Json& data) {
                  Require(data.contains("bytes_written") && data["bytes_written"] == content.size(),
                          write_path, "bytes_written " + std::to_string(content.size()), data);
                }});
  const std::string read_path = "/api/v1/file/read";
  operations.push_back(Operation{"file/read 1 KiB", read_path, Json{{"file", file}}.dump(),
                                 [read_path, &content](const Json& data) {
                                   Require(data.contains("content") && data["content"] == content,
                                           read_path, "the content written", data);
                                 }});
  const std::string search_path = "/api/v1/file/search";
  operations.push_back(Operation{
      "file/search regex", search_path, Json{{"file", file}, {"regex", "line [0-9]+"}}.dump(),
      [search_path](const Json& data) {
        Require(data.contains("line_numbers") && data["line_numbers"].is_array() &&
                    data["line_numbers"].size() == 20,
                search_path, "20 line_numbers", data);
      }});

  std::vector<pid_t> measured_roots = options.extra_pids;
  if (results.pid) {
    measured_roots.push_back(*results.pid);
  }
  const CpuSample cpu_start = SampleCpu(measured_roots);
  for (const auto& op : operations) {
    Progress(options, op.name + ": " + std::to_string(options.warmup) + " warm-up + " +
                          std::to_string(options.iterations) + " timed");
    results.latency.push_back(
        Summarize(op.name, Measure(client, op, options.warmup, options.iterations)));
  }
  results.cpu = CpuBetween(cpu_start, SampleCpu(measured_roots));
  snapshot("after benchmark (" + std::to_string(options.sessions + 1) + " sessions)");

  results.connects = client.connects();
  results.requests = client.requests();
  results.exec_output_missing = output_check.missing;
  if (results.connects != 1) {
    throw BenchError(
        "the server did not keep the connection alive: " + std::to_string(results.connects) +
        " connects for " + std::to_string(results.requests) + " requests");
  }
  return results;
}

int Main(int argc, char** argv) {
  Options options;
  std::string flavor = "agentbox";
  CLI::App app{"Latency and memory of a guest API server over one keep-alive connection"};
  app.add_option("--target", options.target, "unix:PATH or tcp:HOST:PORT")->required();
  app.add_option("--flavor", flavor, "request bodies for this server")
      ->check(CLI::IsMember({"agentbox", "ai-manus"}))
      ->capture_default_str();
  app.add_option("--token", options.token, "sent as header X-Access-Token");
  app.add_option("--pid", options.pid,
                 "server pid for memory figures (default for unix: the socket's peer)")
      ->check(CLI::PositiveNumber);
  app.add_option("--extra-pid", options.extra_pids,
                 "also report this process and its descendants (repeatable), e.g. supervisord")
      ->check(CLI::PositiveNumber);
  app.add_option("--iterations", options.iterations, "timed requests per operation")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--warmup", options.warmup, "untimed requests per operation first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--sessions", options.sessions, "sessions created before the memory figure")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--work-dir", options.work_dir, "directory for the benchmark's file")
      ->capture_default_str();
  app.add_option("--label", options.label, "name for this run (default: the flavor)");
  app.add_option("--prefix", options.prefix,
                 "prefix for every path, e.g. /v1/sandboxes/ID to measure through agentboxd");
  app.add_flag("--json", options.json, "print results as JSON on stdout");
  CLI11_PARSE(app, argc, argv);
  options.flavor = flavor == "ai-manus" ? Flavor::kAiManus : Flavor::kAgentbox;
  if (options.label.empty()) {
    options.label = flavor;
  }

  try {
    const Results results = Run(options);
    if (options.json) {
      std::cout << ToJson(options, results).dump(2) << "\n";
    } else {
      PrintTable(options, results);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "agentbox-guest-bench: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace
}  // namespace agentbox::bench

int main(int argc, char** argv) { return agentbox::bench::Main(argc, argv); }
