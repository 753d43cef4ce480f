#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "guest/processes/process_manager.h"
#include "guest/sessions/session_manager.h"

namespace agentbox::guest {

// A service the sandbox was started with: a long-running command the guest starts at launch and
// that `/api/v1/supervisor/*` reports on, stops and restarts (docs/guest-api.md, "Supervisor").
struct ServiceSpec {
  std::string name;
  std::string command;
};

// Parses the services of `--service NAME=COMMAND` and of AGENTBOX_SERVICES (a JSON object
// {"NAME": "COMMAND", ...}). Names are 1-64 characters of [A-Za-z0-9_.-], unique, and never
// "agentbox-guest" (the entry of the guest itself); commands are non-empty. kInvalidArgument with
// a message naming the bad entry otherwise.
Result<ServiceSpec> ParseServiceFlag(const std::string& flag);
Result<std::vector<ServiceSpec>> ParseServicesJson(const std::string& json);
Result<void> CheckServices(const std::vector<ServiceSpec>& services);

// supervisord's process states, by the numbers and names its clients know.
enum class ServiceState { kStopped, kStarting, kRunning, kBackoff, kStopping, kExited, kFatal };
int StateCode(ServiceState s);
const char* StateName(ServiceState s);

struct ServiceStatus {
  std::string name;
  ServiceState state = ServiceState::kStopped;
  pid_t pid = 0;              // 0 when not running
  double started_at = 0;      // unix seconds of the last start, 0 if never
  double stopped_at = 0;      // unix seconds of the last stop or exit, 0 if never
  int exit_status = 0;        // of the last run
  std::string spawn_error;    // why the last start failed
};

// Runs the services as background processes of the ProcessManager (session "service:NAME", so
// process/list and process/logs show them and their output). The guest itself is never one of
// them: stopping every service leaves the API up. Threading: io thread only, as ProcessManager.
class ServiceSupervisor {
 public:
  ServiceSupervisor(boost::asio::io_context& io, ProcessManager& processes,
                    const SessionManager& sessions, std::vector<ServiceSpec> services);

  // Starts every service not running. Returns the names started, in order.
  std::vector<std::string> StartAll();
  // Sends SIGTERM to every running service's process group, SIGKILL to those still running
  // after `grace`, then calls `done` (on the io thread) with the names stopped.
  void StopAll(std::chrono::milliseconds grace,
               std::function<void(std::vector<std::string>)> done);
  std::vector<ServiceStatus> Status() const;
  bool empty() const { return services_.empty(); }

 private:
  struct Service {
    ServiceSpec spec;
    pid_t pid = 0;
    bool stopping = false;
    double started_at = 0;
    double stopped_at = 0;
    std::string spawn_error;
  };
  // Refreshes the record of a service from the ProcessManager (it may have exited by itself).
  ServiceStatus StatusOf(const Service& s) const;
  void PollStopped(std::shared_ptr<boost::asio::steady_timer> timer,
                   std::chrono::steady_clock::time_point kill_at, bool killed,
                   std::vector<std::string> names,
                   std::function<void(std::vector<std::string>)> done);

  boost::asio::io_context& io_;
  ProcessManager& processes_;
  const SessionManager& sessions_;
  std::vector<Service> services_;
};

}  // namespace agentbox::guest
