#include "guest/guest_api.h"

#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/ansi.h"
#include "common/log.h"
#include "common/utf8.h"
#include "guest/exec_api.h"
#include "guest/ai_manus_messages.h"
#include "guest/posted_object.h"
#include "guest/request_fields.h"
#include "guest/supervisor_api.h"
#include "http/envelope.h"
#include "http/field_check.h"

namespace agentbox::guest {

namespace asio = boost::asio;
using http::Respond;
using http::Response;

Response GuestApi::Ok(Json data, const std::string& message) {
  return http::OkResponse(std::move(data), message);
}

Response GuestApi::Err(const Error& e) { return http::ErrorResponse(e); }

std::string GuestApi::ErrorBody(int status, const std::string& message) {
  return http::ErrorBody(status, message);
}

namespace {

Response ErrStatus(int status, const std::string& message) {
  return http::ErrorResponse(status, message);
}

// Unwraps a Result or answers its error and returns from the handler.
#define AB_TRY(var, expr) AGENTBOX_TRY_OR_RESPOND(var, expr)

Json CommandJson(const Session& s, const CommandView& v, bool strip) {
  Json d = {{"session_id", s.id()},
            {"command", v.command},
            {"status", v.running ? "running" : "completed"},
            {"output", strip ? StripAnsi(v.output) : v.output},
            {"output_truncated", v.output_truncated},
            {"cwd", v.cwd}};
  d["returncode"] = v.exit_code ? Json(*v.exit_code) : Json(nullptr);
  if (v.timed_out) {
    d["timed_out"] = true;
  }
  if (v.killed) {
    d["killed"] = true;
  }
  return d;
}

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

// True when `cmd` ends in a single '&' (background), setting `stripped` to the command before it.
bool TrailingAmpersand(const std::string& cmd, std::string& stripped) {
  size_t end = cmd.find_last_not_of(" \t\n\r");
  if (end == std::string::npos || cmd[end] != '&') {
    return false;
  }
  if (end > 0 && (cmd[end - 1] == '&' || cmd[end - 1] == '>' || cmd[end - 1] == '|')) {
    return false;  // "&&" is a list, ">&" / "|&" are redirections
  }
  stripped = cmd.substr(0, end);
  const size_t last = stripped.find_last_not_of(" \t\n\r");
  if (last == std::string::npos) {
    return false;
  }
  stripped.resize(last + 1);
  return true;
}

// Server-Sent Events of one session's live output: `output` events carry new console bytes
// (UTF-8 complete, with their absolute offset), `status` events a finished command, and a
// comment every 15 s keeps idle connections alive. Ends when the session is deleted. Everything
// runs on the io thread, as sessions require.
class SessionStream : public http::BodySource {
 public:
  SessionStream(asio::io_context& io, std::shared_ptr<Session> session, uint64_t offset)
      : state_(std::make_shared<State>(io)) {
    state_->session = std::move(session);
    state_->offset = offset;
    // A stream opened while no command runs reports the last command's status after its
    // output: a client that starts following a command just as it ends, or reconnects after a
    // dropped stream, learns that it ended instead of waiting for a completion that never comes.
    const Session& s = *state_->session;
    state_->seen_completions = s.completions() - (!s.running() && s.completions() > 0 ? 1 : 0);
  }
  ~SessionStream() override { state_->timer.cancel(); }

  void Next(Callback cb) override { Produce(state_, std::move(cb)); }

 private:
  struct State {
    explicit State(asio::io_context& io) : timer(io) {}
    std::shared_ptr<Session> session;
    uint64_t offset = 0;
    uint64_t seen_completions = 0;
    asio::steady_timer timer;
    std::string event;  // kept alive until the next Next()
    bool waiting = false;
    bool done = false;
  };

