#include "backends/cloudrun/guest_server.h"

#include <boost/asio/post.hpp>

#include "api/session_state.h"
#include "common/ansi.h"
#include "common/strings.h"
#include "guest/files/multipart.h"
#include "guest/files/upload_form.h"
#include "guest/posted_object.h"
#include "guest/request_fields.h"
#include "http/envelope.h"
#include "http/field_check.h"

namespace agentbox::cloudrun {

namespace asio = boost::asio;
using http::Respond;

namespace {

#define CR_CHECK(expr)                             \
  if (auto check_r = (expr); !check_r) {           \
    respond(http::ErrorResponse(check_r.error())); \
    return;                                        \
  }

#define CR_TRY(var, expr) AGENTBOX_TRY_OR_RESPOND(var, expr)

http::Response Ok(Json data, const std::string& message = "ok") {
  return http::OkResponse(std::move(data), message);
}
http::Response Err(const Error& e) { return http::ErrorResponse(e); }

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

Result<void> ValidSessionId(const std::string& id) {
  if (id.size() > 128) {
    return Fail(FieldError("id", "must be at most 128 bytes"));
  }
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f || c == '/') {
      return Fail(FieldError("id", "must not contain control characters or '/'"));
    }
  }
  return {};
}

std::string OutputOf(const Json& result) {
  if (!result.is_object()) {
    return "";
  }
  if (result.contains("output") && result["output"].is_string()) {
    return result["output"].get<std::string>();
  }
  return ValueOr(result, "stdout", "") + ValueOr(result, "stderr", "");
}

Json CommandJson(const std::string& sid, const Outcome& o, bool strip) {
  const std::string output = OutputOf(o.result);
  Json d = {
      {"session_id", sid},
      {"command", o.last.command},
      {"status", "completed"},
      {"output", strip ? StripAnsi(output) : output},
      {"output_truncated", o.result.is_object() && ValueOr(o.result, "output_truncated", false)},
      {"cwd", o.cwd}};
  d["returncode"] = OptToJson(o.last.exit_code);
  if (o.last.timed_out) {
    d["timed_out"] = true;
  }
  if (o.last.killed) {
    d["killed"] = true;
  }
  return d;
}

Json RunningJson(const std::string& sid, const std::string& command, const std::string& cwd) {
  return {{"session_id", sid},         {"command", command}, {"status", "running"},  {"output", ""},
          {"output_truncated", false}, {"cwd", cwd},         {"returncode", nullptr}};
}

// True when `cmd` ends in a single '&' (a background job), as the guest's shell/run sees it.
bool TrailingAmpersand(const std::string& cmd) {
  size_t end = cmd.find_last_not_of(" \t\n\r");
  if (end == std::string::npos || cmd[end] != '&') {
    return false;
  }
  return !(end > 0 && (cmd[end - 1] == '&' || cmd[end - 1] == '>' || cmd[end - 1] == '|'));
}

Error Failed(const Outcome& o) {
  return Error{o.last.request_error ? ErrorCode::kInvalidArgument : ErrorCode::kUnavailable,
               o.last.error};
}

// Spools a multipart upload into a scratch file (guest/files/upload_form.h reads the form as the
// guest does), then stores it in the bucket.
class UploadBody : public http::BodySink {
 public:
  UploadBody(std::string boundary, std::optional<std::string> path, std::string token,
             WorkspaceFiles& files, TokenResolver& resolve, WorkerPool& pool)
      : form_(std::move(boundary), std::move(path), ScratchConfig(files),
              /*open_at_path=*/false),
        token_(std::move(token)),
        files_(files),
        resolve_(resolve),
        pool_(pool) {}

  Result<void> OnData(std::string_view bytes) override { return form_.Feed(bytes); }

