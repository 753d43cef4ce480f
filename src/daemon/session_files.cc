// SessionKeeper's files: what is kept of a sandbox's sessions, written after each snapshot and
// read back when the daemon starts again (daemon/session_keeper.h). A file is untrusted input
// when read: anything of the wrong size, shape or type is skipped, never trusted.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "daemon/auth.h"
#include "daemon/session_keeper.h"

namespace agentbox::daemon {

namespace {

constexpr int kFileVersion = 1;
constexpr size_t kMaxSessions = 1024;
constexpr size_t kMaxSessionId = 256;
constexpr size_t kMaxText = 16 << 10;  // a cwd or a command line
constexpr int64_t kMaxCount = 1 << 20;

const std::string kSuffix = ".json";
const std::string kStates = ".states";

bool ShortString(const Json& j, size_t max) {
  return j.is_string() && j.get_ref<const std::string&>().size() <= max;
}

}  // namespace

std::string SessionKeeper::StateFileOf(const std::string& id, const std::string& session) const {
  return StatesOf(id) + "/" + Sha256Hex(session) + kSuffix;
}

bool SessionKeeper::StoreState(const std::string& id, const std::string& session, Session& s,
                               std::string text) {
  s.state_bytes = text.size();
  if (dir_.empty()) {
    s.state = std::move(text);
    return true;
  }
  if (!ValidSandboxId(id)) {
    s.state_bytes = 0;
    return false;
  }
  Result<void> r = EnsureDir(dir_, 0700);
  if (r) {
    r = EnsureDir(StatesOf(id), 0700);
  }
  if (r) {
    r = WriteFileAtomic(StateFileOf(id, session), text, 0600);
  }
  if (!r) {
    s.state_bytes = 0;
    Log(LogLevel::kWarn, "session.file_failed", "id={} error=\"{}\"", id, r.error().message);
    return false;
  }
  return true;
}

Json SessionKeeper::LoadState(const std::string& id, const std::string& session,
                              const Session& s) const {
  if (s.state_bytes == 0) {
    return Json();
  }
  Json state;
  if (dir_.empty()) {
    state = ParseUntrustedJson(s.state);
  } else {
    // Untrusted like every file here: the sandbox chose what the state holds.
    auto text = ReadSmallFile(StateFileOf(id, session), kMaxFileBytes + 1);
    if (!text || text->size() > kMaxFileBytes) {
      Log(LogLevel::kWarn, "session.state_unreadable", "id={} session={} error=\"{}\"", id, session,
          text ? "too large" : text.error().message);
      return Json();
    }
    state = ParseUntrustedJson(*text);
  }
  return state.is_object() ? state : Json();
}

void SessionKeeper::DropStateFile(const std::string& id, const std::string& session) {
  if (!dir_.empty() && ValidSandboxId(id)) {
    ::unlink(StateFileOf(id, session).c_str());
  }
}

void SessionKeeper::Persist(const std::string& id) {
  std::lock_guard<std::mutex> files(file_mu_);
  PersistLocked(id);
}

void SessionKeeper::PersistLocked(const std::string& id) {
  if (dir_.empty() || !ValidSandboxId(id)) {
    return;
  }
  std::string text;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = boxes_.find(id);
    if (it == boxes_.end()) {
      return;  // forgotten meanwhile (Forget removed the file)
    }
    // The index only: the snapshots are in their own files (StateFileOf).
    Json sessions = Json::object();
    for (const auto& [sid, s] : it->second.sessions) {
      Json row{{"cwd", s.cwd}, {"running", s.running}, {"running_command", s.running_command}};
      if (s.state_bytes > 0) {
        row["state_bytes"] = s.state_bytes;
      }
      sessions[sid] = std::move(row);
    }
    text = DumpJson(Json{{"version", kFileVersion},
                         {"sandbox", id},
                         {"background_started", it->second.background_started},
                         {"sessions", std::move(sessions)}});
  }
  if (text.size() > kMaxFileBytes) {
    // Working directories and command lines (a sandbox chooses them) past the bound: keep
    // nothing stale rather than a file the next daemon would refuse.
    Log(LogLevel::kWarn, "session.file_bounded", "id={} bytes={}", id, text.size());
    ::unlink(FileOf(id).c_str());
    return;
  }
  if (auto r = EnsureDir(dir_, 0700); !r) {
    Log(LogLevel::kWarn, "session.file_failed", "id={} error=\"{}\"", id, r.error().message);
    return;
  }
  if (auto r = WriteFileAtomic(FileOf(id), text, 0600); !r) {
    Log(LogLevel::kWarn, "session.file_failed", "id={} error=\"{}\"", id, r.error().message);
  }
}

