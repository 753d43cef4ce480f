#include "backends/cloudrun/sessions.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <limits>

#include "common/guarded.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"

namespace agentbox::cloudrun {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

double NowUnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Json RunningToJson(const RunningCommand& r) {
  return {{"run", r.run},
          {"command", r.command},
          {"kind", r.kind},
          {"execution", r.execution},
          {"started_at", r.started_at},
          {"timeout_s", r.timeout_s}};
}

Json LastToJson(const LastCommand& l) {
  Json j = {{"run", l.run},       {"command", l.command},
            {"kind", l.kind},     {"timed_out", l.timed_out},
            {"killed", l.killed}, {"result_object", l.result_object},
            {"error", l.error},   {"request_error", l.request_error}};
  j["exit_code"] = OptToJson(l.exit_code);
  return j;
}

bool IsPrecondition(const Error& e) { return e.code == ErrorCode::kConflict; }

Error Busy(const std::string& sid) {
  return Error{ErrorCode::kConflict, "session '" + sid +
                                         "' is still running a command; wait for it or kill it "
                                         "first"};
}

}  // namespace

Json HeadToJson(const Head& h) {
  Json j = {{"session_id", h.session_id}, {"state_object", h.state_object}, {"cwd", h.cwd}};
  j["running"] = h.running ? RunningToJson(*h.running) : Json(nullptr);
  j["last"] = h.last ? LastToJson(*h.last) : Json(nullptr);
  return j;
}

Result<Head> HeadFromJson(const Json& j) {
  try {
    Head h;
    h.session_id = j.at("session_id").get<std::string>();
    h.state_object = ValueOr(j, "state_object", "");
    h.cwd = ValueOr(j, "cwd", "/workspace");
    if (j.contains("running") && j["running"].is_object()) {
      const Json& r = j["running"];
      RunningCommand rc;
      rc.run = r.at("run").get<std::string>();
      rc.command = ValueOr(r, "command", "");
      rc.kind = ValueOr(r, "kind", "exec");
      rc.execution = ValueOr(r, "execution", "");
      rc.started_at = ValueOr(r, "started_at", 0.0);
      rc.timeout_s = ValueOr(r, "timeout_s", 0.0);
      h.running = rc;
    }
    if (j.contains("last") && j["last"].is_object()) {
      const Json& l = j["last"];
      LastCommand lc;
      lc.run = ValueOr(l, "run", "");
      lc.command = ValueOr(l, "command", "");
      lc.kind = ValueOr(l, "kind", "exec");
      lc.exit_code = OptFromJson<int>(l, "exit_code");
      lc.timed_out = ValueOr(l, "timed_out", false);
      lc.killed = ValueOr(l, "killed", false);
      lc.result_object = ValueOr(l, "result_object", "");
      lc.error = ValueOr(l, "error", "");
      lc.request_error = ValueOr(l, "request_error", false);
      h.last = lc;
    }
    return h;
  } catch (const Json::exception& e) {
    return Fail(ErrorCode::kInternal, std::string("session head is malformed: ") + e.what());
  }
}

struct SessionEngine::Completion {
  struct Waiter {
    std::unique_ptr<asio::steady_timer> timer;
    std::function<void(std::optional<Outcome>)> done;
    bool fired = false;
  };
  std::mutex mu;
  bool monitored = false;  // a monitor thread of this engine will finish it (guarded by mu_)
  bool finished = false;
  Outcome outcome;
  std::vector<std::shared_ptr<Waiter>> waiters;
};

SessionEngine::SessionEngine(const CloudRunOptions& opts, Cloud cloud, asio::io_context& io)
    : opts_(opts), cloud_(std::move(cloud)), io_(io) {}

SessionEngine::~SessionEngine() {
  std::unique_lock<std::mutex> lock(mu_);
  stopping_ = true;
  cv_.notify_all();
  cv_.wait(lock, [this] { return active_monitors_ == 0; });
}

bool SessionEngine::Sleep(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stopping_; });
  return !stopping_;
}

Result<Head> SessionEngine::ReadHead(const std::string& id, const std::string& sid) {
  auto obj = cloud_.store->Read(layout::HeadObject(id, sid));
  if (!obj) {
    if (obj.error().code == ErrorCode::kNotFound) {
      return Fail(ErrorCode::kNotFound, "session '" + sid + "' not found");
    }
    return Fail(obj.error());
  }
  auto j = ParseJsonObject(obj->data);
  if (!j) {
    return Fail(ErrorCode::kInternal, "session '" + sid + "': head object " +
                                          layout::HeadObject(id, sid) +
                                          " is not JSON: " + j.error().message);
  }
  auto h = HeadFromJson(*j);
  if (!h) {
    return h;
  }
  h->generation = obj->meta.generation;
  return h;
}