  void OnEnd(Respond respond) override {
    if (auto r = form_.Finish(); !r) {
      respond(Err(r.error()));
      return;
    }
    if (!http::AcceptFields(guest::CheckUploadFields(form_.field_names()), "/api/v1/file/upload",
                            respond)) {
      return;
    }
    auto& spooled = form_.sink();
    const auto& path = form_.path();
    if (!spooled) {
      respond(Err(FieldError("file", "is required (a multipart file part)")));
      return;
    }
    if (!path || path->empty()) {
      respond(Err(FieldError("path", "is required (form field or ?path=)")));
      return;
    }
    auto sink = std::make_shared<guest::UploadSink>(std::move(*spooled));
    spooled.reset();
    pool_.Post([this_files = &files_, resolve = resolve_, token = token_, path = *path, sink,
                respond] {
      auto sb = resolve(token);
      if (!sb) {
        respond(Err(sb.error()));
        return;
      }
      auto rel = WorkspaceFiles::Relative(path);
      if (!rel) {
        respond(Err(rel.error()));
        return;
      }
      // Committed to a private scratch name, then stored under its real name.
      const std::string local = this_files->scratch_root() + "/upload-" + RandomId(12);
      auto committed = sink->Commit(local);
      if (!committed) {
        respond(Err(committed.error()));
        return;
      }
      auto r = this_files->Store(sb->id, path, *committed, sink->bytes_written(), sb->disk_bytes);
      ::unlink(committed->c_str());
      respond(r ? Ok(std::move(*r), "File uploaded successfully") : Err(r.error()));
    });
  }

 private:
  static guest::FileConfig ScratchConfig(WorkspaceFiles& files) {
    guest::FileConfig cfg = files.limits();
    cfg.upload_tmp_dir = files.scratch_root();
    cfg.base_dir = files.scratch_root();
    return cfg;
  }

  guest::UploadForm form_;
  std::string token_;
  WorkspaceFiles& files_;
  TokenResolver& resolve_;
  WorkerPool& pool_;
};

class RejectBody : public http::BodySink {
 public:
  explicit RejectBody(Error e) : e_(std::move(e)) {}
  Result<void> OnData(std::string_view) override { return Fail(e_); }
  void OnEnd(Respond respond) override { respond(Err(e_)); }

 private:
  Error e_;
};

}  // namespace

Error Unsupported(const std::string& what, const std::string& instead) {
  return Error{ErrorCode::kInvalidArgument,
               "cloudrun job mode runs one Cloud Run execution per command and nothing between "
               "commands, so " +
                   what + " is not available; " + instead};
}

GuestServer::GuestServer(asio::io_context& io, SessionEngine& sessions, WorkspaceFiles& files,
                         TokenResolver resolve)
    : io_(io),
      sessions_(sessions),
      files_(files),
      resolve_(std::move(resolve)),
      pool_(16, guest::kFileStackBytes) {}

GuestServer::~GuestServer() = default;

std::unique_ptr<http::BodySink> GuestServer::StreamBody(const http::Request& req) {
  if (req.path != "/api/v1/file/upload" || req.method != "POST") {
    return nullptr;
  }
  auto boundary = guest::MultipartParser::BoundaryFromContentType(req.Header("content-type"));
  if (!boundary) {
    return std::make_unique<RejectBody>(boundary.error());
  }
  // The token is checked when the body is complete (off the io thread).
  return std::make_unique<UploadBody>(*boundary, req.QueryParam("path"),
                                      req.Header("x-access-token"), files_, resolve_, pool_);
}

void GuestServer::Handle(http::Request req, Respond respond) {
  pool_.Post([this, req = std::move(req), respond = std::move(respond)] {
    auto sb = resolve_(req.Header("x-access-token"));
    if (!sb) {
      respond(Err(sb.error()));
      return;
    }
    if (req.method == "GET") {
      if (req.path == "/api/v1/health" || req.path == "/health" || req.path == "/healthz") {
        respond(Ok({{"mode", "cloudrun-job"},
                    {"sandbox", sb->id},
                    {"job", sb->job_id},
                    {"state_persistence", "full (snapshots in Cloud Storage)"}}));
        return;
      }
      if (req.path == "/api/v1/file/download") {
        Download(*sb, req, respond);
        return;
      }
      if (req.path == "/api/v1/shell/list") {
        ShellList(*sb, respond);
        return;
      }
      if (req.path == "/api/v1/shell/stream") {
        respond(Err(Unsupported("streaming output while a command runs",
                                "its output arrives when the execution ends: use shell/wait, "
                                "then shell/view")));
        return;
      }
    }
    auto body = guest::PostedObject(req, respond);
    if (!body) {
      return;
    }
    Route(*sb, req, *body, respond);
  });
}

