#include "guest/supervisor/service_supervisor.h"

#include <csignal>
#include <set>

#include "common/json_util.h"
#include "common/log.h"
#include "common/time_util.h"

namespace agentbox::guest {

namespace {

constexpr const char* kGuestEntryName = "agentbox-guest";

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) {
    return false;
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::string SessionOf(const std::string& name) { return "service:" + name; }

}  // namespace

Result<ServiceSpec> ParseServiceFlag(const std::string& flag) {
  const size_t eq = flag.find('=');
  if (eq == std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "--service '" + flag + "': expected NAME=COMMAND");
  }
  return ServiceSpec{flag.substr(0, eq), flag.substr(eq + 1)};
}

Result<std::vector<ServiceSpec>> ParseServicesJson(const std::string& json) {
  auto obj = ParseJsonObject(json);
  if (!obj) {
    return Fail(ErrorCode::kInvalidArgument,
                "AGENTBOX_SERVICES must be a JSON object {\"NAME\": \"COMMAND\"}: " +
                    obj.error().message);
  }
  std::vector<ServiceSpec> out;
  for (const auto& [name, command] : obj->items()) {
    if (!command.is_string()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "AGENTBOX_SERVICES: the command of service '" + name + "' must be a string");
    }
    out.push_back({name, command.get<std::string>()});
  }
  return out;
}

Result<void> CheckServices(const std::vector<ServiceSpec>& services) {
  std::set<std::string> seen;
  for (const auto& s : services) {
    if (!ValidName(s.name)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "service name '" + s.name + "' must be 1-64 characters of [A-Za-z0-9_.-]");
    }
    if (s.name == kGuestEntryName) {
      return Fail(ErrorCode::kInvalidArgument,
                  "service name 'agentbox-guest' is reserved for the guest itself");
    }
    if (!seen.insert(s.name).second) {
      return Fail(ErrorCode::kInvalidArgument, "service '" + s.name + "' is given twice");
    }
    if (s.command.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "service '" + s.name + "' has an empty command");
    }
  }
  return {};
}

int StateCode(ServiceState s) {
  switch (s) {
    case ServiceState::kStopped:
      return 0;
    case ServiceState::kStarting:
      return 10;
    case ServiceState::kRunning:
      return 20;
    case ServiceState::kBackoff:
      return 30;
    case ServiceState::kStopping:
      return 40;
    case ServiceState::kExited:
      return 100;
    case ServiceState::kFatal:
      return 200;
  }
  return 1000;
}

const char* StateName(ServiceState s) {
  switch (s) {
    case ServiceState::kStopped:
      return "STOPPED";
    case ServiceState::kStarting:
      return "STARTING";
    case ServiceState::kRunning:
      return "RUNNING";
    case ServiceState::kBackoff:
      return "BACKOFF";
    case ServiceState::kStopping:
      return "STOPPING";
    case ServiceState::kExited:
      return "EXITED";
    case ServiceState::kFatal:
      return "FATAL";
  }
  return "UNKNOWN";
}

ServiceSupervisor::ServiceSupervisor(boost::asio::io_context& io, ProcessManager& processes,
                                     const SessionManager& sessions,
                                     std::vector<ServiceSpec> services)
    : io_(io), processes_(processes), sessions_(sessions) {
  for (auto& s : services) {
    Service svc;
    svc.spec = std::move(s);
    services_.push_back(std::move(svc));
  }
}

ServiceStatus ServiceSupervisor::StatusOf(const Service& s) const {
  ServiceStatus st;
  st.name = s.spec.name;
  st.started_at = s.started_at;
  st.stopped_at = s.stopped_at;
  st.spawn_error = s.spawn_error;
  if (!s.spawn_error.empty()) {
    st.state = ServiceState::kFatal;
    return st;
  }
  if (s.pid == 0) {
    st.state = ServiceState::kStopped;
    return st;
  }
  for (const auto& p : processes_.List(SessionOf(s.spec.name))) {
    if (p.pid != s.pid) {
      continue;
    }
    if (p.running) {
      st.pid = p.pid;
      st.state = s.stopping ? ServiceState::kStopping : ServiceState::kRunning;
    } else {
      st.exit_status = p.exit_code.value_or(-1);
      st.stopped_at = p.ended_at.value_or(s.stopped_at);
      // Stopped on request reads STOPPED, as in supervisord; ended by itself, EXITED.
      st.state = s.stopping ? ServiceState::kStopped : ServiceState::kExited;
    }
    return st;
  }
  st.state = s.stopping ? ServiceState::kStopped : ServiceState::kExited;  // record pruned
  return st;
}

