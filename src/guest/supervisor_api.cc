#include "guest/supervisor_api.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "common/json_util.h"
#include "common/time_util.h"
#include "http/envelope.h"

namespace agentbox::guest {

namespace {

constexpr auto kStopGrace = std::chrono::seconds(10);

// supervisord's description of a running process: "pid 123, uptime 0:01:05".
std::string Uptime(pid_t pid, double since, double now) {
  const auto s = static_cast<long>(std::max(0.0, std::floor(now - since)));
  char buf[96];
  std::snprintf(buf, sizeof(buf), "pid %d, uptime %ld:%02ld:%02ld", static_cast<int>(pid),
                s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

// One entry of `status` in the shape of supervisord's getProcessInfo (ai-manus's ProcessInfo).
Json Entry(const std::string& name, const std::string& description, double start, double stop,
           double now, ServiceState state, const std::string& spawnerr, int exitstatus,
           pid_t pid) {
  return Json{{"name", name},
              {"group", name},
              {"description", description},
              {"start", static_cast<int64_t>(start)},
              {"stop", static_cast<int64_t>(stop)},
              {"now", static_cast<int64_t>(now)},
              {"state", StateCode(state)},
              {"statename", StateName(state)},
              {"spawnerr", spawnerr},
              {"exitstatus", exitstatus},
              {"logfile", ""},
              {"stdout_logfile", ""},
              {"stderr_logfile", ""},
              {"pid", static_cast<int>(pid)}};
}

std::string Describe(const ServiceStatus& s, double now) {
  switch (s.state) {
    case ServiceState::kRunning:
    case ServiceState::kStopping:
      return Uptime(s.pid, s.started_at, now);
    case ServiceState::kExited:
      return "exited with status " + std::to_string(s.exit_status);
    case ServiceState::kFatal:
      return "could not start: " + s.spawn_error;
    default:
      return s.started_at > 0 ? "stopped" : "Not started";
  }
}

// supervisord's SupervisorActionResult: every field present, null unless this action set it.
Json ActionResult(const std::string& status) {
  return Json{{"status", status},
              {"result", nullptr},
              {"stop_result", nullptr},
              {"start_result", nullptr},
              {"shutdown_result", nullptr}};
}

}  // namespace

SupervisorApi::SupervisorApi(ServiceSupervisor& services, double guest_started_unix)
    : services_(services), guest_started_(guest_started_unix) {}

void SupervisorApi::Handle(const http::Request& req, http::Respond respond) {
  const std::string op = req.path.substr(std::string("/api/v1/supervisor/").size());
  const bool get = op == "status" || op == "timeout/status";
  const bool post = op == "stop" || op == "shutdown" || op == "restart" ||
                    op == "timeout/activate" || op == "timeout/extend" || op == "timeout/cancel";
  if (!get && !post) {
    return respond(http::ErrorResponse(404, "no such endpoint: " + req.method + " " + req.path));
  }
  if (get != (req.method == "GET") || post != (req.method == "POST")) {
    return respond(
        http::ErrorResponse(405, std::string("use ") + (get ? "GET" : "POST") + " for " +
                                     req.path));
  }
  // ai-manus's endpoints take no body, or {minutes?} for activate/extend; a body that is sent
  // must still be a JSON object.
  if (post && req.body.find_first_not_of(" \t\r\n") != std::string::npos) {
    if (auto b = ParseJsonObject(req.body); !b) {
      return respond(http::ErrorResponse(b.error()));
    }
  }
  if (op == "status") {
    return Status(std::move(respond));
  }
  if (op == "stop") {
    return Stop(std::move(respond));
  }
  if (op == "shutdown") {
    return Shutdown(std::move(respond));
  }
  if (op == "restart") {
    return Restart(std::move(respond));
  }
  // timeout/*: the sandbox's lifetime is agentboxd's, which answers these on its relay
  // (/v1/sandboxes/{id}/api/v1/supervisor/timeout/...). A guest reached directly has no
  // daemon to ask, and says so rather than keep a timer that would mean nothing.
  respond(http::ErrorResponse(
      503, "no agentboxd to ask: the sandbox's lifetime is kept by agentboxd, which answers "
           "supervisor/timeout/* through its API (/v1/sandboxes/{id}/api/v1/supervisor/" +
               op +
               "); this guest was reached directly, so it cannot read or change that "
               "lifetime"));
}

void SupervisorApi::Status(http::Respond respond) {
  const double now = NowUnix();
  Json list = Json::array();
  list.push_back(Entry("agentbox-guest", Uptime(::getpid(), guest_started_, now), guest_started_,
                       0, now, ServiceState::kRunning, "", 0, ::getpid()));
  for (const auto& s : services_.Status()) {
    list.push_back(Entry(s.name, Describe(s, now), s.started_at, s.stopped_at, now, s.state,
                         s.spawn_error, s.exit_status, s.pid));
  }
  respond(http::OkResponse(std::move(list), "Services status retrieved successfully"));
}

void SupervisorApi::Stop(http::Respond respond) {
  services_.StopAll(kStopGrace, [respond](std::vector<std::string> stopped) {
    Json d = ActionResult("stopped");
    d["result"] = stopped;
    respond(http::OkResponse(std::move(d), "All services stopped"));
  });
}

void SupervisorApi::Shutdown(http::Respond respond) {
  services_.StopAll(kStopGrace, [respond](std::vector<std::string> stopped) {
    Json d = ActionResult("shutdown");
    d["shutdown_result"] = stopped;
    respond(http::OkResponse(std::move(d),
                             "Services shut down; agentbox-guest keeps serving the sandbox API "
                             "(end the sandbox with DELETE /v1/sandboxes/{id})"));
  });
}

void SupervisorApi::Restart(http::Respond respond) {
  services_.StopAll(kStopGrace, [this, respond](std::vector<std::string> stopped) {
    Json d = ActionResult("restarted");
    d["stop_result"] = stopped;
    d["start_result"] = services_.StartAll();
    respond(http::OkResponse(std::move(d), "All services restarted"));
  });
}

}  // namespace agentbox::guest