void GuestServer::Route(const SandboxRef& sb, const http::Request& req, const Json& b,
                        Respond respond) {
  const std::string& p = req.path;
  // Unknown fields: warned about or refused exactly as the guest does.
  if (!http::AcceptFields(guest::CheckGuestFields(p, b), p, respond)) {
    return;
  }
  if (p.starts_with("/api/v1/shell/")) {
    const std::string op = p.substr(14);
    if (op == "exec") {
      return ShellExec(sb, b, respond);
    }
    if (op == "run") {
      return ShellRun(sb, b, respond);
    }
    if (op == "view") {
      return ShellView(sb, b, respond);
    }
    if (op == "wait") {
      return ShellWait(sb, b, respond);
    }
    if (op == "kill") {
      return ShellKill(sb, b, respond);
    }
    if (op == "write") {
      return respond(Err(Unsupported(
          "input to a running command (stdin)",
          "give the input in the command itself (a here-document or `printf ... | cmd`), or use "
          "the docker or jail backend")));
    }
    if (op == "list") {
      return ShellList(sb, respond);
    }
    if (op == "delete") {
      return ShellDelete(sb, b, respond);
    }
    if (op == "state") {
      return ShellState(sb, b, respond);
    }
    if (op == "restore") {
      return ShellRestore(sb, b, respond);
    }
  } else if (p.starts_with("/api/v1/process/")) {
    const std::string op = p.substr(16);
    if (op == "start" || op == "list" || op == "logs" || op == "kill") {
      return respond(Err(Unsupported("background processes",
                                     "run commands in the foreground (shell/exec, shell/run), or "
                                     "use the docker or jail backend")));
    }
  } else if (p.starts_with("/api/v1/file/")) {
    const std::string op = p.substr(13);
    auto r = files_.Op(op, sb.id, b, sb.disk_bytes);
    return respond(r ? Ok(std::move(*r)) : Err(r.error()));
  }
  respond(http::ErrorResponse(404, "no such endpoint: POST " + p));
}

void GuestServer::ShellExec(const SandboxRef& sb, const Json& b, Respond respond) {
  JsonFields f(b);
  CR_TRY(command, f.String("command"));
  CR_TRY(id, f.OptString("id"));
  CR_TRY(exec_dir, f.OptString("exec_dir"));
  CR_TRY(wait, f.OptNumber("wait_seconds", 0, 86400));
  CR_TRY(timeout, f.OptNumber("timeout", 0, 7 * 86400));
  CR_TRY(pty, f.OptBool("pty"));
  if (pty.value_or(false)) {
    return respond(Err(Unsupported("a terminal (pty)",
                                   "run the command without pty, or use the docker or jail "
                                   "backend")));
  }
  if (command.find('\0') != std::string::npos) {
    return respond(Err(FieldError("command", "must not contain NUL bytes")));
  }
  const std::string sid = id && !id->empty() ? *id : RandomId();
  CR_CHECK(ValidSessionId(sid));
  SessionEngine::StartRequest sr;
  sr.command = command;
  sr.kind = "exec";
  sr.exec_dir = exec_dir.value_or("");
  if (timeout && *timeout > 0) {
    sr.timeout_s = *timeout;
  }
  CR_TRY(started, sessions_.Start(sb, sid, sr));
  sessions_.Wait(sb, sid, started.run, Millis(wait.value_or(5)),
                 [sid, command, cwd = started.cwd, respond](std::optional<Outcome> o) {
                   if (!o) {
                     return respond(Ok(RunningJson(sid, command, cwd)));
                   }
                   if (!o->last.error.empty()) {
                     return respond(Err(Failed(*o)));
                   }
                   respond(Ok(CommandJson(sid, *o, false)));
                 });
}