Result<gcp::ObjectMeta> SessionEngine::WriteHead(const std::string& id, const Head& h) {
  return cloud_.store->Insert(layout::HeadObject(id, h.session_id), DumpJson(HeadToJson(h)),
                              h.generation);
}

Result<Json> SessionEngine::ReadResult(const std::string& object) {
  if (object.empty()) {
    return Json(nullptr);
  }
  auto obj = cloud_.store->Read(object);
  if (!obj) {
    return Fail(obj.error());
  }
  auto j = ParseJsonObject(obj->data);
  if (!j) {
    return Fail(ErrorCode::kUnavailable, "result object gs://" + cloud_.store->bucket() + "/" +
                                             object + " is corrupt: " + j.error().message);
  }
  return j;
}

bool SessionEngine::Stale(const RunningCommand& r) const {
  // Nobody can still be running it: past its timeout, the grace and the start allowance.
  const double limit = r.timeout_s + opts_.execution_grace_s +
                       std::chrono::duration<double>(opts_.start_timeout).count() + 60;
  return NowUnixSeconds() - r.started_at > limit;
}

Result<SessionEngine::Started> SessionEngine::Start(const SandboxRef& sb, const std::string& sid,
                                                    const StartRequest& req) {
  Head head;
  head.session_id = sid;
  auto current = ReadHead(sb.id, sid);
  if (current) {
    head = *current;
    if (head.running && !Stale(*head.running)) {
      // Make sure someone finishes it (once its starter recorded the execution).
      CompletionFor(sb, sid, *head.running, !head.running->execution.empty());
      return Fail(Busy(sid));
    }
  } else if (current.error().code != ErrorCode::kNotFound) {
    return Fail(current.error());
  }
  RunningCommand rc;
  rc.run = "r" + std::to_string(static_cast<int64_t>(NowUnixSeconds() * 1000)) + "-" + RandomId(6);
  rc.command = req.command;
  rc.kind = req.kind;
  rc.started_at = NowUnixSeconds();
  rc.timeout_s = req.timeout_s.value_or(opts_.default_exec_timeout_s);
  head.running = rc;
  auto written = WriteHead(sb.id, head);
  if (!written) {
    if (IsPrecondition(written.error())) {
      return Fail(Busy(sid));  // another writer took the session first
    }
    return Fail(written.error());
  }
  head.generation = written->generation;
  RunRequest rr;
  rr.session_id = sid;
  rr.run_id = rc.run;
  rr.command = req.command;
  rr.state_object = head.state_object;
  rr.exec_dir = req.exec_dir;
  rr.timeout_s = rc.timeout_s;
  rr.combined_output = req.kind == "exec";
  rr.guest_dir = opts_.guest_volume ? sb.guest : "";  // without the volume: the image's guest
  rr.job_guest_dir = sb.job_guest;
  auto execution = cloud_.jobs->Run(sb.job_id, BuildOverrides(opts_, sb.id, rr));
  if (!execution) {
    // Nothing started: give the session back (if nobody changed it meanwhile).
    head.running.reset();
    (void)WriteHead(sb.id, head);
    if (execution.error().code == ErrorCode::kNotFound) {
      return Fail(ErrorCode::kNotFound, "sandbox '" + sb.id + "': its Cloud Run job is gone (" +
                                            execution.error().message + ")");
    }
    return Fail(execution.error());
  }
  rc.execution = *execution;
  Log(LogLevel::kDebug, "cloudrun.exec_started", "id={} session={} run={} execution={}", sb.id, sid,
      rc.run, rc.execution);
  CompletionFor(sb, sid, rc, true);
  return Started{rc.run, head.cwd};
}

std::shared_ptr<SessionEngine::Completion> SessionEngine::CompletionFor(
    const SandboxRef& sb, const std::string& sid, const RunningCommand& running,
    bool start_monitor) {
  const std::string key = sb.id + "/" + sid + "/" + running.run;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = completions_.find(key);
  std::shared_ptr<Completion> c;
  if (it != completions_.end()) {
    c = it->second;
    if (c->monitored) {
      return c;
    }
  } else {
    c = std::make_shared<Completion>();
    completions_[key] = c;
  }
  if (start_monitor && !stopping_ && !running.execution.empty()) {
    c->monitored = true;
    ++active_monitors_;
    std::thread([this, sb, sid, running, c] {
      CallGuarded([&] { Monitor(sb, sid, running, c); }, "cloudrun.session_monitor");
      std::lock_guard<std::mutex> l(mu_);
      --active_monitors_;
      cv_.notify_all();
    }).detach();
  }
  return c;
}

