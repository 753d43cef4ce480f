#include "daemon/session_keeper.h"

#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "common/fs_util.h"
#include "common/guarded.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/shell_quote.h"
#include "daemon/kept_bound.h"

namespace agentbox::daemon {

namespace {

using Clock = std::chrono::steady_clock;

// The `data` object of a guest envelope, or nullptr.
Json* DataOf(Json& envelope) {
  if (!envelope.is_object()) {
    return nullptr;
  }
  auto it = envelope.find("data");
  return it != envelope.end() && it->is_object() ? &*it : nullptr;
}

std::string StringAt(const Json& j, const char* key) {
  if (!j.is_object()) {
    return "";
  }
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string UtcNow() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

bool GuestAnswers(http::UnixHttpClient& client, const SandboxInfo& info,
                  std::chrono::milliseconds wait) {
  const auto until = Clock::now() + wait;
  while (true) {
    auto h = CallGuest(client, info, "GET", "/api/v1/health", "", std::chrono::seconds(2));
    if (h && h->status < 500) {
      return true;
    }
    if (Clock::now() >= until || client.io().stopped()) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

Result<http::ClientResponse> CallGuest(http::UnixHttpClient& client, const SandboxInfo& info,
                                       const std::string& method, const std::string& target,
                                       const std::string& body, std::chrono::milliseconds timeout) {
  if (!info.guest_endpoint.starts_with("unix:")) {
    return Fail(ErrorCode::kUnavailable, "sandbox '" + info.id + "' has no reachable guest");
  }
  http::ClientRequest cr;
  cr.method = method;
  cr.target = target;
  cr.headers.emplace_back("X-Access-Token", info.guest_token);
  if (!body.empty()) {
    cr.headers.emplace_back("Content-Type", "application/json");
  }
  cr.body = body;
  if (client.io().stopped()) {
    return Fail(ErrorCode::kUnavailable, "agentboxd is stopping");
  }
  auto done = std::make_shared<std::promise<Result<http::ClientResponse>>>();
  auto answer = done->get_future();
  client.Send(info.guest_endpoint.substr(5), std::move(cr), timeout,
              [done](Result<http::ClientResponse> r) { done->set_value(std::move(r)); });
  // The client answers within `timeout` while it runs; once agentboxd is shutting down its I/O
  // thread may have stopped and never answer, and a worker waiting here forever would hold
  // ~DaemonApi's join (seen: a restore of kept sessions at start-up, then SIGTERM).
  if (answer.wait_for(timeout + std::chrono::seconds(5)) != std::future_status::ready) {
    return Fail(ErrorCode::kTimeout, "sandbox '" + info.id + "': the guest call " + target +
                                         " got no answer (agentboxd stopping?)");
  }
  return answer.get();
}

SessionKeeper::~SessionKeeper() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  writer_.join();
}

void SessionKeeper::Post(std::function<void()> task, size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (stopping_ || queue_.size() >= kMaxQueued || queued_bytes_ + bytes > kMaxQueuedBytes) {
      Log(LogLevel::kDebug, "session.snapshot_dropped", "queued={} bytes={}", queue_.size(),
          queued_bytes_);
      return;
    }
    queued_bytes_ += bytes;
    queue_.emplace_back(std::move(task), bytes);
  }
  queue_cv_.notify_one();
}

void SessionKeeper::WriterLoop() {
  std::unique_lock<std::mutex> lock(queue_mu_);
  while (true) {
    queue_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) {
      return;
    }
    auto [task, bytes] = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= bytes;
    lock.unlock();
    task();
    lock.lock();
  }
}

SessionKeeper::SessionKeeper(http::UnixHttpClient& client, Metrics& metrics, std::string dir)
    : client_(client), metrics_(metrics), dir_(std::move(dir)) {
  writer_ = std::thread([this] { CallGuarded([this] { WriterLoop(); }, "session_keeper"); });
  metrics_.Describe("agentbox_session_snapshot_seconds", "histogram",
                    "Time to fetch a session's state after a command (shell/state), by backend.");
  metrics_.Describe("agentbox_sessions_restored_total", "counter",
                    "Sessions recreated from their last snapshot in a guest that came back, by "
                    "backend and outcome.");
}

bool SessionKeeper::Watches(const std::string& op) {
  static const std::set<std::string> kOps = {"shell/exec", "shell/run",     "shell/wait",
                                             "shell/kill", "shell/restore", "shell/view",
                                             "shell/list", "shell/delete",  "process/start"};
  return kOps.count(op) > 0;
}

std::string SessionKeeper::Relayed(const SandboxInfo& info, const std::string& op,
                                   const std::string& request, std::string response) {
  Json env = ParseUntrustedJson(response);
  Json* data = DataOf(env);
  if (data == nullptr) {
    return response;
  }
  const Json req = ParseUntrustedJson(request);
  bool changed = false;
  bool persist = false;  // changed what is kept, and no snapshot follows to write it
  std::string snapshot;  // the session to snapshot, if any
  std::string deleted;   // the session deleted, whose snapshot file goes
  {
    std::lock_guard<std::mutex> lock(mu_);
    Box& box = boxes_[info.id];
    std::string sid = StringAt(*data, "session_id");
    if (sid.empty()) {
      sid = StringAt(req, "id");
    }
    if (op == "process/start") {
      ++box.background_started;
      persist = true;
    } else if (op == "shell/list") {
      auto rows = data->find("sessions");
      if (rows != data->end() && rows->is_array()) {
        for (auto& row : *rows) {
          auto s = box.sessions.find(StringAt(row, "session_id"));
          if (s != box.sessions.end() && !s->second.notice.empty()) {
            row["notice"] = s->second.notice;
            changed = true;
          }
        }
      }
    } else if (sid.empty()) {
      // nothing to say about a session
    } else if (op == "shell/delete") {
      persist = box.sessions.erase(sid) > 0;
      if (persist) {
        deleted = sid;
      }
      if (durable_.save) {
        durable_.save(info.backend, info.id, sid, Json());
      }
    } else if (op == "shell/view") {
      auto s = box.sessions.find(sid);
      if (s != box.sessions.end() && !s->second.notice.empty()) {
        (*data)["notice"] = s->second.notice;
        changed = true;
      }
    } else {
      Session& s = box.sessions[sid];
      if (auto cwd = StringAt(*data, "cwd"); !cwd.empty()) {
        s.cwd = cwd;
      }
      const std::string status = StringAt(*data, "status");
      if (op == "shell/exec" || op == "shell/wait") {
        s.running = status == "running";
        if (s.running && op == "shell/exec") {
          s.running_command = StringAt(*data, "command");
        }
      } else {
        s.running = false;
      }
      if (op == "shell/run" && data->contains("background_pid")) {
        ++box.background_started;
      }
      if (s.notice_pending && op != "shell/restore" && op != "shell/kill") {
        (*data)["notice"] = s.notice;
        s.notice_pending = false;
        changed = true;
      }
      snapshot = sid;
    }
  }
  if (!deleted.empty() && !dir_.empty()) {
    std::lock_guard<std::mutex> files(file_mu_);
    DropStateFile(info.id, deleted);
    PersistLocked(info.id);
  } else if (persist) {
    Persist(info.id);
  }
  if (!snapshot.empty()) {
    Snapshot(info, snapshot);  // writes the file once the state arrived
  }
  return changed ? DumpJson(env) : response;
}

void SessionKeeper::Snapshot(const SandboxInfo& info, const std::string& session) {
  if (!info.guest_endpoint.starts_with("unix:")) {
    return;
  }
  http::ClientRequest cr;
  cr.method = "POST";
  cr.target = "/api/v1/shell/state";
  cr.headers = {{"X-Access-Token", info.guest_token}, {"Content-Type", "application/json"}};
  cr.body = DumpJson(Json{{"id", session}});
  client_.Send(
      info.guest_endpoint.substr(5), std::move(cr), std::chrono::seconds(10),
      [this, id = info.id, backend = info.backend, session,
       start = Clock::now()](Result<http::ClientResponse> r) {
        const double secs = std::chrono::duration<double>(Clock::now() - start).count();
        const size_t bytes = r ? r->body.size() : 0;
        auto answer = std::make_shared<Result<http::ClientResponse>>(std::move(r));
        Post(
            [this, id, backend, session, secs, answer] {
              Keep(backend, id, session, *answer);
              // Observed once kept, so that a reader of the count finds the snapshot in place.
              metrics_.Observe("agentbox_session_snapshot_seconds", {{"backend", backend}}, secs);
            },
            bytes);
      });
}

Json SessionKeeper::KeptForm(const Json& state, const Session& s, int background_started) {
  return Json{{"state", state},
              {"cwd", s.cwd},
              {"running", s.running},
              {"running_command", s.running_command},
              {"background_started", background_started}};
}

void SessionKeeper::Keep(const std::string& backend, const std::string& id,
                         const std::string& session, Result<http::ClientResponse>& r) {
  Json state;
  std::optional<bool> running;
  if (!r || r->status != 200) {
    Log(LogLevel::kDebug, "session.snapshot_failed", "id={} session={} error=\"{}\"", id, session,
        r ? "status " + std::to_string(r->status) : r.error().message);
  } else {
    Json env = ParseUntrustedJson(r->body);
    if (Json* data = DataOf(env); data != nullptr) {
      if (auto st = data->find("state"); st != data->end() && st->is_object()) {
        state = std::move(*st);
        if (auto run = data->find("running"); run != data->end() && run->is_boolean()) {
          running = run->get<bool>();
        }
      }
    }
  }
  // One writer of the files at a time: a Forget or a shell/delete of this session comes after
  // the file written here, and removes it.
  std::lock_guard<std::mutex> files(file_mu_);
  if (!state.is_null()) {
    std::string text = DumpJson(state);
    std::vector<std::string> drop;
    bool write = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto box = boxes_.find(id);
      if (box == boxes_.end()) {
        return;  // forgotten meanwhile
      }
      auto s = box->second.sessions.find(session);
      if (s != box->second.sessions.end()) {
        // What is kept of one sandbox is bounded (kMaxFileBytes): a sandbox chooses how many
        // sessions it has and how large their states are. Past the bound the largest snapshots
        // go; those sessions keep their working directory.
        std::map<std::string, size_t> sizes;
        for (const auto& [sid, kept] : box->second.sessions) {
          sizes[sid] = sid == session ? text.size() : kept.state_bytes;
        }
        drop = SnapshotsOverBudget(sizes, kMaxFileBytes);
        for (const auto& sid : drop) {
          Session& gone = box->second.sessions[sid];
          gone.state_bytes = 0;
          gone.state.clear();
          gone.state.shrink_to_fit();
        }
        if (!drop.empty()) {  // debug: the sandbox decides how often this happens
          Log(LogLevel::kDebug, "session.memory_bounded", "id={} states_dropped={} max_bytes={}",
              id, drop.size(), kMaxFileBytes);
        }
        if (std::find(drop.begin(), drop.end(), session) == drop.end()) {
          s->second.state_bytes = text.size();
          if (dir_.empty()) {
            s->second.state = std::move(text);
          } else {
            write = true;
          }
        }
        if (running) {
          s->second.running = *running;
        }
        if (durable_.save) {  // the backend's copy (cloudrun session mode: the bucket)
          durable_.save(backend, id, session,
                        KeptForm(state, s->second, box->second.background_started));
        }
      }
    }
    for (const auto& sid : drop) {
      DropStateFile(id, sid);
    }
    if (write) {
      Session s;
      if (!StoreState(id, session, s, std::move(text))) {
        std::lock_guard<std::mutex> lock(mu_);
        if (auto box = boxes_.find(id); box != boxes_.end()) {
          if (auto it = box->second.sessions.find(session); it != box->second.sessions.end()) {
            it->second.state_bytes = 0;
          }
        }
      }
    }
  }
  // Without a new state the file still learns the cwd and running command of the last answer.
  PersistLocked(id);
}

int SessionKeeper::Restore(const SandboxInfo& info, const std::string& why) {
  KeyedLock one_at_a_time(restoring_, info.id);
  Box box;
  bool known = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = boxes_.find(info.id);
    if (it != boxes_.end() && !it->second.sessions.empty()) {
      box = it->second;
      known = true;
    }
  }
  if (!known && durable_.load) {
    // This daemon restarted since the sessions were kept: the backend's copies (untrusted: they
    // live where the sandbox's owner can write).
    auto kept = durable_.load(info.backend, info.id);
    if (!kept) {
      Log(LogLevel::kWarn, "session.restore_load_failed", "id={} error=\"{}\"", info.id,
          kept.error().message);
    } else if (kept->is_object()) {
      for (const auto& [sid, k] : kept->items()) {
        if (!k.is_object() || sid.empty() || sid.size() > 256) {
          continue;
        }
        Session s;
        s.cwd = StringAt(k, "cwd");
        if (auto r = k.find("running"); r != k.end() && r->is_boolean()) {
          s.running = r->get<bool>();
        }
        s.running_command = StringAt(k, "running_command");
        if (auto b = k.find("background_started"); b != k.end() && b->is_number_integer()) {
          box.background_started = std::max(box.background_started, b->get<int>());
        }
        box.sessions[sid] = std::move(s);
      }
      std::lock_guard<std::mutex> files(file_mu_);
      size_t kept_bytes = 0;
      for (const auto& [sid, k] : kept->items()) {
        auto s = box.sessions.find(sid);
        auto st = k.is_object() ? k.find("state") : k.end();
        if (s == box.sessions.end() || st == k.end() || !st->is_object()) {
          continue;
        }
        std::string text = DumpJson(*st);
        if (kept_bytes + text.size() <= kMaxFileBytes) {
          kept_bytes += text.size();
          StoreState(info.id, sid, s->second, std::move(text));
        }
      }
      std::lock_guard<std::mutex> lock(mu_);
      Box& b = boxes_[info.id];
      if (b.sessions.empty()) {
        b = box;
      }
    }
  }
  if (box.sessions.empty()) {
    return 0;
  }
  const auto timeout = std::chrono::seconds(30);
  auto listed = CallGuest(client_, info, "GET", "/api/v1/shell/list", "", timeout);
  std::set<std::string> present;
  if (listed && listed->status == 200) {
    Json env = ParseUntrustedJson(listed->body);
    if (Json* data = DataOf(env); data != nullptr && data->contains("sessions")) {
      for (const auto& row : (*data)["sessions"]) {
        present.insert(StringAt(row, "session_id"));
      }
    }
  } else {
    Log(LogLevel::kWarn, "session.restore_list_failed", "id={} error=\"{}\"", info.id,
        listed ? "status " + std::to_string(listed->status) : listed.error().message);
  }
  const std::string at = UtcNow();
  int restored = 0;
  int failed = 0;
  std::map<std::string, std::string> notices;
  for (const auto& [sid, s] : box.sessions) {
    if (present.count(sid) || (s.state_bytes == 0 && s.cwd.empty())) {
      continue;  // the guest kept it (it never went away), or nothing is known of it
    }
    Result<http::ClientResponse> r;
    Json state = s.state_bytes > 0 ? LoadState(info.id, sid, s) : Json();
    const bool full = state.is_object();
    if (!full && s.cwd.empty()) {
      continue;  // its snapshot is unreadable and nothing else is known of it
    }
    if (full) {
      if (!s.cwd.empty()) {
        state["cwd"] = s.cwd;  // a later answer than the snapshot
      }
      r = CallGuest(client_, info, "POST", "/api/v1/shell/restore",
                    DumpJson(Json{{"id", sid}, {"state", state}}), timeout);
    } else {
      r = CallGuest(
          client_, info, "POST", "/api/v1/shell/exec",
          DumpJson(Json{{"id", sid}, {"command", "cd " + ShellQuote(s.cwd)}, {"wait_seconds", 10}}),
          timeout);
    }
    if (!r || r->status != 200) {
      ++failed;
      Log(LogLevel::kWarn, "session.restore_failed", "id={} session={} error=\"{}\"", info.id, sid,
          r ? r->body.substr(0, 200) : r.error().message);
      continue;
    }
    ++restored;
    std::string notice =
        "The guest restarted (" + why + ") at " + at + "; this session was restored " +
        (full ? "from its state after its last command (working directory, environment, "
                "variables, functions, aliases)."
              : "with the working directory of its last command only (its full state had not "
                "been captured yet): environment, variables, functions and aliases start anew.");
    if (s.running) {
      notice += " The command that was running" +
                (s.running_command.empty() ? std::string() : " (" + s.running_command + ")") +
                " was lost with the old guest: it did not finish and its output is gone.";
    }
    if (box.background_started > 0) {
      notice += " Background processes started before the restart (" +
                std::to_string(box.background_started) + ") were lost.";
    }
    notices[sid] = notice;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = boxes_.find(info.id); it != boxes_.end()) {
      for (const auto& [sid, notice] : notices) {
        if (auto s = it->second.sessions.find(sid); s != it->second.sessions.end()) {
          s->second.notice = notice;
          s->second.notice_pending = true;
          s->second.running = false;
          s->second.running_command.clear();
        }
      }
      if (!notices.empty()) {
        it->second.background_started = 0;
      }
    }
  }
  if (!notices.empty()) {
    Persist(info.id);
  }
  if (restored > 0) {
    metrics_.Increment("agentbox_sessions_restored_total",
                       {{"backend", info.backend}, {"outcome", "ok"}}, restored);
  }
  if (failed > 0) {
    metrics_.Increment("agentbox_sessions_restored_total",
                       {{"backend", info.backend}, {"outcome", "error"}}, failed);
  }
  Log(LogLevel::kInfo, "session.restored", "id={} why=\"{}\" restored={} failed={} kept={}",
      info.id, why, restored, failed, box.sessions.size());
  return restored;
}

void SessionKeeper::Forget(const std::string& id) {
  std::lock_guard<std::mutex> files(file_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    boxes_.erase(id);
  }
  if (!dir_.empty() && ValidSandboxId(id)) {
    ::unlink(FileOf(id).c_str());
    if (auto r = RemoveTree(StatesOf(id)); !r) {
      Log(LogLevel::kWarn, "session.file_failed", "id={} error=\"{}\"", id, r.error().message);
    }
  }
}

bool SessionKeeper::Holds(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  return it != boxes_.end() && !it->second.sessions.empty();
}

size_t SessionKeeper::Kept(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = boxes_.find(id);
  if (it == boxes_.end()) {
    return 0;
  }
  size_t n = 0;
  for (const auto& [sid, s] : it->second.sessions) {
    n += s.state_bytes > 0 ? 1 : 0;
  }
  return n;
}

}  // namespace agentbox::daemon