void GuestServer::ShellRun(const SandboxRef& sb, const Json& b, Respond respond) {
  JsonFields f(b);
  CR_TRY(command, f.String("command"));
  CR_TRY(sid_opt, f.OptString("session_id"));
  CR_TRY(timeout, f.OptNumber("timeout", 0, 7 * 86400));
  const std::string sid = sid_opt.value_or("default");
  CR_CHECK(ValidSessionId(sid));
  if (TrailingAmpersand(command)) {
    return respond(Err(Unsupported("background processes (a command ending in '&')",
                                   "run it in the foreground, or use the docker or jail backend")));
  }
  SessionEngine::StartRequest sr;
  sr.command = command;
  sr.kind = "run";
  const double t = timeout.value_or(120);
  if (t > 0) {
    sr.timeout_s = t;
  }
  CR_TRY(started, sessions_.Start(sb, sid, sr));
  // The execution's own timeout ends it; this wait is only a backstop.
  sessions_.Wait(
      sb, sid, started.run, std::chrono::hours(24 * 8), [sid, respond](std::optional<Outcome> o) {
        if (!o) {
          return respond(Err({ErrorCode::kTimeout, "the command did not complete"}));
        }
        if (!o->last.error.empty()) {
          return respond(Err(Failed(*o)));
        }
        const Json& r = o->result;
        Json d = {{"exit_code", OptToJson(o->last.exit_code)},
                  {"stdout", r.is_object() ? ValueOr(r, "stdout", "") : ""},
                  {"stderr", r.is_object() ? ValueOr(r, "stderr", "") : ""},
                  {"cwd", o->cwd},
                  {"session_id", sid},
                  {"output_truncated", r.is_object() && ValueOr(r, "output_truncated", false)},
                  {"timed_out", o->last.timed_out}};
        respond(Ok(std::move(d)));
      });
}

void GuestServer::ShellView(const SandboxRef& sb, const Json& b, Respond respond) {
  JsonFields f(b);
  CR_TRY(id, f.NonEmptyString("id"));
  CR_TRY(console, f.OptBool("console"));
  CR_TRY(raw, f.OptBool("raw"));
  CR_TRY(head, sessions_.ReadHead(sb.id, id));
  const bool strip = !raw.value_or(false);
  Json d;
  if (head.running) {
    d = RunningJson(id, head.running->command, head.cwd);
  } else if (head.last) {
    Outcome o;
    o.last = *head.last;
    o.cwd = head.cwd;
    CR_TRY(result, sessions_.ReadResult(head.last->result_object));
    o.result = result;
    d = CommandJson(id, o, strip);
    if (!o.last.error.empty()) {
      d["error"] = o.last.error;
    }
  } else {
    d = {{"session_id", id},
         {"output", ""},
         {"status", "idle"},
         {"returncode", nullptr},
         {"cwd", head.cwd}};
  }
  if (console.value_or(false)) {
    // Job mode keeps the last command's output only (each execution is its own console).
    Json list = Json::array();
    if (head.last) {
      list.push_back({{"ps1", ""}, {"command", head.last->command}, {"output", d["output"]}});
    }
    d["console"] = std::move(list);
  }
  respond(Ok(std::move(d)));
}

void GuestServer::ShellWait(const SandboxRef& sb, const Json& b, Respond respond) {
  JsonFields f(b);
  CR_TRY(id, f.NonEmptyString("id"));
  CR_TRY(seconds, f.OptNumber("seconds", 0, 86400));
  CR_TRY(head, sessions_.ReadHead(sb.id, id));
  if (!head.running) {
    return respond(Ok({{"returncode", head.last ? OptToJson(head.last->exit_code) : Json()}}));
  }
  const double s = seconds.value_or(60);
  sessions_.Wait(sb, id, head.running->run, Millis(s), [s, respond](std::optional<Outcome> o) {
    if (!o) {
      std::string n = std::to_string(s);
      n.erase(n.find_last_not_of('0') + 1);
      if (!n.empty() && n.back() == '.') {
        n.pop_back();
      }
      return respond(Err({ErrorCode::kTimeout, "Wait timeout: " + n + " seconds"}));
    }
    if (!o->last.error.empty()) {
      return respond(Err(Failed(*o)));
    }
    respond(Ok({{"returncode", OptToJson(o->last.exit_code)}}));
  });
}

