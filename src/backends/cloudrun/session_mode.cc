// cloudrun session mode: one long execution per sandbox whose guest dials back to the daemon
// (docs/cloudrun.md, "Session mode"). The tunnel (TunnelRegistry) makes the sandbox look like a
// local guest to the rest of the daemon; this file starts, watches, replaces and stops the
// executions, and keeps the daemon's session snapshots in the bucket.
#include <algorithm>
#include <boost/asio/post.hpp>
#include <sstream>
#include <thread>

#include "backends/cloudrun/cloudrun_backend.h"
#include "backends/cloudrun/layout.h"
#include "common/json_util.h"
#include "common/log.h"

namespace agentbox::cloudrun {
namespace {

using Clock = std::chrono::steady_clock;

double NowUnix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string KeptPrefix(const std::string& id) {
  return layout::SandboxPrefix(id) + "kept-sessions/";
}

std::string KeptObject(const std::string& id, const std::string& session) {
  return KeptPrefix(id) + layout::EncodeSessionId(session) + ".json";
}

std::string Seconds(std::chrono::milliseconds d) {
  std::ostringstream out;
  out << static_cast<double>(d.count()) / 1000.0;
  return out.str();
}

// What the execution's status and its task say about why it ended, in one clause.
std::string EndReason(JobRunner& jobs, const std::string& execution, const ExecutionStatus& st) {
  std::string what = st.cancelled ? "was cancelled" : st.succeeded ? "ended" : "failed";
  if (auto tasks = jobs.ListTasks(execution)) {
    if (auto code = TaskExitCode(*tasks)) {
      what +=
          " (container exit code " + std::to_string(*code) + (*code == 137 ? ", killed" : "") + ")";
    }
  }
  if (!st.message.empty()) {
    what += "; Cloud Run: " + st.message;
  }
  return what;
}

}  // namespace

std::string CloudRunBackend::SessionDetail(const Record& r, const std::string& execution) const {
  return "Cloud Run job " + cloud_.jobs->parent() + "/jobs/" + r.job_id + ", execution " +
         (execution.empty() ? std::string("(none)") : execution) +
         " (session mode: the guest dials back through the tunnel)";
}

void CloudRunBackend::SetGuestEvents(GuestEvents events) {
  std::lock_guard<std::mutex> lock(events_mu_);
  events_ = std::move(events);
}

Result<SandboxInfo> CloudRunBackend::CreateSession(Record r, const Json& job) {
  const std::string& id = r.info.id;
  if (tunnels_ == nullptr || opts_.public_url.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "cloudrun session mode needs AGENTBOX_PUBLIC_URL (the address at which the "
                "executions reach this daemon); create with cloudrun_mode \"job\" or set it");
  }
  auto written = cloud_.store->Insert(layout::RecordObject(id), DumpJson(RecordJson(r)), 0);
  if (!written) {
    if (written.error().code == ErrorCode::kConflict) {
      return Fail(ErrorCode::kConflict, "sandbox '" + id + "' already exists");
    }
    return Fail(written.error());
  }
  r.generation = written->generation;
  auto cleanup = [&](bool job_created) {
    if (tunnels_ != nullptr) {
      tunnels_->Unregister(id);
    }
    if (job_created) {
      CancelExecutions(r.job_id);
      (void)cloud_.jobs->DeleteJob(r.job_id);
    }
    (void)cloud_.store->DeletePrefix(layout::SandboxPrefix(id));
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(id);
  };
  if (auto created = cloud_.jobs->CreateJob(r.job_id, job); !created) {
    cleanup(false);
    return Fail(created.error().code,
                "cloudrun: creating job " + r.job_id + " failed: " + created.error().message);
  }
  auto reg = tunnels_->Register(id, r.secret);
  if (!reg) {
    cleanup(true);
    return Fail(reg.error());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    Live l;
    l.token = reg->token;
    l.endpoint = reg->guest_endpoint;
    l.job_id = r.job_id;
    l.replacing = true;  // the monitor leaves it alone until it is up
    live_[id] = l;
  }
  auto execution = StartGuest(r, reg->token);
  if (!execution) {
    cleanup(true);
    return Fail(execution.error());
  }
  r.execution = *execution;
  {
    std::lock_guard<std::mutex> lock(mu_);
    live_[id].execution = *execution;
    live_[id].replacing = false;
  }
  (void)WriteExecution(id, *execution);
  Log(LogLevel::kInfo, "cloudrun.created", "id={} job={} mode=session execution={} image={}", id,
      r.job_id, *execution, r.info.spec.image);
  r.info.guest_endpoint = reg->guest_endpoint;
  r.info.guest_token = reg->token;
  r.info.detail = SessionDetail(r, *execution);
  return r.info;
}