void SessionEngine::Wait(const SandboxRef& sb, const std::string& sid, const std::string& run,
                         std::chrono::milliseconds wait,
                         std::function<void(std::optional<Outcome>)> done) {
  std::shared_ptr<Completion> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = completions_.find(sb.id + "/" + sid + "/" + run);
    if (it != completions_.end() && it->second->monitored) {
      c = it->second;
    }
  }
  // Started elsewhere (another replica, or before a restart): follow it from head.json. Its
  // starter records the execution's name right after creating it; wait for that briefly.
  for (int attempt = 0; !c; ++attempt) {
    auto head = ReadHead(sb.id, sid);
    if (!head || !head->running || head->running->run != run) {
      Outcome o;
      if (head && head->last) {
        o.last = *head->last;
        o.cwd = head->cwd;
        auto r = ReadResult(o.last.result_object);
        o.result = r ? *r : Json(nullptr);
      }
      asio::post(io_, [done, o] { done(o); });
      return;
    }
    if (!head->running->execution.empty() || attempt >= 50) {
      c = CompletionFor(sb, sid, *head->running, true);
      break;
    }
    if (!Sleep(std::chrono::milliseconds(50))) {
      return;
    }
  }
  std::lock_guard<std::mutex> lock(c->mu);
  if (c->finished) {
    asio::post(io_, [done, o = c->outcome] { done(o); });
    return;
  }
  auto w = std::make_shared<Completion::Waiter>();
  w->done = std::move(done);
  w->timer = std::make_unique<asio::steady_timer>(io_);
  w->timer->expires_after(wait);
  std::weak_ptr<Completion> weak = c;
  w->timer->async_wait([weak, w](const boost::system::error_code& ec) {
    auto locked = weak.lock();
    if (ec || !locked) {
      return;
    }
    std::lock_guard<std::mutex> l(locked->mu);
    if (w->fired) {
      return;
    }
    w->fired = true;
    w->done(std::nullopt);
  });
  c->waiters.push_back(std::move(w));
}

