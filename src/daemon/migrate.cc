// POST /v1/sandboxes/{id}/migrate: moves a live sandbox to another backend (docs/migration.md).
// The sandbox keeps its id, owner, labels and expiry; its /workspace and every session's state
// go to a new sandbox of the same image on the target; calls wait at the gate meanwhile
// (daemon/migration_gate.h); the journal (daemon/migration_journal.h) makes the move crash-safe.
#include <chrono>
#include <thread>

#include "api/root_changes.h"
#include "common/crash_point.h"
#include "common/json_util.h"
#include "common/known_fields.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "daemon/api_detail.h"
#include "daemon/daemon_api.h"
#include "daemon/workspace_copy.h"
#include "http/field_check.h"

namespace agentbox::daemon {

using detail::Clock;

namespace {

// A bad or unknown backend name: 400, naming the field.
Error BadField(const std::string& field, const std::string& why) {
  return Error{ErrorCode::kInvalidArgument, "'" + field + "' " + why};
}

constexpr auto kGuestCall = std::chrono::seconds(30);
// The guests' own working directory (/workspace on every backend; a temporary directory for the
// test doubles): relative paths resolve against it.
const std::string kWorkspace = ".";

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// The `data` of a guest's 200 answer, or an error naming `what`.
Result<Json> GuestData(const Result<http::ClientResponse>& r, const std::string& what) {
  if (!r) {
    return Fail(r.error().code, what + ": " + r.error().message);
  }
  Json env = ParseUntrustedJson(r->body);
  if (r->status != 200 || !env.is_object() || !env.contains("data")) {
    const std::string msg = env.is_object() && env.contains("message") && env["message"].is_string()
                                ? env["message"].get<std::string>()
                                : r->body.substr(0, 200);
    return Fail(r->status == 404 ? ErrorCode::kNotFound : ErrorCode::kUnavailable,
                what + " (" + std::to_string(r->status) + "): " + msg);
  }
  return std::move(env["data"]);
}

std::string StringAt(const Json& j, const char* key) {
  auto it = j.is_object() ? j.find(key) : j.end();
  return j.is_object() && it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// The absolute path of the guest's working directory, as fs/stat resolves ".".
Result<std::string> WorkdirOf(http::UnixHttpClient& client, const SandboxInfo& info) {
  auto st = GuestData(
      CallGuest(client, info, "POST", "/api/v1/fs/stat", DumpJson(Json{{"path", "."}}), kGuestCall),
      "find the working directory");
  if (!st) {
    return Fail(st.error());
  }
  std::string path = st->contains("entry") ? StringAt((*st)["entry"], "path") : "";
  while (path.ends_with("/.") || (path.size() > 1 && path.ends_with("/"))) {
    path.resize(path.ends_with("/.") ? path.size() - 2 : path.size() - 1);
  }
  if (path.empty() || path[0] != '/') {
    return Fail(ErrorCode::kUnavailable, "the guest did not say where its working directory is");
  }
  return path;
}

// A path under `from` (the old guest's working directory) as the same path under `to`.
std::string Rebase(const std::string& path, const std::string& from, const std::string& to) {
  if (from == to || !(path == from || path.starts_with(from + "/"))) {
    return path;
  }
  return to + path.substr(from.size());
}

// At most this many changed paths of the root are named in `not_moved` (changed_total counts
// them all).
constexpr size_t kRootChangesListed = 100;

// The `not_moved` entry for what the sandbox changed in its root filesystem outside /workspace
// and /tmp, which no move copies: the paths when the backend can tell (nothing changed: no
// entry), the root as a whole when it cannot.
std::optional<Json> RootNotMoved(SandboxBackend* backend, const std::string& id) {
  auto* source = dynamic_cast<RootChangeSource*>(backend);
  Result<RootChanges> changes =
      Fail(ErrorCode::kInvalidArgument, std::string(backend->Name()) + " cannot list them");
  if (source != nullptr) {
    changes = source->ListRootChanges(id, kRootChangesListed);
  }
  if (changes && changes->total == 0) {
    return std::nullopt;
  }
  Json entry{{"what", "files"}, {"path", "/"}};
  if (changes) {
    entry.update(RootChangesJson(*changes));
    entry["detail"] = std::to_string(changes->total) +
                      " path(s) changed in the root filesystem outside /workspace and /tmp "
                      "(installed packages, files under /usr/local, ...) are not copied: the "
                      "target starts from the image";
  } else {
    entry["detail"] =
        "changes to the root filesystem outside /workspace and /tmp (installed packages, files "
        "under /usr/local, ...) are not copied: the target starts from the image (" +
        changes.error().message + ")";
  }
  return entry;
}

// What a move copies from the source guest, read while calls are held.
struct Inventory {
  std::vector<std::pair<std::string, Json>> sessions;  // id, state (shell/state)
  Json not_moved = Json::array();
};

}  // namespace

http::Response DaemonApi::MovingResponse(const std::string& id, const std::string& why) const {
  http::Response r = JsonErrStatus(409, "sandbox '" + id + "' " + why + "; retry shortly");
  r.headers.emplace_back(
      "Retry-After",
      std::to_string(std::max<int64_t>(1, static_cast<int64_t>(opts_.migration_retry_after_s))));
  return r;
}

http::Respond DaemonApi::Admitted(const std::string& id, http::Respond respond) {
  return [this, id, respond = std::move(respond)](http::Response r) {
    gate_.Leave(id);
    respond(std::move(r));
  };
}

void DaemonApi::AfterMove(const std::string& id, http::Respond respond,
                          std::function<void(http::Respond)> go) {
  if (gate_.TryAdmit(id)) {
    return go(Admitted(id, std::move(respond)));
  }
  const auto hold = std::chrono::milliseconds(static_cast<int64_t>(opts_.migration_hold_s * 1000));
  auto resume = [this, id, respond, go](bool moved) {
    if (!moved) {
      return respond(MovingResponse(id, "is still moving to another backend"));
    }
    AfterMove(id, respond, go);  // the move ended: the call goes on (or waits for the next move)
  };
  if (gate_.AdmitOrHold(id, hold, std::move(resume))) {
    go(Admitted(id, respond));  // the move ended just now
  }
}

void DaemonApi::Migrate(const std::string& id, const http::Request& req, const Caller& caller,
                        http::Respond respond) {
  if (req.method != "POST") {
    return respond(JsonErrStatus(405, "use POST on /v1/sandboxes/{id}/migrate"));
  }
  auto body = ParseJsonObject(req.body.empty() ? "{}" : req.body);
  if (!body) {
    return respond(JsonErr(body.error()));
  }
  static const FieldSchema kBody = FieldSchema::Reject({"backend"});
  if (!http::AcceptFields(CheckKnownFields(*body, kBody), "POST /v1/sandboxes/{id}/migrate",
                          respond)) {
    return;
  }
  auto to = JsonFields(*body).OptString("backend");
  if (!to) {
    return respond(JsonErr(to.error()));
  }
  auto e = Find(id, caller);
  if (!e) {
    return respond(JsonErr({ErrorCode::kNotFound, "sandbox '" + id + "' not found"}));
  }
  const std::string target = to->value_or("");
  if (target.empty()) {
    return respond(JsonErr(BadField("backend", "is required: the backend to move the sandbox to")));
  }
  if (!backends_.count(target)) {
    return respond(JsonErr(BadField("backend", "unknown backend '" + target + "'")));
  }
  if (!caller.admin && std::find(opts_.pinnable_backends.begin(), opts_.pinnable_backends.end(),
                                 target) == opts_.pinnable_backends.end()) {
    return respond(
        JsonErr({ErrorCode::kForbidden, "this key may not pin backend '" + target + "'"}));
  }
  if (e->info.backend == target) {
    return respond(
        JsonErrStatus(409, "sandbox '" + id + "' is already on backend '" + target + "'"));
  }
  if (!gate_.Close(id)) {
    return respond(MovingResponse(id, "is already moving to another backend"));
  }
  pool_.Post([this, id, target, respond] {
    auto moved = MoveSandbox(id, target, {});
    if (!moved) {
      http::Response r = JsonErr(moved.error());
      if (moved.error().code == ErrorCode::kConflict) {  // calls still running: try again soon
        r.headers.emplace_back("Retry-After",
                               std::to_string(std::max<int64_t>(
                                   1, static_cast<int64_t>(opts_.migration_retry_after_s))));
      }
      return respond(std::move(r));
    }
    respond(JsonOk(std::move(*moved)));
  });
}

Result<Json> DaemonApi::MoveSandbox(const std::string& id, const std::string& to,
                                    const std::vector<std::string>& exclude) {
  const auto start = Clock::now();
  std::string from = "?";
  std::string target_name = to.empty() ? "?" : to;
  bool created = false;
  SandboxBackend* target = nullptr;
  auto hook = [this](const std::string& step) -> Result<void> {
    CrashPoint("daemon.migrate." + step);
    return opts_.migration_hook ? opts_.migration_hook(step) : Result<void>{};
  };
  // Every way out: the gate opens, the outcome is counted; a failure removes what the target got
  // and the journal, so the sandbox stays where it was, untouched.
  auto fail = [&](Error err) -> Result<Json> {
    bool keep_journal = false;  // the target could not be removed: the next start removes it
    if (created && target != nullptr) {
      auto gone = target->Destroy(id);
      keep_journal = !gone && gone.error().code != ErrorCode::kNotFound;
      Log(keep_journal ? LogLevel::kError : LogLevel::kInfo, "migration.target_removed",
          "id={} backend={} error=\"{}\"", id, target_name, gone ? "" : gone.error().message);
      if (keep_journal) {
        err.message +=
            "; removing the partial copy on " + target_name +
            " failed too (the next start of agentboxd removes it): " + gone.error().message;
      }
    }
    if (!keep_journal) {
      journal_.Remove(id);
    }
    gate_.Open(id);
    metrics_.Increment("agentbox_migrations_total",
                       {{"from", from}, {"to", target_name}, {"outcome", "error"}});
    Log(LogLevel::kWarn, "migration.failed", "id={} from={} to={} ms={:.1f} error=\"{}\"", id, from,
        target_name, MsSince(start), err.message);
    err.message = "sandbox '" + id + "' was not moved (it stays on " + from + "): " + err.message;
    return Fail(std::move(err));
  };

  // 1. Quiesce: calls admitted before the gate closed are answered first.
  const auto quiesce =
      std::chrono::milliseconds(static_cast<int64_t>(opts_.migration_quiesce_s * 1000));
  if (int busy = gate_.WaitIdle(id, quiesce); busy > 0) {
    return fail({ErrorCode::kConflict, std::to_string(busy) + " call(s) to it were still running"});
  }
  auto found = Find(id, Caller{"", true});
  if (!found) {
    return fail({ErrorCode::kNotFound, "sandbox '" + id + "' not found"});
  }
  const SandboxEntry old = *found;
  from = old.info.backend;

  // 2. Where to: the caller's backend (a pin), or the selector's choice without `exclude`.
  selector::SelectRequest sr;
  sr.pinned_backend = to;
  sr.subject = old.info.spec.owner;
  const selector::Decision d = selector_->Select(sr, {exclude, "being drained"});
  if (d.backend.empty()) {
    return fail({ErrorCode::kUnavailable, "no backend can take it: " + d.detail});
  }
  target_name = d.backend;
  if (target_name == from) {
    return fail({ErrorCode::kConflict, "it is already on backend '" + from + "'"});
  }
  target = backends_.at(target_name);

  // 3. What moves, read from the source while nothing else reaches it.
  const auto held_from = start;
  Inventory inv;
  auto listed = GuestData(CallGuest(client_, old.info, "GET", "/api/v1/shell/list", "", kGuestCall),
                          "list the sessions");
  if (!listed) {
    return fail(listed.error());
  }
  for (const auto& row : ValueOr(*listed, "sessions", Json::array())) {
    const std::string sid = StringAt(row, "session_id");
    if (sid.empty()) {
      continue;
    }
    auto st = GuestData(CallGuest(client_, old.info, "POST", "/api/v1/shell/state",
                                  DumpJson(Json{{"id", sid}}), kGuestCall),
                        "read the state of session '" + sid + "'");
    if (!st) {
      return fail(st.error());
    }
    if (!st->contains("state") || !(*st)["state"].is_object()) {
      return fail({ErrorCode::kUnavailable, "session '" + sid + "' has no state to move"});
    }
    if (ValueOr(*st, "running", false)) {
      inv.not_moved.push_back(
          {{"what", "running_command"},
           {"session_id", sid},
           {"command", StringAt(row, "last_command")},
           {"detail",
            "a command was running in the session: it keeps running on the old backend "
            "until that sandbox is destroyed, and the session moved with its state "
            "from before that command"}});
    }
    inv.sessions.emplace_back(sid, std::move((*st)["state"]));
  }
  auto procs =
      GuestData(CallGuest(client_, old.info, "POST", "/api/v1/process/list", "{}", kGuestCall),
                "list the background processes");
  if (!procs) {
    return fail(procs.error());
  }
  for (const auto& p : procs->is_array() ? *procs : Json::array()) {
    if (ValueOr(p, "running", false)) {
      inv.not_moved.push_back({{"what", "process"},
                               {"pid", ValueOr(p, "pid", 0)},
                               {"session_id", StringAt(p, "session_id")},
                               {"command", StringAt(p, "command")},
                               {"detail",
                                "a running background process: processes do not move; "
                                "it ends with the old sandbox"}});
    }
  }
  if (auto progs =
          GuestData(CallGuest(client_, old.info, "POST", "/api/v1/exec/list", "{}", kGuestCall),
                    "list the running programs");
      progs) {
    for (const auto& p : ValueOr(*progs, "processes", Json::array())) {
      inv.not_moved.push_back({{"what", "process"},
                               {"pid", ValueOr(p, "pid", 0)},
                               {"command", StringAt(p, "cmd")},
                               {"detail",
                                "a running program (exec/start): processes do not move; "
                                "it ends with the old sandbox"}});
    }
  }
  if (auto tmp = GuestData(CallGuest(client_, old.info, "POST", "/api/v1/fs/list",
                                     DumpJson(Json{{"path", "/tmp"}, {"depth", 1}}), kGuestCall),
                           "list /tmp");
      tmp && !ValueOr(*tmp, "entries", Json::array()).empty()) {
    inv.not_moved.push_back(
        {{"what", "files"},
         {"path", "/tmp"},
         {"entries", (*tmp)["entries"].size()},
         {"detail", "files outside /workspace are not copied: /tmp starts empty on the target"}});
  }
  if (!old.info.spec.read_only_root) {
    if (auto root = RootNotMoved(old.backend, id)) {
      inv.not_moved.push_back(std::move(*root));
    }
  }

  // 4. The intent, then the target: the same spec, id, owner, labels and expiry.
  MigrationRecord rec{id, from, target_name, kPhaseCopying, NowUnix()};
  if (auto w = journal_.Write(rec); !w) {
    return fail({w.error().code, "record the move: " + w.error().message});
  }
  CrashPoint("daemon.migrate.journaled");
  SandboxSpec spec = old.info.spec;
  spec.exact_id = true;
  spec.ttl_s = std::max<int64_t>(10, static_cast<int64_t>(detail::RemainingSeconds(old.info)) + 1);
  // The first move records when the sandbox was created and the image its creator asked for:
  // a backend may record its default image under its own name (docker), which another backend
  // would not know; later moves keep both.
  Json first = old.info.spec.labels.count(kMigratedFromLabel)
                   ? ParseUntrustedJson(old.info.spec.labels.at(kMigratedFromLabel))
                   : Json();
  if (!first.is_object() || !first.contains("image") || !first["image"].is_string()) {
    first = Json{{"created_at", old.info.created_at}, {"image", old.info.spec.image}};
  }
  spec.image = first["image"].get<std::string>();
  spec.labels[kMigratedFromLabel] = DumpJson(Json{{"backend", from},
                                                  {"at", NowUnix()},
                                                  {"created_at", ValueOr(first, "created_at", 0.0)},
                                                  {"image", spec.image}});
  const auto create_start = Clock::now();
  if (auto prepared = target->Prepare(spec,
                                      [&](std::string_view line) {
                                        Log(LogLevel::kDebug, "image.progress", "id={} line=\"{}\"",
                                            id, line);
                                      });
      !prepared) {
    return fail(prepared.error());
  }
  auto info = target->Create(id, spec);
  Count(target_name, "create", detail::BackendOk(info), MsSince(create_start) / 1000);
  if (!info) {
    return fail(info.error());
  }
  created = true;
  if (info->id != id) {
    created = false;
    (void)target->Destroy(info->id);
    return fail({ErrorCode::kInternal, "the target handed out sandbox '" + info->id + "'"});
  }
  if (auto r = hook("created"); !r) {
    return fail(r.error());
  }
  if (old.info.expires_at > 0) {
    if (auto r = target->SetExpiry(id, old.info.expires_at); !r) {
      return fail(r.error());
    }
    info->expires_at = old.info.expires_at;
  }
  const double create_ms = MsSince(create_start);

  // 5. /workspace: one tar stream from guest to guest, into a staging directory of the target's
  // /workspace (a mount point on every backend, so it cannot be renamed over), then moved up.
  const auto copy_start = Clock::now();
  const std::string staging = kWorkspace + "/.agentbox-migrate-" + RandomId(8);
  auto copied = CopyArchive(old.info, kWorkspace, *info, staging, health_.deadlines().stream_idle);
  if (!copied) {
    return fail(copied.error());
  }
  if (auto r = hook("copied"); !r) {
    return fail(r.error());
  }
  for (int round = 0;; ++round) {
    auto entries = GuestData(CallGuest(client_, *info, "POST", "/api/v1/fs/list",
                                       DumpJson(Json{{"path", staging}, {"depth", 1}}), kGuestCall),
                             "list the copied workspace");
    if (!entries) {
      return fail(entries.error());
    }
    const Json rows = ValueOr(*entries, "entries", Json::array());
    if (rows.empty()) {
      break;
    }
    if (round > 10000) {
      return fail({ErrorCode::kInternal, "the copied workspace does not empty"});
    }
    for (const auto& row : rows) {
      const std::string name = StringAt(row, "name");
      auto mv = GuestData(CallGuest(client_, *info, "POST", "/api/v1/fs/move",
                                    DumpJson(Json{{"source", staging + "/" + name},
                                                  {"destination", kWorkspace + "/" + name}}),
                                    kGuestCall),
                          "move " + name + " into /workspace");
      if (!mv) {
        return fail(mv.error());
      }
    }
  }
  if (auto rm =
          GuestData(CallGuest(client_, *info, "POST", "/api/v1/file/delete",
                              DumpJson(Json{{"path", staging}, {"recursive", true}}), kGuestCall),
                    "remove the staging directory");
      !rm) {
    return fail(rm.error());
  }
  const double copy_ms = MsSince(copy_start);

  // 6. Sessions: each one's state, as shell/state gave it, restored under its own id (with
  // paths in the old working directory moved to the new one, where the two differ).
  auto old_workdir = WorkdirOf(client_, old.info);
  auto new_workdir = WorkdirOf(client_, *info);
  if (!old_workdir || !new_workdir) {
    return fail(!old_workdir ? old_workdir.error() : new_workdir.error());
  }
  for (auto& [sid, state] : inv.sessions) {
    if (state.contains("cwd") && state["cwd"].is_string()) {
      state["cwd"] = Rebase(state["cwd"].get<std::string>(), *old_workdir, *new_workdir);
    }
    if (state.contains("env") && state["env"].is_object()) {
      for (const char* var : {"PWD", "OLDPWD"}) {
        if (state["env"].contains(var) && state["env"][var].is_string()) {
          state["env"][var] =
              Rebase(state["env"][var].get<std::string>(), *old_workdir, *new_workdir);
        }
      }
    }
  }
  Json moved_sessions = Json::array();
  std::vector<std::pair<std::string, std::string>> restored;  // id, answer (for the keeper)
  for (const auto& [sid, state] : inv.sessions) {
    const std::string request = DumpJson(Json{{"id", sid}, {"state", state}});
    auto r = CallGuest(client_, *info, "POST", "/api/v1/shell/restore", request, kGuestCall);
    if (auto ok = GuestData(r, "restore session '" + sid + "'"); !ok) {
      return fail(ok.error());
    }
    restored.emplace_back(request, r->body);
    moved_sessions.push_back(sid);
  }
  if (auto r = hook("restored"); !r) {
    return fail(r.error());
  }
  // 7. The new sandbox answers: only now may the old one go.
  if (!GuestAnswers(client_, *info, std::chrono::seconds(10))) {
    return fail({ErrorCode::kUnavailable, "the new sandbox's guest does not answer"});
  }
  rec.phase = kPhaseSwitched;
  if (auto w = journal_.Write(rec); !w) {
    return fail({w.error().code, "record the switch: " + w.error().message});
  }
  CrashPoint("daemon.migrate.switched");
  SandboxEntry moved{*info, target, selector::kMigrated};
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end() || it->second.backend != old.backend) {
      rec.phase = kPhaseCopying;
      (void)journal_.Write(rec);
      return fail({ErrorCode::kNotFound, "sandbox '" + id + "' went away during the move"});
    }
    it->second = moved;
  }
  // The registry names the target: from here on the move is done, whatever else fails.
  if (old.info.guest_endpoint.starts_with("unix:")) {
    client_.Forget(old.info.guest_endpoint.substr(5));
  }
  health_.Forget(id);
  sessions_.Forget(id);  // what was kept described the old guest: snapshot the new one
  for (const auto& [request, answer] : restored) {
    sessions_.Relayed(*info, "shell/restore", request, answer);
  }
  const double held_ms = MsSince(held_from);
  gate_.Open(id);
  CrashPoint("daemon.migrate.opened");