void GuestServer::ShellKill(const SandboxRef& sb, const Json& b, Respond respond) {
  JsonFields f(b);
  CR_TRY(id, f.NonEmptyString("id"));
  CR_TRY(head, sessions_.ReadHead(sb.id, id));
  CR_TRY(killed, sessions_.Kill(sb, id));
  if (!killed) {
    return respond(Ok({{"status", "already_terminated"},
                       {"returncode", head.last ? OptToJson(head.last->exit_code) : Json()}}));
  }
  // Within the daemon's deadline for shell/kill (10 s + its margin).
  sessions_.Wait(sb, id, head.running->run, std::chrono::seconds(10),
                 [respond](std::optional<Outcome> o) {
                   Json rc = o ? OptToJson(o->last.exit_code) : Json(nullptr);
                   respond(Ok({{"status", "terminated"}, {"returncode", rc}}));
                 });
}

void GuestServer::ShellList(const SandboxRef& sb, Respond respond) {
  CR_TRY(ids, sessions_.List(sb.id));
  Json list = Json::array();
  for (const auto& sid : ids) {
    auto head = sessions_.ReadHead(sb.id, sid);
    if (!head) {
      continue;  // deleted meanwhile
    }
    Json last = head->running ? Json(head->running->command)
                : head->last  ? Json(head->last->command)
                              : Json(nullptr);
    list.push_back({{"session_id", sid},
                    {"running", head->running.has_value()},
                    {"cwd", head->cwd},
                    {"last_command", last}});
  }
  respond(Ok({{"sessions", std::move(list)}}));
}

void GuestServer::ShellDelete(const SandboxRef& sb, const Json& b, Respond respond) {
  JsonFields f(b);
  CR_TRY(id, f.NonEmptyString("id"));
  CR_CHECK(sessions_.Delete(sb, id));
  respond(Ok({{"session_id", id}, {"deleted", true}}));
}

void GuestServer::ShellState(const SandboxRef& sb, const Json& b, Respond respond) {
  JsonFields f(b);
  CR_TRY(id, f.NonEmptyString("id"));
  CR_TRY(head, sessions_.ReadHead(sb.id, id));
  if (head.state_object.empty()) {
    return respond(
        Err({ErrorCode::kConflict,
             "session '" + id + "' has no snapshot yet: its first command has not completed"}));
  }
  CR_TRY(result, sessions_.ReadResult(head.state_object));
  if (!result.is_object() || !result.contains("state")) {
    return respond(Err({ErrorCode::kUnavailable, "session '" + id + "': snapshot object " +
                                                     head.state_object + " is corrupt"}));
  }
  respond(
      Ok({{"session_id", id}, {"running", head.running.has_value()}, {"state", result["state"]}}));
}

void GuestServer::ShellRestore(const SandboxRef& sb, const Json& b, Respond respond) {
  JsonFields f(b);
  CR_TRY(id, f.OptString("id"));
  auto it = b.find("state");
  if (it == b.end() || !it->is_object()) {
    return respond(Err(FieldError("state", "is required (an object as returned by shell/state)")));
  }
  CR_TRY(state, SessionStateFromJson(*it));
  const std::string sid = id && !id->empty() ? *id : RandomId();
  CR_CHECK(ValidSessionId(sid));
  CR_TRY(head, sessions_.Restore(sb.id, sid, SessionStateToJson(state)));
  respond(Ok({{"session_id", sid}, {"cwd", head.cwd}}));
}

void GuestServer::Download(const SandboxRef& sb, const http::Request& req, Respond respond) {
  auto path = req.QueryParam("path");
  if (!path || path->empty()) {
    return respond(Err(FieldError("path", "is required as a query parameter")));
  }
  CR_TRY(f, files_.Download(sb.id, *path));
  http::Response r;
  r.content_type = "application/octet-stream";
  std::string name;
  for (char c : f.name) {
    name += (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) ? '_' : c;
  }
  r.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + name + "\"");
  r.file = std::make_shared<UniqueFd>(std::move(f.fd));
  r.file_size = f.size;
  respond(std::move(r));
}

}  // namespace agentbox::cloudrun
