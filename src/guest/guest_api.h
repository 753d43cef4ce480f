#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "common/json_util.h"
#include "common/strings.h"
#include "common/worker_pool.h"
#include "guest/core/child_reaper.h"
#include "guest/files/dir_watch.h"
#include "http/queue_source.h"
#include "guest/files/file_ops.h"
#include "guest/processes/exec_manager.h"
#include "guest/processes/process_manager.h"
#include "guest/sessions/session_manager.h"
#include "http/server.h"
#include "http/transfer_threads.h"

namespace agentbox::guest {

class SupervisorApi;

inline constexpr const char* kGuestVersion = "0.1.0";

struct GuestOptions {
  std::string token;            // when set, every request needs X-Access-Token
  size_t output_cap = 1 << 20;  // per session console and per process log
  size_t max_sessions = 256;
  size_t max_process_records = 1024;
  int file_threads = 2;
  FileConfig files;
};

// The guest API of sandbox-api.md §1 as an HTTP dispatcher. Session and process calls run on
// the io thread; file operations run on a small pool so a slow disk or a large search never
// stalls the shell traffic.
class GuestApi : public http::Dispatcher {
 public:
  GuestApi(boost::asio::io_context& io, ChildReaper& reaper, SessionManager& sessions,
           ProcessManager& processes, ExecManager& exec, GuestOptions options);
  ~GuestApi() override;

  // Serves /api/v1/supervisor/* with `supervisor` (owned by the caller, outlives this).
  void SetSupervisor(SupervisorApi* supervisor) { supervisor_ = supervisor; }

  std::unique_ptr<http::BodySink> StreamBody(const http::Request& req) override;
  void Handle(http::Request req, http::Respond respond) override;
  // Uploads, downloads and archives run on raw connections (bulk_api.cc).
  bool WantsRaw(const http::Request& req) override;
  void HandleRaw(http::Request req, http::RawConnection conn) override;

  // Envelope helpers, also used for protocol-level errors by the server.
  static http::Response Ok(Json data, const std::string& message = "ok");
  static http::Response Err(const Error& e);
  static std::string ErrorBody(int status, const std::string& message);

 private:
  bool Authorized(const http::Request& req) const;
  void Route(const http::Request& req, Json body, http::Respond respond);

  void ShellExec(const Json& b, http::Respond respond);
  void ShellView(const Json& b, http::Respond respond);
  void ShellWait(const Json& b, http::Respond respond);
  void ShellWrite(const Json& b, http::Respond respond);
  void ShellKill(const Json& b, http::Respond respond);
  void ShellRun(const Json& b, http::Respond respond);
  void ShellList(http::Respond respond);
  void ShellStream(const http::Request& req, http::Respond respond);
  void ShellDelete(const Json& b, http::Respond respond);
  void ShellState(const Json& b, http::Respond respond);
  void ShellRestore(const Json& b, http::Respond respond);
  void ProcessStart(const Json& b, http::Respond respond);
  void ProcessList(const Json& b, http::Respond respond);
  void ProcessLogs(const Json& b, http::Respond respond);
  void ProcessKill(const Json& b, http::Respond respond);
  void Health(http::Respond respond);
  void FsWatch(const Json& b, http::Respond respond);
  // Bulk transfers (bulk_api.cc), on a transfer thread: answer on `fd` and return.
  void Transfer(const http::Request& req, int fd, std::string buffered);
  http::Response Upload(const http::Request& req, int fd, std::string buffered);
  void Download(const http::Request& req, int fd);
  void ArchiveGet(const http::Request& req, int fd);
  http::Response ArchivePost(const http::Request& req, int fd, std::string buffered);

  boost::asio::io_context& io_;
  ChildReaper& reaper_;
  SessionManager& sessions_;
  ProcessManager& processes_;
  ExecManager& exec_;
  DirWatches watches_;
  GuestOptions opts_;
  SupervisorApi* supervisor_ = nullptr;
  WorkerPool pool_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  http::TransferThreads transfers_;  // last: its threads use the members above
};

}  // namespace agentbox::guest
