#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>

#include "backends/cloudrun/sessions.h"
#include "backends/cloudrun/workspace_files.h"
#include "common/worker_pool.h"
#include "http/server.h"

namespace agentbox::cloudrun {

// Finds the sandbox an X-Access-Token belongs to ("<id>:<secret>", the record's token).
// kUnauthorized for a wrong token, kNotFound for a sandbox that is gone.
using TokenResolver = std::function<Result<SandboxRef>(const std::string& token)>;

// The guest API of every cloudrun sandbox, served in the daemon on one unix socket (the
// sandboxes' guest_endpoint), so the daemon forwards to cloudrun sandboxes exactly as to any
// guest: shell/exec and shell/run become executions (SessionEngine), file operations are
// answered from Cloud Storage (WorkspaceFiles), with the guest's envelopes and fields. What job
// mode cannot do (PTY, stdin, background processes, live streaming) is a 400 naming the mode
// and the alternative. Blocking work runs on a worker pool, never on the io threads.
class GuestServer : public http::Dispatcher {
 public:
  GuestServer(boost::asio::io_context& io, SessionEngine& sessions, WorkspaceFiles& files,
              TokenResolver resolve);
  ~GuestServer() override;

  std::unique_ptr<http::BodySink> StreamBody(const http::Request& req) override;
  void Handle(http::Request req, http::Respond respond) override;

 private:
  void Route(const SandboxRef& sb, const http::Request& req, const Json& body,
             http::Respond respond);
  void ShellExec(const SandboxRef& sb, const Json& b, http::Respond respond);
  void ShellRun(const SandboxRef& sb, const Json& b, http::Respond respond);
  void ShellView(const SandboxRef& sb, const Json& b, http::Respond respond);
  void ShellWait(const SandboxRef& sb, const Json& b, http::Respond respond);
  void ShellKill(const SandboxRef& sb, const Json& b, http::Respond respond);
  void ShellList(const SandboxRef& sb, http::Respond respond);
  void ShellDelete(const SandboxRef& sb, const Json& b, http::Respond respond);
  void ShellState(const SandboxRef& sb, const Json& b, http::Respond respond);
  void ShellRestore(const SandboxRef& sb, const Json& b, http::Respond respond);
  void Download(const SandboxRef& sb, const http::Request& req, http::Respond respond);

  boost::asio::io_context& io_;
  SessionEngine& sessions_;
  WorkspaceFiles& files_;
  TokenResolver resolve_;
  WorkerPool pool_;
};

// The error for what job mode cannot do: `what` is missing, `instead` says what to do.
Error Unsupported(const std::string& what, const std::string& instead);

}  // namespace agentbox::cloudrun