std::vector<std::string> SessionKeeper::Load(const std::vector<std::string>& ids, bool complete) {
  std::vector<std::string> loaded;
  if (dir_.empty()) {
    return loaded;
  }
  const std::set<std::string> wanted(ids.begin(), ids.end());
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) {
    return loaded;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") {
      names.push_back(name);
    }
  }
  ::closedir(d);
  for (const auto& name : names) {
    const std::string path = dir_ + "/" + name;
    if (name.ends_with(kStates)) {  // a sandbox's snapshots: kept with its index, or removed
      const std::string owner = name.substr(0, name.size() - kStates.size());
      if (!ValidSandboxId(owner) || (complete && wanted.count(owner) == 0)) {
        if (auto r = RemoveTree(path); !r) {
          Log(LogLevel::kWarn, "session.file_failed", "path={} error=\"{}\"", path,
              r.error().message);
        }
      }
      continue;
    }
    const std::string id =
        name.ends_with(kSuffix) ? name.substr(0, name.size() - kSuffix.size()) : std::string();
    if (id.empty() || !ValidSandboxId(id)) {
      ::unlink(path.c_str());  // a temporary file of a cut write, or not ours
      continue;
    }
    if (wanted.count(id) == 0) {
      if (complete) {
        ::unlink(path.c_str());  // a sandbox that is gone
      }
      continue;
    }
    auto text = ReadSmallFile(path, kMaxFileBytes + 1);
    auto skip = [&](const std::string& why) {
      Log(LogLevel::kWarn, "session.file_skipped", "id={} error=\"{}\"", id, why);
    };
    if (!text) {
      skip(text.error().message);
      continue;
    }
    if (text->size() > kMaxFileBytes) {
      skip("larger than " + std::to_string(kMaxFileBytes) + " bytes");
      continue;
    }
    const Json j = ParseUntrustedJson(*text);
    if (!j.is_object() || ValueOr(j, "version", 0) != kFileVersion ||
        ValueOr(j, "sandbox", "") != id || !j.contains("sessions") || !j["sessions"].is_object() ||
        j["sessions"].size() > kMaxSessions) {
      skip("not a session file of this sandbox");
      continue;
    }
    Box box;
    if (auto n = j.find("background_started");
        n != j.end() && n->is_number_integer() && *n >= 0 && *n <= kMaxCount) {
      box.background_started = n->get<int>();
    }
    size_t bad = 0;
    for (const auto& [sid, row] : j["sessions"].items()) {
      if (sid.empty() || sid.size() > kMaxSessionId || !row.is_object()) {
        ++bad;
        continue;
      }
      Session s;
      if (auto v = row.find("state"); v != row.end() && v->is_object()) {
        // A file of a daemon that kept the snapshots in the index (before they had files).
        std::lock_guard<std::mutex> files(file_mu_);
        StoreState(id, sid, s, DumpJson(*v));
      } else if (auto n = row.find("state_bytes");
                 n != row.end() && n->is_number_unsigned() && *n > 0 && *n <= kMaxFileBytes) {
        s.state_bytes = n->get<size_t>();  // its file is read (and checked) when restoring
      }
      if (auto v = row.find("cwd"); v != row.end() && ShortString(*v, kMaxText)) {
        s.cwd = v->get<std::string>();
      }
      if (auto v = row.find("running"); v != row.end() && v->is_boolean()) {
        s.running = v->get<bool>();
      }
      if (auto v = row.find("running_command"); v != row.end() && ShortString(*v, kMaxText)) {
        s.running_command = v->get<std::string>();
      }
      if (s.state_bytes == 0 && s.cwd.empty()) {
        ++bad;
        continue;
      }
      box.sessions[sid] = std::move(s);
    }
    if (bad > 0) {
      skip(std::to_string(bad) + " session(s) unreadable");
    }
    if (box.sessions.empty()) {
      continue;
    }
    Log(LogLevel::kInfo, "session.file_loaded", "id={} sessions={}", id, box.sessions.size());
    std::lock_guard<std::mutex> lock(mu_);
    boxes_[id] = std::move(box);
    loaded.push_back(id);
  }
  return loaded;
}

}  // namespace agentbox::daemon