  // 8. The old sandbox goes, then the journal.
  auto destroyed = old.backend->Destroy(id);
  const bool source_gone = destroyed || destroyed.error().code == ErrorCode::kNotFound;
  if (source_gone) {
    journal_.Remove(id);
  } else {
    Log(LogLevel::kError, "migration.source_left", "id={} backend={} error=\"{}\"", id, from,
        destroyed.error().message);
  }
  const double total_ms = MsSince(start);
  metrics_.Increment("agentbox_migrations_total",
                     {{"from", from}, {"to", target_name}, {"outcome", "ok"}});
  metrics_.Observe("agentbox_migration_duration_seconds", {{"from", from}, {"to", target_name}},
                   total_ms / 1000);
  Log(LogLevel::kInfo, "migration.done",
      "id={} from={} to={} ms={:.1f} held_ms={:.1f} bytes={} sessions={} not_moved={}", id, from,
      target_name, total_ms, held_ms, copied->bytes, inv.sessions.size(), inv.not_moved.size());
  Json out{{"id", id},
           {"from", from},
           {"to", target_name},
           {"sandbox", SandboxJson(moved)},
           {"selection", selector::Selector::DecisionJson(d)},
           {"moved",
            {{"workspace", {{"entries", copied->entries}, {"bytes", copied->bytes}}},
             {"sessions", moved_sessions}}},
           {"not_moved", inv.not_moved},
           {"source_destroyed", source_gone},
           {"timings_ms",
            {{"total", total_ms}, {"held", held_ms}, {"create", create_ms}, {"copy", copy_ms}}}};
  if (!source_gone) {
    out["warning"] = "the old sandbox on " + from + " could not be destroyed (" +
                     destroyed.error().message + "); the next start of agentboxd removes it";
  }
  return out;
}