void SessionEngine::Monitor(SandboxRef sb, std::string sid, RunningCommand running,
                            std::shared_ptr<Completion> c) {
  const auto t0 = SteadyClock::now();
  // The starter records the execution's name so that other replicas can follow it; that write
  // runs here, in parallel with the execution starting.
  std::optional<Head> cached;
  if (auto head = ReadHead(sb.id, sid); head && head->running &&
                                        head->running->run == running.run &&
                                        head->running->execution.empty()) {
    head->running->execution = running.execution;
    if (auto w = WriteHead(sb.id, *head)) {
      head->generation = w->generation;
      cached = *head;
    }
  }
  std::chrono::milliseconds delay(10);
  const auto deadline = t0 + opts_.start_timeout +
                        std::chrono::milliseconds(static_cast<int64_t>(
                            (running.timeout_s + opts_.execution_grace_s) * 1000));
  Outcome out;
  bool have = false;
  int errors = 0;
  while (!have) {
    if (!Sleep(delay)) {
      return;  // shutting down: the execution goes on; whoever looks next finishes it
    }
    delay = std::min(delay * 2, opts_.poll_max);
    auto e = cloud_.jobs->GetExecution(running.execution);
    if (!e) {
      ++errors;
      if (e.error().code == ErrorCode::kNotFound || errors >= 20 || SteadyClock::now() > deadline) {
        out = Examine(sb, sid, running, running.execution, false,
                      "execution " + running.execution + " could not be read: " + e.error().message,
                      ExecutionStatus{});
        have = true;
      }
      continue;
    }
    errors = 0;
    ExecutionStatus st = ParseExecution(*e);
    if (st.done) {
      out = Examine(sb, sid, running, running.execution, false, st.message, st);
      have = true;
    } else if (!st.started && SteadyClock::now() - t0 > opts_.start_timeout) {
      (void)cloud_.jobs->Cancel(running.execution);
      out = Examine(sb, sid, running, running.execution, true, st.message, st);
      have = true;
    } else if (SteadyClock::now() > deadline) {
      (void)cloud_.jobs->Cancel(running.execution);
      out = Examine(sb, sid, running, running.execution, false,
                    "the execution outlived its timeout and was cancelled", st);
      have = true;
    }
  }
  std::string previous_state;
  out = Promote(sb, sid, running, std::move(out), &previous_state, std::move(cached));
  {
    std::lock_guard<std::mutex> lock(c->mu);
    c->finished = true;
    c->outcome = out;
    for (auto& w : c->waiters) {
      if (!w->fired) {
        w->fired = true;
        w->timer->cancel();
        asio::post(io_, [w, out] { w->done(out); });
      }
    }
    c->waiters.clear();
  }
  // Off the caller's path: the snapshot this run replaced is garbage now.
  if (!previous_state.empty()) {
    (void)cloud_.store->Delete(previous_state);
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Keep finished completions briefly for late waiters; drop those of older runs of the session.
  const std::string prefix = sb.id + "/" + sid + "/";
  for (auto it = completions_.begin(); it != completions_.end();) {
    if (it->first.starts_with(prefix) && it->first != prefix + running.run) {
      it = completions_.erase(it);
    } else {
      ++it;
    }
  }
}

Outcome SessionEngine::Examine(const SandboxRef& sb, const std::string& sid,
                               const RunningCommand& running, const std::string& execution,
                               bool never_started, const std::string& why,
                               const ExecutionStatus& st) {
  Outcome out;
  out.last.run = running.run;
  out.last.command = running.command;
  out.last.kind = running.kind;
  const std::string object = layout::RunObject(sb.id, sid, running.run);
  if (never_started) {
    out.last.error = "the execution " + execution + " did not start within " +
                     std::to_string(opts_.start_timeout.count() / 1000) +
                     " s and was cancelled; the command did not run" +
                     (why.empty() ? "" : " (Cloud Run: " + why + ")");
    return out;
  }
  if (st.cancelled) {
    out.last.killed = true;
    out.last.exit_code = 137;
    return out;
  }
  auto result = ReadResult(object);
  if (result && result->is_object() && result->contains("error") &&
      (*result)["error"].is_object()) {
    out.last.error = ValueOr((*result)["error"], "message", "the command was refused");
    out.last.request_error = true;
    return out;
  }
  if (result && result->is_object() && result->contains("state") &&
      (*result)["state"].is_object() && result->contains("exit_code")) {
    out.result = *result;
    out.last.result_object = object;
    // The result object is the sandbox's to write: an exit code of another type reads as none.
    constexpr int64_t kNone = std::numeric_limits<int64_t>::min();
    if (const int64_t code = ValueOr(*result, "exit_code", kNone); std::in_range<int>(code)) {
      out.last.exit_code = static_cast<int>(code);
    }
    out.last.timed_out = ValueOr(*result, "timed_out", false);
    out.cwd = ValueOr((*result)["state"], "cwd", "/workspace");
    return out;
  }
  std::string detail;
  if (!result && result.error().code == ErrorCode::kNotFound) {
    detail = "its result object gs://" + cloud_.store->bucket() + "/" + object + " is missing";
  } else if (!result) {
    detail = result.error().message;
  } else {
    detail = "its result object gs://" + cloud_.store->bucket() + "/" + object +
             " is not a run-once result";
  }
  std::optional<int> code;
  if (auto tasks = cloud_.jobs->ListTasks(execution)) {
    code = TaskExitCode(*tasks);
  }
  std::string what = st.succeeded ? "the execution " + execution + " ended but " + detail
                                  : "the execution " + execution +
                                        " failed before the command finished (" + detail + ")";
  if (code) {
    what += "; container exit code " + std::to_string(*code);
    if (*code == 137) {
      what += " (killed: out of memory?)";
    } else if (*code == 126 || *code == 127) {
      what += " (the guest could not be started from its volume)";
    }
  }
  if (!why.empty()) {
    what += "; Cloud Run: " + why;
  }
  out.last.error = what + ". The session keeps its previous state";
  return out;
}

Outcome SessionEngine::Promote(const SandboxRef& sb, const std::string& sid,
                               const RunningCommand& running, Outcome out, std::string* replaced,
                               std::optional<Head> cached) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    Result<Head> head = Fail(ErrorCode::kNotFound, "");
    if (attempt == 0 && cached) {
      head = std::move(*cached);
    } else {
      head = ReadHead(sb.id, sid);
    }
    if (!head) {
      return out;  // the session (or sandbox) was deleted meanwhile
    }
    if (!head->running || head->running->run != running.run) {
      // Someone else promoted it already: report what they recorded.
      if (head->last && head->last->run == running.run) {
        Outcome theirs;
        theirs.last = *head->last;
        theirs.cwd = head->cwd;
        theirs.result =
            out.last.result_object == theirs.last.result_object ? out.result : Json(nullptr);
        return theirs;
      }
      return out;
    }
    Head next = *head;
    next.running.reset();
    next.last = out.last;
    if (!out.last.result_object.empty()) {
      next.state_object = out.last.result_object;
      next.cwd = out.cwd;
    }
    auto w = WriteHead(sb.id, next);
    if (w) {
      // The old snapshot is garbage once replaced, unless it still holds the previous
      // command's output that someone could view (it never does after this promotion).
      if (next.state_object != head->state_object) {
        *replaced = head->state_object;
      } else if (head->last && !head->last->result_object.empty() &&
                 head->last->result_object != next.state_object) {
        *replaced = head->last->result_object;
      }
      if (out.cwd.empty()) {
        out.cwd = next.cwd;
      }
      return out;
    }
    if (!IsPrecondition(w.error())) {
      Log(LogLevel::kWarn, "cloudrun.promote_failed", "id={} session={} run={} error=\"{}\"", sb.id,
          sid, running.run, w.error().message);
      out.last.error = "the command ran but its result could not be recorded: " + w.error().message;
      return out;
    }
  }
  return out;
}

