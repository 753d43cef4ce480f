// ps, logs, kill: background processes in a sandbox (process/list, process/logs, process/kill).
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>

#include "cli/commands.h"
#include "cli/format.h"
#include "common/time_util.h"

namespace agentbox::cli {

namespace {

// How often `logs --follow` asks for new output when there was none.
constexpr long kFollowPollMillis = 200;

void SleepMillis(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000};
  while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

std::string Trimmed(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) {
    return "";
  }
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

}  // namespace

int ProcessList(DaemonClient& client, const std::string& id, const std::string& session,
                bool json) {
  Json body = Json::object();
  if (!session.empty()) {
    body["session_id"] = session;
  }
  auto r = client.Call("POST", GuestPath(id, "process/list"), &body);
  if (!r) {
    return ReportError(r.error());
  }
  if (!r->is_array()) {
    return ReportError("unexpected answer from agentboxd: process/list did not return a list");
  }
  if (json) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  const double now = NowUnix();
  std::vector<std::vector<std::string>> rows = {{"PID", "SESSION", "STATUS", "STARTED", "COMMAND"}};
  for (const auto& p : *r) {
    std::string status = "running";
    if (!JsonBool(p, "running")) {
      auto code = JsonInt(p, "exit_code");
      status = code ? "exited " + std::to_string(*code) : "exited";
    }
    rows.push_back({std::to_string(JsonInt(p, "pid").value_or(0)), JsonString(p, "session_id"),
                    status, RelativeTime(JsonNumber(p, "started_at"), now),
                    Trimmed(JsonString(p, "command"))});
  }
  PrintTable(rows, std::cout);
  return 0;
}

int ProcessLogs(DaemonClient& client, const std::string& id, int64_t pid, bool follow) {
  int64_t offset = 0;
  bool warned = false;
  for (;;) {
    Json body = {{"pid", pid}, {"offset", offset}};
    auto r = client.Call("POST", GuestPath(id, "process/logs"), &body);
    if (!r) {
      return ReportError(r.error());
    }
    if (JsonBool(*r, "truncated") && !warned) {
      std::cerr << "agentbox: the start of the log was dropped (it is capped)\n";
      warned = true;
    }
    const std::string output = JsonString(*r, "output");
    WriteAll(STDOUT_FILENO, output);
    offset = JsonInt(*r, "next_offset").value_or(offset + static_cast<int64_t>(output.size()));
    if (!output.empty()) {
      continue;  // there may be more right away
    }
    if (!follow || !JsonBool(*r, "running")) {
      return 0;
    }
    SleepMillis(kFollowPollMillis);
  }
}

int ProcessKill(DaemonClient& client, const KillArgs& a) {
  Json body = Json::object();
  if (a.pid) {
    body["pid"] = *a.pid;
  }
  if (!a.session.empty()) {
    body["session_id"] = a.session;
  }
  if (!a.pattern.empty()) {
    body["pattern"] = a.pattern;
  }
  if (!a.signal.empty()) {
    const bool numeric = a.signal.find_first_not_of("0123456789") == std::string::npos;
    body["signal"] = numeric ? Json(std::stoll(a.signal.substr(0, 6))) : Json(a.signal);
  }
  auto r = client.Call("POST", GuestPath(a.id, "process/kill"), &body);
  if (!r) {
    return ReportError(r.error());
  }
  const int64_t count = JsonInt(*r, "killed_count").value_or(0);
  if (count == 0) {
    std::cerr << "agentbox: no running process matched\n";
    return 1;
  }
  std::string pids;
  if (auto it = r->find("killed_pids"); it != r->end() && it->is_array()) {
    for (const auto& p : *it) {
      if (!pids.empty()) {
        pids += ' ';
      }
      pids += p.dump();
    }
  }
  std::cout << "signalled " << count << (count == 1 ? " process: " : " processes: ") << pids
            << "\n";
  return 0;
}

}  // namespace agentbox::cli
