#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/json_util.h"
#include "http/client.h"
#include "http/server.h"

namespace agentbox {
struct SandboxInfo;
}  // namespace agentbox

namespace agentbox::daemon {
class DaemonApi;
struct SandboxEntry;
}  // namespace agentbox::daemon

namespace agentbox::daemon::e2b {

struct Part;  // a file of a several-file write (envd_files.cc)

struct E2bOptions {
  // templateID -> image ("" = the backend's default image). AGENTBOX_E2B_TEMPLATES adds to it.
  std::map<std::string, std::string> templates = {{"base", ""}};
  int64_t default_timeout_s = 300;  // E2B's default sandbox lifetime
  // AGENTBOX_DOMAIN: the `domain` of created and connected sandboxes, so the SDK's getHost(port)
  // names `{port}-{id}.{domain}`, which agentboxd's port relay serves (docs/ports.md).
  std::string domain;
};

// Parses AGENTBOX_E2B_TEMPLATES ("name=image,name2=image2") on top of `base` -> default image.
Result<std::map<std::string, std::string>> ParseTemplates(const std::vector<std::string>& items);

// E2B's control plane (POST /sandboxes, GET /v2/sandboxes, ...; auth X-API-KEY) and envd
// (Connect-RPC process.Process/* and filesystem.Filesystem/*, GET/POST /files, GET /health;
// routed by the E2b-Sandbox-Id header, auth by the sandbox's envdAccessToken), served by
// agentboxd on its own listeners and translated onto the daemon's sandboxes and their guests
// (docs/e2b.md). A sandbox is the daemon's own: visible and usable through the native API too.
// Thread-safe; Handle() is called on the I/O thread.
class E2bApi {
 public:
  E2bApi(DaemonApi& daemon, E2bOptions options);

  // Whether `req` belongs to this layer: an envd call (E2b-Sandbox-Id header) or a control
  // plane path (/sandboxes..., /v2/sandboxes...).
  static bool Claims(const http::Request& req);
  void Handle(const http::Request& req, http::Respond respond);
  // POST /files streams its upload (spooled, then relayed to the guest); nullptr otherwise.
  std::unique_ptr<http::BodySink> StreamBody(const http::Request& req);
  // A backend replaced the guest of `info` on its own (cloudrun session mode: a lost
  // execution). E2B's `user` account lived in the old guest's memory: it is made again in
  // sandboxes created through this API (label e2b.template), then `done` runs (whatever the
  // outcome: a failure is logged, and the next Sandbox.connect tries again).
  void GuestReplaced(const SandboxInfo& info, std::function<void()> done);

 private:
  struct Caller {
    std::string owner;
    bool admin = false;
  };
  // The sandbox an envd call addresses, with its caller's user.
  struct Target {
    std::string id;
    std::string socket;  // guest's unix socket
    std::string guest_token;
    std::string backend;
    std::string user;
  };
  std::optional<Caller> Authenticate(const http::Request& req) const;

  // Control plane (e2b_api.cc).
  void ControlPlane(const http::Request& req, const Caller& caller, http::Respond respond);
  void Create(const http::Request& req, const Caller& caller, http::Respond respond);
  void Connect(const std::string& id, const http::Request& req, const Caller& caller,
               http::Respond respond);
  void GetOne(const std::string& id, const Caller& caller, http::Respond respond);
  void List(const http::Request& req, const Caller& caller, http::Respond respond);
  void Kill(const std::string& id, const Caller& caller, http::Respond respond);
  void SetTimeout(const std::string& id, const http::Request& req, const Caller& caller,
                  http::Respond respond);
  // GET /sandboxes/{id}/metrics: the native metrics as one SandboxMetric.
  void Metrics(const std::string& id, const Caller& caller, http::Respond respond);
  // Runs a native route of the daemon with `body` and hands its envelope's data (or the error
  // as {status, message}) to `done`.
  using NativeDone = std::function<void(int status, Json data, std::string message)>;
  void Native(const std::string& method, const std::string& path, const Json& body,
              const Caller& caller, NativeDone done);
  // Creates the `user` account with home /home/user in the sandbox when it lacks one.
  void EnsureUser(const SandboxInfo& info, std::function<void(Result<void>)> done);

  // envd (envd_routes.cc).
  void Envd(const http::Request& req, http::Respond respond);
  // Looks up the sandbox named by E2b-Sandbox-Id and checks X-Access-Token; answers the
  // error itself (REST or Connect shaped) and returns nullopt on failure.
  std::optional<Target> EnvdTarget(const http::Request& req, bool connect_shaped,
                                   const http::Respond& respond) const;
  void ProcessStream(const Target& t, const http::Request& req, const std::string& op,
                     http::Respond respond);
  // filesystem.Filesystem/CreateWatcher, GetWatcherEvents, RemoveWatcher (envd_watchers.cc):
  // the guest's fs/watch kept open by the daemon, its events buffered until fetched.
  struct Watcher;
  void Watchers(const Target& t, const std::string& method, const Json& msg,
                http::Respond respond);
  void PumpWatcher(std::shared_ptr<Watcher> w);
  // filesystem.Filesystem/WatchDir: the guest's fs/watch as WatchDirResponse envelopes.
  void WatchStream(const Target& t, const http::Request& req, http::Respond respond);
  void Unary(const Target& t, const std::string& method, const Json& msg, http::Respond respond);
  void Download(const Target& t, const http::Request& req, http::Respond respond);
  // Writes parts[next...] one after the other (each then given to t.user), then answers
  // `written` (the envd WriteInfo list).
  void UploadParts(const Target& t, std::shared_ptr<std::vector<Part>> parts, size_t next,
                   std::shared_ptr<Json> written, http::Respond done);
  void Health(const Target& t, http::Respond respond);
  // Calls the guest (JSON in, envelope out) and hands the envelope's data or error on.
  using GuestDone = std::function<void(Result<Json>)>;
  void CallGuest(const Target& t, const std::string& op, const Json& body, GuestDone done);

  DaemonApi& d_;
  E2bOptions opts_;
  std::mutex watchers_mu_;
  std::map<std::string, std::shared_ptr<Watcher>> watchers_;  // by watcherId
};

}  // namespace agentbox::daemon::e2b