Result<std::string> CloudRunBackend::StartGuest(const Record& r, const std::string& token) {
  const std::string& id = r.info.id;
  std::string guest_dir;
  if (auto g = EnsureGuest()) {
    guest_dir = *g;
  }
  // The execution lives as long as the sandbox may (plus its start), within Cloud Run's limit;
  // an extended TTL beyond it gets a new execution when this one times out.
  const double ttl = std::max(60.0, r.info.expires_at - NowUnix());
  const double start_s = std::chrono::duration<double>(opts_.start_timeout).count();
  Json overrides = BuildSessionOverrides(opts_, token, ttl + start_s, guest_dir, r.job_guest);
  auto execution = cloud_.jobs->Run(r.job_id, overrides);
  if (!execution) {
    return Fail(execution.error().code, "cloudrun: starting the execution of sandbox '" + id +
                                            "' failed: " + execution.error().message);
  }
  const auto t0 = Clock::now();
  std::optional<Clock::time_point> started;
  auto step = std::chrono::milliseconds(10);
  auto fail = [&](const std::string& why) -> Result<std::string> {
    (void)cloud_.jobs->Cancel(*execution);
    Log(LogLevel::kWarn, "cloudrun.session_start_failed", "id={} execution={} error=\"{}\"", id,
        *execution, why);
    return Fail(ErrorCode::kUnavailable, "cloudrun: sandbox '" + id + "': " + why);
  };
  while (true) {
    if (tunnels_->WaitConnected(id, step)) {
      Log(LogLevel::kInfo, "cloudrun.guest_connected", "id={} execution={} ms={:.0f}", id,
          *execution, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      return *execution;
    }
    if (!tunnels_->Registered(id)) {
      return fail("the sandbox was destroyed while its execution started");
    }
    step = std::min(step * 2, opts_.poll_max);
    auto e = cloud_.jobs->GetExecution(*execution);
    if (!e) {
      if (e.error().code == ErrorCode::kNotFound) {
        return fail("the execution " + *execution + " disappeared before its guest connected");
      }
      continue;  // a transient error: the deadlines below still apply
    }
    const ExecutionStatus st = ParseExecution(*e);
    if (st.done) {
      return fail("the execution " + *execution + " ended before its guest connected to " +
                  TunnelUrl(opts_.public_url) +
                  " (is AGENTBOX_PUBLIC_URL reachable from Cloud Run?): it " +
                  EndReason(*cloud_.jobs, *execution, st));
    }
    const auto now = Clock::now();
    if (st.started && !started) {
      started = now;
    }
    if (!started && now - t0 > opts_.start_timeout) {
      return fail("the execution " + *execution + " did not start within " +
                  Seconds(opts_.start_timeout) +
                  " s (AGENTBOX_CLOUDRUN_START_TIMEOUT_S); it was cancelled");
    }
    if (started && now - *started > opts_.connect_timeout) {
      return fail("the guest of execution " + *execution + " did not connect to " +
                  TunnelUrl(opts_.public_url) + " within " + Seconds(opts_.connect_timeout) +
                  " s of its start (AGENTBOX_CLOUDRUN_CONNECT_TIMEOUT_S; is AGENTBOX_PUBLIC_URL "
                  "reachable from Cloud Run?); it was cancelled");
    }
  }
}

Result<void> CloudRunBackend::AttachSession(Record& r) {
  const std::string& id = r.info.id;
  Live l;
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = live_.find(id); it != live_.end()) {
      l = it->second;
      known = true;
    }
  }
  if (!known) {
    if (tunnels_ == nullptr) {
      return Fail(ErrorCode::kUnavailable,
                  "sandbox '" + id +
                      "' runs in cloudrun session mode, which this daemon cannot "
                      "serve (no tunnel endpoint)");
    }
    // A daemon that restarted (or another replica): the guest keeps redialling with the token
    // of the record, so the same secret takes it back.
    auto reg = tunnels_->Register(id, r.secret);
    if (!reg && reg.error().code != ErrorCode::kConflict) {
      return Fail(reg.error());
    }
    l.token = id + "." + r.secret;
    l.endpoint = reg ? reg->guest_endpoint : "";
    l.execution = r.execution;
    l.job_id = r.job_id;
    l.owned = r.tunnel_url.empty() || r.tunnel_url == TunnelUrl(opts_.public_url);
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = live_.emplace(id, l);
    l = it->second;
    if (inserted) {
      Log(LogLevel::kInfo, "cloudrun.session_attached", "id={} execution={}", id, r.execution);
    }
  }
  r.info.guest_endpoint = l.endpoint;
  r.info.guest_token = l.token;
  r.info.detail = SessionDetail(r, l.execution);
  if (!l.failed.empty()) {
    r.info.state = SandboxState::kFailed;
    r.info.detail = l.failed;
  }
  return {};
}