Result<bool> SessionEngine::Kill(const SandboxRef& sb, const std::string& sid) {
  auto head = ReadHead(sb.id, sid);
  if (!head) {
    return Fail(head.error());
  }
  if (!head->running) {
    return false;
  }
  std::string execution = head->running->execution;
  if (execution.empty()) {
    // Its starter has not recorded the execution yet; it is on its way.
    for (int i = 0; i < 50 && execution.empty(); ++i) {
      if (!Sleep(std::chrono::milliseconds(100))) {
        break;
      }
      auto again = ReadHead(sb.id, sid);
      if (!again || !again->running) {
        return false;
      }
      execution = again->running->execution;
    }
    if (execution.empty()) {
      return Fail(ErrorCode::kUnavailable, "session '" + sid +
                                               "': the running command's execution is not known "
                                               "yet; try again");
    }
  }
  if (auto r = cloud_.jobs->Cancel(execution); !r) {
    return Fail(r.error());
  }
  CompletionFor(sb, sid, *head->running, true);
  return true;
}

Result<std::vector<std::string>> SessionEngine::List(const std::string& id) {
  auto all = ListAll(*cloud_.store, layout::SessionsPrefix(id), "/");
  if (!all) {
    return Fail(all.error());
  }
  std::vector<std::string> out;
  const size_t skip = layout::SessionsPrefix(id).size();
  for (const auto& p : all->prefixes) {
    std::string enc = p.substr(skip);
    if (!enc.empty() && enc.back() == '/') {
      enc.pop_back();
    }
    out.push_back(layout::DecodeSessionId(enc));
  }
  return out;
}

Result<void> SessionEngine::Delete(const SandboxRef& sb, const std::string& sid) {
  auto head = ReadHead(sb.id, sid);
  if (!head) {
    return Fail(head.error());
  }
  if (head->running && !head->running->execution.empty()) {
    (void)cloud_.jobs->Cancel(head->running->execution);
  }
  auto r = cloud_.store->DeletePrefix(layout::SessionsPrefix(sb.id) + layout::EncodeSessionId(sid) +
                                      "/");
  if (!r) {
    return Fail(r.error());
  }
  return {};
}

Result<Head> SessionEngine::Restore(const std::string& id, const std::string& sid,
                                    const Json& state) {
  Head h;
  h.session_id = sid;
  const std::string run = "r" + std::to_string(static_cast<int64_t>(NowUnixSeconds() * 1000)) +
                          "-" + RandomId(6) + "-restored";
  const std::string object = layout::RunObject(id, sid, run);
  auto w = cloud_.store->Insert(object, DumpJson(Json{{"state", state}}), 0);
  if (!w) {
    return Fail(w.error());
  }
  h.state_object = object;
  h.cwd = ValueOr(state, "cwd", "/workspace");
  h.generation = 0;  // must not exist yet
  auto written = WriteHead(id, h);
  if (!written) {
    (void)cloud_.store->Delete(object);
    if (IsPrecondition(written.error())) {
      return Fail(ErrorCode::kConflict, "session '" + sid + "' already exists");
    }
    return Fail(written.error());
  }
  h.generation = written->generation;
  return h;
}

void SessionEngine::CancelAll(const SandboxRef& sb) {
  auto sessions = List(sb.id);
  if (!sessions) {
    return;
  }
  for (const auto& sid : *sessions) {
    auto head = ReadHead(sb.id, sid);
    if (head && head->running && !head->running->execution.empty()) {
      (void)cloud_.jobs->Cancel(head->running->execution);
    }
  }
}

}  // namespace agentbox::cloudrun