  static void Produce(const std::shared_ptr<State>& st, Callback cb) {
    Session& s = *st->session;
    if (st->done) {
      cb(std::string_view(), true);
      return;
    }
    if (s.console_end() > st->offset) {
      RingBuffer::Slice slice = s.ReadConsole(st->offset, 64 * 1024);
      std::string bytes = std::move(slice.bytes);
      size_t skip = slice.missed ? Utf8LeadingContinuations(bytes) : 0;
      size_t keep = Utf8CompletePrefix(bytes);
      if (keep > skip) {
        Json ev = {{"offset", slice.offset + skip},
                   {"output", bytes.substr(skip, keep - skip)},
                   {"missed", slice.missed}};
        st->offset = slice.offset + keep;
        st->event =
            "event: output\nid: " + std::to_string(st->offset) + "\ndata: " + DumpJson(ev) + "\n\n";
        cb(st->event, false);
        return;
      }
    }
    if (s.completions() != st->seen_completions) {
      st->seen_completions = s.completions();
      auto cur = s.Current();
      Json ev = {{"status", "completed"},
                 {"command", cur ? cur->command : ""},
                 {"returncode", cur && cur->exit_code ? Json(*cur->exit_code) : Json(nullptr)},
                 {"cwd", s.state().cwd}};
      st->event = "event: status\ndata: " + DumpJson(ev) + "\n\n";
      cb(st->event, false);
      return;
    }
    if (s.shut_down()) {
      st->done = true;
      st->event = "event: end\ndata: {\"reason\":\"session deleted\"}\n\n";
      cb(st->event, true);
      return;
    }
    // Nothing new: wait for output, a completion, or the keep-alive tick, whichever is first.
    auto fired = std::make_shared<bool>(false);
    auto shared_cb = std::make_shared<Callback>(std::move(cb));
    std::weak_ptr<State> weak = st;
    s.NotifyOnChange([weak, fired, shared_cb] {
      auto locked = weak.lock();
      if (!locked || *fired) {
        return;
      }
      *fired = true;
      locked->timer.cancel();
      Produce(locked, std::move(*shared_cb));
    });
    st->timer.expires_after(std::chrono::seconds(15));
    st->timer.async_wait([weak, fired, shared_cb](const boost::system::error_code& ec) {
      auto locked = weak.lock();
      if (ec || !locked || *fired) {
        return;
      }
      *fired = true;
      locked->event = ": keep-alive\n\n";
      (*shared_cb)(locked->event, false);
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace

GuestApi::GuestApi(asio::io_context& io, ChildReaper& reaper, SessionManager& sessions,
                   ProcessManager& processes, ExecManager& exec, GuestOptions options)
    : io_(io),
      reaper_(reaper),
      sessions_(sessions),
      processes_(processes),
      exec_(exec),
      watches_(io),
      opts_(std::move(options)),
      pool_(static_cast<size_t>(std::max(1, opts_.file_threads)), kFileStackBytes) {}

GuestApi::~GuestApi() = default;

void GuestApi::FsWatch(const Json& b, Respond respond) {
  JsonFields f(b);
  auto path = f.NonEmptyString("path");
  auto recursive = f.OptBool("recursive");
  if (!path || !recursive) {
    respond(Err(!path ? path.error() : recursive.error()));
    return;
  }
  if (!path->starts_with("/")) {
    respond(Err(FieldError("path", "must be absolute")));
    return;
  }
  auto events = std::make_shared<http::QueueSource>();
  if (auto r = watches_.Start(*path, recursive->value_or(false), events); !r) {
    respond(Err(r.error()));
    return;
  }
  http::Response out;
  out.content_type = "application/x-ndjson";
  out.headers.emplace_back("Cache-Control", "no-cache");
  out.stream = std::move(events);
  respond(std::move(out));
}

bool GuestApi::Authorized(const http::Request& req) const {
  if (opts_.token.empty()) {
    return true;
  }
  return SecretEquals(req.Header("x-access-token"), opts_.token);
}

std::unique_ptr<http::BodySink> GuestApi::StreamBody(const http::Request&) {
  return nullptr;  // bodies worth streaming (uploads, archives) take the raw path instead
}

void GuestApi::Handle(http::Request req, Respond respond) {
  if (!Authorized(req)) {
    respond(Err({ErrorCode::kUnauthorized, "missing or wrong X-Access-Token"}));
    return;
  }
  if (supervisor_ && req.path.starts_with("/api/v1/supervisor/")) {
    supervisor_->Handle(req, std::move(respond));
    return;
  }
  if (req.method == "GET") {
    if (req.path == "/api/v1/health" || req.path == "/health" || req.path == "/healthz") {
      Health(std::move(respond));
      return;
    }
    if (req.path == "/api/v1/shell/list") {
      ShellList(std::move(respond));
      return;
    }
    if (req.path == "/api/v1/shell/stream") {
      ShellStream(req, std::move(respond));
      return;
    }
  }
  auto body = PostedObject(req, respond);
  if (!body) {
    return;
  }
  Route(req, std::move(*body), std::move(respond));
}

void GuestApi::Route(const http::Request& req, Json b, Respond respond) {
  const std::string& p = req.path;
  if (!http::AcceptFields(CheckGuestFields(p, b), p, respond)) {
    return;
  }
  if (p.starts_with("/api/v1/shell/")) {
    const std::string op = p.substr(14);
    if (op == "exec") {
      return ShellExec(b, std::move(respond));
    }
    if (op == "view") {
      return ShellView(b, std::move(respond));
    }
    if (op == "wait") {
      return ShellWait(b, std::move(respond));
    }
    if (op == "write") {
      return ShellWrite(b, std::move(respond));
    }
    if (op == "kill") {
      return ShellKill(b, std::move(respond));
    }
    if (op == "run") {
      return ShellRun(b, std::move(respond));
    }
    if (op == "delete") {
      return ShellDelete(b, std::move(respond));
    }
    if (op == "state") {
      return ShellState(b, std::move(respond));
    }
    if (op == "restore") {
      return ShellRestore(b, std::move(respond));
    }
    if (op == "list") {
      return ShellList(std::move(respond));
    }
  } else if (p.starts_with("/api/v1/process/")) {
    const std::string op = p.substr(16);
    if (op == "start") {
      return ProcessStart(b, std::move(respond));
    }
    if (op == "list") {
      return ProcessList(b, std::move(respond));
    }
    if (op == "logs") {
      return ProcessLogs(b, std::move(respond));
    }
    if (op == "kill") {
      return ProcessKill(b, std::move(respond));
    }
  } else if (p.starts_with("/api/v1/fs/")) {
    if (p == "/api/v1/fs/watch") {
      return FsWatch(b, std::move(respond));
    }
    if (HandleFs(pool_, opts_.files, p.substr(11), std::move(b), respond)) {
      return;
    }
  } else if (p.starts_with("/api/v1/exec/")) {
    return HandleExec(exec_, p.substr(13), b, std::move(respond));
  } else if (p.starts_with("/api/v1/file/")) {
    using FileOp = Result<Json> (*)(const Json&, const FileConfig&);
    const std::string op = p.substr(13);
    FileOp fn = nullptr;
    if (op == "read") {
      fn = &FileRead;
    } else if (op == "write") {
      fn = &FileWrite;
    } else if (op == "exists") {
      fn = &FileExists;
    } else if (op == "delete") {
      fn = &FileDelete;
    } else if (op == "list") {
      fn = &FileList;
    } else if (op == "replace") {
      fn = &FileReplace;
    } else if (op == "search") {
      fn = &FileSearch;
    } else if (op == "find") {
      fn = &FileFind;
    }
    if (fn) {
      pool_.Post([this, fn, b = std::move(b), endpoint = p.substr(8),
                  respond = std::move(respond)] {
        auto r = fn(b, opts_.files);
        if (!r) {
          return respond(Err(r.error()));
        }
        std::string message = AiManusMessage(endpoint, *r);
        respond(Ok(std::move(*r), message));
      });
      return;
    }
  }
  respond(ErrStatus(404, "no such endpoint: POST " + p));
}

void GuestApi::ShellExec(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(command, f.String("command"));
  AB_TRY(id, f.OptString("id"));
  AB_TRY(exec_dir, f.OptString("exec_dir"));
  AB_TRY(wait, f.OptNumber("wait_seconds", 0, 86400));
  AB_TRY(timeout, f.OptNumber("timeout", 0, 7 * 86400));
  AB_TRY(pty, f.OptBool("pty"));
  AB_TRY(session, sessions_.GetOrCreate(id.value_or("")));
  ExecOptions o;
  o.command = std::move(command);
  o.exec_dir = exec_dir;
  if (timeout && *timeout > 0) {
    o.timeout_s = *timeout;
  }
  o.stdio = pty.value_or(false) ? Stdio::kPty : Stdio::kSession;
  if (auto r = session->Start(o); !r) {
    respond(Err(r.error()));
    return;
  }
  session->WaitFor(Millis(wait.value_or(5)), [session, respond](bool) {
    Json d = CommandJson(*session, *session->Current(), false);
    std::string message = AiManusMessage("shell/exec", d);
    respond(Ok(std::move(d), message));
  });
}

void GuestApi::ShellView(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(id, f.NonEmptyString("id"));
  AB_TRY(console, f.OptBool("console"));
  AB_TRY(raw, f.OptBool("raw"));
  AB_TRY(session, sessions_.Get(id));
  const bool strip = !raw.value_or(false);
  auto cur = session->Current();
  Json d = {{"session_id", id},
            {"output", cur ? (strip ? StripAnsi(cur->output) : cur->output) : ""}};
  d["status"] = cur ? (cur->running ? "running" : "completed") : "idle";
  d["returncode"] = cur && cur->exit_code ? Json(*cur->exit_code) : Json(nullptr);
  d["cwd"] = session->state().cwd;
  if (console.value_or(false)) {
    Json list = Json::array();
    for (auto& e : session->Console()) {
      list.push_back({{"ps1", e.ps1},
                      {"command", e.command},
                      {"output", strip ? StripAnsi(e.output) : e.output}});
    }
    d["console"] = std::move(list);
  }
  respond(Ok(std::move(d), AiManusMessage("shell/view", nullptr)));
}

void GuestApi::ShellWait(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(id, f.NonEmptyString("id"));
  AB_TRY(seconds, f.OptNumber("seconds", 0, 86400));
  AB_TRY(session, sessions_.Get(id));
  const double s = seconds.value_or(60);
  session->WaitFor(Millis(s), [session, respond, s](bool completed) {
    if (!completed) {
      std::string n = std::to_string(s);
      n.erase(n.find_last_not_of('0') + 1);
      if (!n.empty() && n.back() == '.') {
        n.pop_back();
      }
      respond(Err({ErrorCode::kTimeout, "Wait timeout: " + n + " seconds"}));
      return;
    }
    auto cur = session->Current();
    Json rc = cur && cur->exit_code ? Json(*cur->exit_code) : Json(nullptr);
    Json d = {{"returncode", rc}};
    std::string message = AiManusMessage("shell/wait", d);
    respond(Ok(std::move(d), message));
  });
}

void GuestApi::ShellWrite(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(id, f.NonEmptyString("id"));
  AB_TRY(input, f.String("input"));
  AB_TRY(enter, f.OptBool("press_enter"));
  AB_TRY(session, sessions_.Get(id));
  if (enter.value_or(true)) {
    input += '\n';
  }
  if (auto r = session->WriteInput(input); !r) {
    respond(Err(r.error()));
    return;
  }
  respond(Ok({{"status", "success"}}, AiManusMessage("shell/write", nullptr)));
}

void GuestApi::ShellKill(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(id, f.NonEmptyString("id"));
  AB_TRY(session, sessions_.Get(id));
  if (!session->Kill()) {
    auto cur = session->Current();
    respond(Ok({{"status", "already_terminated"},
                {"returncode", cur && cur->exit_code ? Json(*cur->exit_code) : Json(nullptr)}},
               AiManusMessage("shell/kill", {{"status", "already_terminated"}})));
    return;
  }
  session->WaitFor(std::chrono::seconds(10), [session, respond](bool) {
    auto cur = session->Current();
    respond(Ok({{"status", "terminated"},
                {"returncode", cur && cur->exit_code ? Json(*cur->exit_code) : Json(nullptr)}},
               AiManusMessage("shell/kill", {{"status", "terminated"}})));
  });
}

void GuestApi::ShellRun(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(command, f.String("command"));
  AB_TRY(sid, f.OptString("session_id"));
  AB_TRY(timeout, f.OptNumber("timeout", 0, 7 * 86400));
  AB_TRY(session, sessions_.GetOrCreate(sid.value_or("default")));
  std::string bg;
  if (TrailingAmpersand(command, bg)) {
    if (session->running()) {
      respond(Err({ErrorCode::kConflict, "session '" + session->id() + "' is busy"}));
      return;
    }
    AB_TRY(pid, processes_.Start(session->id(), bg, session->state(), std::nullopt, {}));
    respond(Ok({{"exit_code", 0},
                {"stdout", ""},
                {"stderr", ""},
                {"cwd", session->state().cwd},
                {"session_id", session->id()},
                {"background_pid", pid}}));
    return;
  }
  ExecOptions o;
  o.command = std::move(command);
  o.timeout_s = timeout.value_or(120);
  if (*o.timeout_s <= 0) {
    o.timeout_s.reset();
  }
  o.stdio = Stdio::kNull;
  o.separate_streams = true;
  if (auto r = session->Start(o); !r) {
    respond(Err(r.error()));
    return;
  }
  // The timeout kills the command, so completion always comes; the wait is only a backstop.
  const double wait = o.timeout_s ? *o.timeout_s + 30 : 7 * 86400;
  session->WaitFor(Millis(wait), [session, respond](bool) {
    auto v = *session->Current();
    Json d = {{"exit_code", v.exit_code ? Json(*v.exit_code) : Json(nullptr)},
              {"stdout", v.stdout_text},
              {"stderr", v.stderr_text},
              {"cwd", v.cwd},
              {"session_id", session->id()},
              {"output_truncated", v.output_truncated},
              {"timed_out", v.timed_out}};
    respond(Ok(std::move(d)));
  });
}

void GuestApi::ShellList(Respond respond) {
  Json list = Json::array();
  for (const auto& s : sessions_.List()) {
    auto cur = s->Current();
    list.push_back({{"session_id", s->id()},
                    {"running", s->running()},
                    {"cwd", s->state().cwd},
                    {"last_command", cur ? Json(cur->command) : Json(nullptr)}});
  }
  respond(Ok({{"sessions", std::move(list)}}));
}

void GuestApi::ShellStream(const http::Request& req, Respond respond) {
  auto id = req.QueryParam("id");
  if (!id || id->empty()) {
    respond(Err(FieldError("id", "is required as a query parameter")));
    return;
  }
  AB_TRY(session, sessions_.Get(*id));
  uint64_t offset = session->command_start();
  if (auto o = req.QueryParam("offset"); o && !o->empty()) {
    char* end = nullptr;
    offset = std::strtoull(o->c_str(), &end, 10);
    if (end == o->c_str() || *end != '\0') {
      respond(Err(FieldError("offset", "must be a non-negative integer")));
      return;
    }
  }
  http::Response r;
  r.content_type = "text/event-stream";
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.stream = std::make_shared<SessionStream>(io_, session, offset);
  respond(std::move(r));
}

void GuestApi::ShellDelete(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(id, f.NonEmptyString("id"));
  if (auto r = sessions_.Remove(id); !r) {
    respond(Err(r.error()));
    return;
  }
  respond(Ok({{"session_id", id}, {"deleted", true}}));
}

void GuestApi::ShellState(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(id, f.NonEmptyString("id"));
  AB_TRY(session, sessions_.Get(id));
  respond(Ok({{"session_id", id},
              {"running", session->running()},
              {"state", SessionStateToJson(session->state())}}));
}

void GuestApi::ShellRestore(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(id, f.OptString("id"));
  auto it = b.find("state");
  if (it == b.end() || !it->is_object()) {
    respond(Err(FieldError("state", "is required (an object as returned by shell/state)")));
    return;
  }
  AB_TRY(state, SessionStateFromJson(*it));
  AB_TRY(session, sessions_.CreateFromState(id.value_or(""), std::move(state)));
  respond(Ok({{"session_id", session->id()}, {"cwd", session->state().cwd}}));
}

void GuestApi::ProcessStart(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(command, f.NonEmptyString("command"));
  AB_TRY(sid, f.OptString("session_id"));
  AB_TRY(cwd, f.OptString("cwd"));
  AB_TRY(env, f.OptStringMap("env"));
  const std::string session_id = sid && !sid->empty() ? *sid : "default";
  auto session = sessions_.Get(session_id);
  const SessionState& state = session ? (*session)->state() : sessions_.initial_state();
  AB_TRY(pid, processes_.Start(session_id, command, state, cwd, env));
  respond(Ok({{"pid", pid}, {"session_id", session_id}, {"command", command}}, "started"));
}

namespace {
Json ProcessJson(const ProcessInfo& p) {
  Json j = {{"pid", p.pid},
            {"session_id", p.session_id},
            {"command", p.command},
            {"running", p.running},
            {"started_at", p.started_at}};
  j["exit_code"] = p.exit_code ? Json(*p.exit_code) : Json(nullptr);
  if (p.ended_at) {
    j["ended_at"] = *p.ended_at;
  }
  return j;
}
}  // namespace

void GuestApi::ProcessList(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(sid, f.OptString("session_id"));
  Json list = Json::array();
  for (const auto& p : processes_.List(sid)) {
    list.push_back(ProcessJson(p));
  }
  respond(Ok(std::move(list)));
}

void GuestApi::ProcessLogs(const Json& b, Respond respond) {
  JsonFields f(b);
  AB_TRY(pid, f.OptInt("pid", 1, INT32_MAX));
  if (!pid) {
    respond(Err(FieldError("pid", "is required")));
    return;
  }
  AB_TRY(offset, f.OptInt("offset", 0, INT64_MAX));
  AB_TRY(max_bytes, f.OptInt("max_bytes", 1, 64ll << 20));
  AB_TRY(logs, processes_.Logs(static_cast<pid_t>(*pid), static_cast<uint64_t>(offset.value_or(0)),
                               static_cast<size_t>(max_bytes.value_or(opts_.output_cap))));
  Json d = {{"pid", *pid},
            {"output", logs.output},
            {"offset", logs.offset},
            {"next_offset", logs.next_offset},
            {"truncated", logs.missed},
            {"running", logs.running}};
  d["exit_code"] = logs.exit_code ? Json(*logs.exit_code) : Json(nullptr);
  respond(Ok(std::move(d)));
}

void GuestApi::ProcessKill(const Json& b, Respond respond) {
  JsonFields f(b);
  KillRequest k;
  AB_TRY(pid, f.OptInt("pid", 1, INT32_MAX));
  AB_TRY(sid, f.OptString("session_id"));
  AB_TRY(pattern, f.OptString("pattern"));
  if (pid) {
    k.pid = static_cast<pid_t>(*pid);
  }
  k.session_id = sid;
  k.pattern = pattern;
  if (auto it = b.find("signal"); it != b.end() && !it->is_null()) {
    AB_TRY(sig, ParseSignal(*it));
    k.signal = sig;
  }
  AB_TRY(killed, processes_.Kill(k));
  respond(Ok({{"killed_count", killed.size()}, {"killed_pids", killed}}));
}

void GuestApi::Health(Respond respond) {
  const auto& shell = sessions_.config().shell;
  const double uptime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  respond(Ok({{"version", kGuestVersion},
              {"uptime_s", uptime},
              {"sessions", sessions_.size()},
              {"processes", processes_.running_count()},
              {"shell", ShellKindName(shell.kind)},
              {"shell_path", shell.path},
              {"state_persistence",
               shell.kind == ShellKind::kBash ? "full" : "cwd+env (no bash: POSIX sh fallback)"},
              {"output_cap_bytes", opts_.output_cap},
              {"pid", ::getpid()}}));
}

}  // namespace agentbox::guest