std::vector<ServiceStatus> ServiceSupervisor::Status() const {
  std::vector<ServiceStatus> out;
  for (const auto& s : services_) {
    out.push_back(StatusOf(s));
  }
  return out;
}

std::vector<std::string> ServiceSupervisor::StartAll() {
  std::vector<std::string> started;
  for (auto& s : services_) {
    if (StatusOf(s).state == ServiceState::kRunning) {
      continue;
    }
    auto pid = processes_.Start(SessionOf(s.spec.name), s.spec.command, sessions_.initial_state(),
                                std::nullopt, {});
    s.stopping = false;
    if (!pid) {
      s.pid = 0;
      s.spawn_error = pid.error().message;
      Log(LogLevel::kWarn, "service.start_failed", "name={} error=\"{}\"", s.spec.name,
          s.spawn_error);
      continue;
    }
    s.pid = *pid;
    s.spawn_error.clear();
    s.started_at = NowUnix();
    Log(LogLevel::kInfo, "service.started", "name={} pid={}", s.spec.name, s.pid);
    started.push_back(s.spec.name);
  }
  return started;
}

void ServiceSupervisor::StopAll(std::chrono::milliseconds grace,
                                std::function<void(std::vector<std::string>)> done) {
  std::vector<std::string> names;
  for (auto& s : services_) {
    if (StatusOf(s).state != ServiceState::kRunning) {
      continue;
    }
    s.stopping = true;
    s.stopped_at = NowUnix();
    KillRequest k;
    k.pid = s.pid;
    k.signal = SIGTERM;
    (void)processes_.Kill(k);
    Log(LogLevel::kInfo, "service.stopping", "name={} pid={}", s.spec.name, s.pid);
    names.push_back(s.spec.name);
  }
  auto timer = std::make_shared<boost::asio::steady_timer>(io_);
  PollStopped(std::move(timer), std::chrono::steady_clock::now() + grace, false, std::move(names),
              std::move(done));
}

void ServiceSupervisor::PollStopped(std::shared_ptr<boost::asio::steady_timer> timer,
                                    std::chrono::steady_clock::time_point kill_at, bool killed,
                                    std::vector<std::string> names,
                                    std::function<void(std::vector<std::string>)> done) {
  bool any_running = false;
  for (auto& s : services_) {
    if (s.stopping && StatusOf(s).state == ServiceState::kStopping) {
      any_running = true;
      if (!killed && std::chrono::steady_clock::now() >= kill_at) {
        KillRequest k;
        k.pid = s.pid;
        k.signal = SIGKILL;
        (void)processes_.Kill(k);
        Log(LogLevel::kWarn, "service.killed", "name={} pid={} reason=grace_expired",
            s.spec.name, s.pid);
      }
    }
  }
  // A process SIGKILLed 5 s ago that still shows running is stuck in the kernel (D state):
  // answer anyway rather than hold the request forever; Status() keeps saying STOPPING.
  if (!any_running || std::chrono::steady_clock::now() >= kill_at + std::chrono::seconds(5)) {
    done(std::move(names));
    return;
  }
  if (std::chrono::steady_clock::now() >= kill_at) {
    killed = true;
  }
  timer->expires_after(std::chrono::milliseconds(20));
  timer->async_wait([this, timer, kill_at, killed, names = std::move(names),
                     done = std::move(done)](const boost::system::error_code&) mutable {
    PollStopped(timer, kill_at, killed, std::move(names), std::move(done));
  });
}

}  // namespace agentbox::guest