Result<void> CloudRunBackend::WriteExecution(const std::string& id, const std::string& execution) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto r = ReadRecord(id);
    if (!r) {
      return Fail(r.error());
    }
    r->execution = execution;
    r->tunnel_url = TunnelUrl(opts_.public_url);
    auto w =
        cloud_.store->Insert(layout::RecordObject(id), DumpJson(RecordJson(*r)), r->generation);
    if (w || w.error().code != ErrorCode::kConflict) {
      return w ? Result<void>() : Fail(w.error());
    }
  }
  return Fail(ErrorCode::kConflict, "sandbox '" + id + "': its record kept changing");
}

void CloudRunBackend::CancelExecutions(const std::string& job_id) {
  auto all = cloud_.jobs->ListExecutions(job_id);
  if (!all) {
    return;
  }
  for (const auto& e : *all) {
    const std::string name = ValueOr(e, "name", "");
    if (!name.empty() && !ParseExecution(e).done) {
      (void)cloud_.jobs->Cancel(name);
    }
  }
}

void CloudRunBackend::Monitor() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    monitor_cv_.wait_for(lock, std::max(opts_.poll_max, std::chrono::milliseconds(20)));
    if (stopping_) {
      return;
    }
    std::vector<std::pair<std::string, std::string>> watch;  // id, execution
    for (const auto& [id, l] : live_) {
      if (l.owned && !l.replacing && !l.destroying && l.failed.empty() && !l.execution.empty()) {
        watch.emplace_back(id, l.execution);
      }
    }
    lock.unlock();
    for (const auto& [id, execution] : watch) {
      auto e = cloud_.jobs->GetExecution(execution);
      std::string why;
      if (!e && e.error().code == ErrorCode::kNotFound) {
        why = "the Cloud Run execution " + execution + " disappeared";
      } else if (e) {
        const ExecutionStatus st = ParseExecution(*e);
        if (st.done) {
          why =
              "the Cloud Run execution " + execution + " " + EndReason(*cloud_.jobs, execution, st);
        }
      }
      if (why.empty()) {
        continue;
      }
      std::lock_guard<std::mutex> relock(mu_);
      auto it = live_.find(id);
      if (stopping_ || it == live_.end() || it->second.replacing || it->second.destroying ||
          it->second.execution != execution) {
        continue;
      }
      it->second.replacing = true;
      replacers_.emplace_back([this, id = id, why] { Replace(id, why); });
    }
    lock.lock();
  }
}

void CloudRunBackend::Replace(const std::string& id, const std::string& why) {
  Log(LogLevel::kWarn, "cloudrun.execution_lost", "id={} why=\"{}\"", id, why);
  GuestEvents ev;
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    ev = events_;
  }
  if (ev.lost) {
    ev.lost(id, why + "; a new execution is starting and the sessions will be restored");
  }
  auto r = ReadRecord(id);
  std::string token;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(id);
    if (it == live_.end() || it->second.destroying || stopping_) {
      return;
    }
    token = it->second.token;
  }
  Result<std::string> execution = r ? StartGuest(*r, token) : Result<std::string>(Fail(r.error()));
  bool gone = false;
  std::string endpoint;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(id);
    gone = it == live_.end() || it->second.destroying;
    if (!gone) {
      it->second.replacing = false;
      if (execution) {
        it->second.execution = *execution;
      } else {
        it->second.failed = "failed: " + why +
                            ", and no new execution could be started: " + execution.error().message;
      }
      endpoint = it->second.endpoint;
    }
  }
  if (gone || !r) {
    if (!r && !gone && ev.failed) {
      SandboxInfo info;
      info.id = id;
      info.backend = "cloudrun";
      info.state = SandboxState::kFailed;
      info.detail = r.error().message;
      ev.failed(info);
    }
    return;
  }
  SandboxInfo info = r->info;
  info.guest_endpoint = endpoint;
  info.guest_token = token;
  if (!execution) {
    info.state = SandboxState::kFailed;
    info.detail =
        "failed: " + why + ", and no new execution could be started: " + execution.error().message;
    if (ev.failed) {
      ev.failed(info);
    }
    return;
  }
  (void)WriteExecution(id, *execution);
  info.detail = SessionDetail(*r, *execution);
  if (ev.replaced) {
    ev.replaced(info, why + " and was replaced by " + *execution);
  }
}

