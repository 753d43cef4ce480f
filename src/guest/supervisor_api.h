#pragma once

#include <string>

#include "guest/supervisor/service_supervisor.h"
#include "http/server.h"

namespace agentbox::guest {

// `/api/v1/supervisor/*` of the ai-manus sandbox API (docs/guest-api.md, "Supervisor"), with
// agentbox's meaning: `status` lists the guest itself and the sandbox's services in supervisord's
// shape; stop, shutdown and restart act on the services only (the guest, which is the way back
// into the sandbox, keeps serving); the timeout endpoints belong to agentboxd, which keeps the
// sandbox's lifetime and answers them on its relay, so the guest reached directly says so.
// Threading: io thread only.
class SupervisorApi {
 public:
  SupervisorApi(ServiceSupervisor& services, double guest_started_unix);

  // Answers a request whose path starts with /api/v1/supervisor/.
  void Handle(const http::Request& req, http::Respond respond);

 private:
  void Status(http::Respond respond);
  void Stop(http::Respond respond);
  void Shutdown(http::Respond respond);
  void Restart(http::Respond respond);

  ServiceSupervisor& services_;
  double guest_started_;
};

}  // namespace agentbox::guest
