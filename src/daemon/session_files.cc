// SessionKeeper's files: what is kept of a sandbox's sessions, written after each snapshot and
// read back when the daemon starts again (daemon/session_keeper.h). A file is untrusted input
// when read: anything of the wrong size, shape or type is skipped, never trusted.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "common/fs_util.h"
#include "common/log.h"
#include "daemon/session_keeper.h"

namespace agentbox::daemon {

namespace {

constexpr int kFileVersion = 1;
constexpr size_t kMaxSessions = 1024;
constexpr size_t kMaxSessionId = 256;
constexpr size_t kMaxText = 16 << 10;  // a cwd or a command line
constexpr int64_t kMaxCount = 1 << 20;

const std::string kSuffix = ".json";

bool ShortString(const Json& j, size_t max) {
  return j.is_string() && j.get_ref<const std::string&>().size() <= max;
}

}  // namespace

void SessionKeeper::Persist(const std::string& id) {
  if (dir_.empty() || !ValidSandboxId(id)) {
    return;
  }
  std::lock_guard<std::mutex> files(file_mu_);
  Json sessions = Json::object();
  Json j;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = boxes_.find(id);
    if (it == boxes_.end()) {
      return;  // forgotten meanwhile (Forget removed the file)
    }
    for (const auto& [sid, s] : it->second.sessions) {
      sessions[sid] = Json{{"state", s.state},
                           {"cwd", s.cwd},
                           {"running", s.running},
                           {"running_command", s.running_command}};
    }
    j = Json{{"version", kFileVersion},
             {"sandbox", id},
             {"background_started", it->second.background_started},
             {"sessions", Json::object()}};
  }
  std::string text;
  // Past the bound, the largest snapshots go first (their sessions keep their working directory).
  std::vector<std::pair<size_t, std::string>> sizes;
  for (const auto& [sid, s] : sessions.items()) {
    sizes.emplace_back(DumpJson(s).size(), sid);
  }
  std::sort(sizes.rbegin(), sizes.rend());
  size_t dropped = 0;
  j["sessions"] = std::move(sessions);
  while (true) {
    text = DumpJson(j);
    if (text.size() <= kMaxFileBytes || dropped == sizes.size()) {
      break;
    }
    j["sessions"][sizes[dropped].second]["state"] = nullptr;
    ++dropped;
  }
  if (dropped > 0) {
    Log(LogLevel::kWarn, "session.file_bounded", "id={} bytes={} states_dropped={}", id,
        text.size(), dropped);
  }
  if (text.size() > kMaxFileBytes) {
    ::unlink(FileOf(id).c_str());  // not even the working directories fit: keep nothing stale
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
    const Json j = Json::parse(*text, nullptr, false);
    if (!j.is_object() || j.value("version", 0) != kFileVersion || j.value("sandbox", "") != id ||
        !j.contains("sessions") || !j["sessions"].is_object() ||
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
        s.state = *v;
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
      if (s.state.is_null() && s.cwd.empty()) {
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