void DaemonApi::ResolveMigrations() {
  metrics_.Describe("agentbox_migrations_total", "counter",
                    "Sandboxes moved between backends (POST /v1/sandboxes/{id}/migrate, "
                    "POST /v1/admin/drain), by source, target and outcome (ok, error).");
  metrics_.Describe("agentbox_migration_duration_seconds", "histogram",
                    "Time of a successful move, from the call to the old sandbox's removal.");
  for (const auto& rec : journal_.Pending()) {
    auto from = backends_.find(rec.from);
    auto to = backends_.find(rec.to);
    if (from == backends_.end() || to == backends_.end()) {
      Log(LogLevel::kError, "migration.unresolved", "id={} from={} to={} error=\"{}\"", rec.id,
          rec.from, rec.to, "a backend of the move is not configured; the journal is kept");
      continue;
    }
    // The loser of the move goes; the winner, when its backend still holds it, is the sandbox.
    const bool switched = rec.phase == kPhaseSwitched;
    SandboxBackend* winner = switched ? to->second : from->second;
    SandboxBackend* loser = switched ? from->second : to->second;
    auto gone = loser->Destroy(rec.id);
    if (!gone && gone.error().code != ErrorCode::kNotFound) {
      Log(LogLevel::kError, "migration.unresolved", "id={} backend={} error=\"{}\"", rec.id,
          loser->Name(), gone.error().message);
      continue;  // tried again at the next start; meanwhile the winner is served
    }
    auto kept = winner->Get(rec.id);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (kept) {
        sandboxes_[rec.id] =
            SandboxEntry{*kept, winner, switched ? selector::kMigrated : "REATTACHED"};
      } else {
        sandboxes_.erase(rec.id);
      }
    }
    journal_.Remove(rec.id);
    const std::string what = switched ? "migration_finished" : "migration_rolled_back";
    metrics_.Increment("agentbox_recovered_total",
                       {{"backend", std::string(winner->Name())}, {"what", what}});
    metrics_.Increment(
        "agentbox_migrations_total",
        {{"from", rec.from}, {"to", rec.to}, {"outcome", switched ? "ok" : "error"}});
    Log(LogLevel::kWarn, "migration.recovered", "id={} from={} to={} phase={} kept_on={} ok={}",
        rec.id, rec.from, rec.to, rec.phase, winner->Name(), kept.has_value());
  }
}

}  // namespace agentbox::daemon