Result<SandboxInfo> CloudRunBackend::RestartGuest(const std::string& id) {
  auto r = ReadRecord(id);
  if (!r) {
    return Fail(r.error());
  }
  if (r->mode != "session") {
    return Fail(ErrorCode::kInvalidArgument,
                "cloudrun job mode has no long-lived guest to restart in sandbox '" + id +
                    "' (each command is its own execution); DELETE it and create a new one");
  }
  if (auto a = AttachSession(*r); !a) {
    return Fail(a.error());
  }
  std::string old;
  std::string token;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(id);
    if (it == live_.end() || it->second.replacing || it->second.destroying) {
      return Fail(ErrorCode::kConflict,
                  "sandbox '" + id + "': its guest is being replaced already; try again");
    }
    it->second.replacing = true;
    old = it->second.execution;
    token = it->second.token;
  }
  if (!old.empty()) {
    (void)cloud_.jobs->Cancel(old);
  }
  if (tunnels_ != nullptr) {
    tunnels_->Drop(id);  // the old guest's link, so WaitConnected waits for the new one
  }
  auto execution = StartGuest(*r, token);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = live_.find(id); it != live_.end()) {
      it->second.replacing = false;
      if (execution) {
        it->second.execution = *execution;
        it->second.owned = true;
        it->second.failed.clear();
      }
    }
  }
  if (!execution) {
    return Fail(execution.error());
  }
  (void)WriteExecution(id, *execution);
  r->info.detail = SessionDetail(*r, *execution);
  return r->info;
}

Result<SandboxInfo> CloudRunBackend::Claim(const std::string& id, const SandboxSpec& spec,
                                           double expires_at) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto r = ReadRecord(id);
    if (!r) {
      return Fail(r.error());
    }
    if (r->mode != "session") {
      return Fail(ErrorCode::kInvalidArgument,
                  "cloudrun job mode sandboxes are not pooled ('" + id + "')");
    }
    if (auto a = AttachSession(*r); !a) {
      return Fail(a.error());
    }
    if (r->info.state != SandboxState::kRunning || !tunnels_->Connected(id)) {
      r->info.state = SandboxState::kFailed;  // the pool discards it
      return r->info;
    }
    r->info.spec.owner = spec.owner;
    r->info.spec.labels = spec.labels;
    r->info.expires_at = expires_at;
    auto w =
        cloud_.store->Insert(layout::RecordObject(id), DumpJson(RecordJson(*r)), r->generation);
    if (w) {
      return r->info;
    }
    if (w.error().code != ErrorCode::kConflict) {
      return Fail(w.error());
    }
  }
  return Fail(ErrorCode::kConflict, "sandbox '" + id + "': its record kept changing; try again");
}

void CloudRunBackend::KeepSessionState(const std::string& id, const std::string& session,
                                       const Json& kept) {
  {
    // Job mode keeps its sessions in the bucket already (head.json): nothing to add.
    std::lock_guard<std::mutex> lock(mu_);
    if (!live_.count(id)) {
      return;
    }
  }
  // Off the caller's thread (the daemon's I/O thread): one Storage call.
  boost::asio::post(keep_strand_, [this, object = KeptObject(id, session), body = DumpJson(kept),
                                   remove = kept.is_null(), id] {
    auto done = remove ? cloud_.store->Delete(object)
                       : cloud_.store->Insert(object, body).map([](const auto&) {});
    if (!done && done.error().code != ErrorCode::kNotFound) {
      Log(LogLevel::kWarn, "cloudrun.session_keep_failed", "id={} object={} error=\"{}\"", id,
          object, done.error().message);
    }
  });
}

Result<Json> CloudRunBackend::KeptSessionStates(const std::string& id) {
  auto all = ListAll(*cloud_.store, KeptPrefix(id), "");
  if (!all) {
    return Fail(all.error());
  }
  Json out = Json::object();
  for (const auto& item : all->items) {
    std::string name = item.name.substr(KeptPrefix(id).size());
    if (!name.ends_with(".json")) {
      continue;
    }
    name.resize(name.size() - 5);
    auto data = cloud_.store->Read(item.name);
    if (!data) {
      continue;
    }
    Json j = ParseUntrustedJson(data->data);
    if (j.is_object()) {
      out[layout::DecodeSessionId(name)] = std::move(j);
    }
  }
  return out;
}

}  // namespace agentbox::cloudrun
