// PublicPorts (port_access.h): which ports of which sandboxes anyone may reach, kept in
// <state>/ports/<id>.json so a daemon restart keeps them.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "api/sandbox_backend.h"
#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "daemon/port_access.h"

namespace agentbox::daemon {

namespace {

constexpr const char* kSuffix = ".json";
constexpr size_t kMaxPorts = 65535;

}  // namespace

PublicPorts::PublicPorts(std::string dir) : dir_(std::move(dir)) {
  if (dir_.empty()) {
    return;
  }
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) {
    return;  // nothing kept yet
  }
  while (const dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!name.ends_with(kSuffix)) {
      continue;
    }
    const std::string id = name.substr(0, name.size() - std::string(kSuffix).size());
    auto text = ReadSmallFile(dir_ + "/" + name);
    const Json j = text ? ParseUntrustedJson(*text) : Json();
    if (!ValidSandboxId(id) || !j.is_object() || ValueOr(j, "sandbox", "") != id ||
        !j.contains("public") || !j["public"].is_array() || j["public"].size() > kMaxPorts) {
      Log(LogLevel::kWarn, "port.public_file_skipped", "file={}/{}", dir_, name);
      continue;
    }
    std::set<int> ports;
    for (const auto& p : j["public"]) {
      if (p.is_number_integer() && p.get<int64_t>() >= 1 && p.get<int64_t>() <= 65535) {
        ports.insert(p.get<int>());
      }
    }
    if (!ports.empty()) {
      Log(LogLevel::kInfo, "port.public_restored", "sandbox={} ports={}", id, ports.size());
      ports_[id] = std::move(ports);
    }
  }
  ::closedir(d);
}

Result<void> PublicPorts::Persist(const std::string& id, const std::set<int>& ports) const {
  if (dir_.empty()) {
    return {};
  }
  const std::string path = dir_ + "/" + id + kSuffix;
  if (ports.empty()) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Fail(ErrnoError(errno, "remove " + path));
    }
    return {};
  }
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return Fail(ErrnoError(errno, "mkdir " + dir_));
  }
  Json list = Json::array();
  for (int p : ports) {
    list.push_back(p);
  }
  return WriteFileAtomic(path, DumpJson(Json{{"sandbox", id}, {"public", list}}), 0600);
}

Result<void> PublicPorts::Set(const std::string& id, int port, bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<int> next = ports_.count(id) ? ports_[id] : std::set<int>{};
  if (on) {
    next.insert(port);
  } else {
    next.erase(port);
  }
  if (auto r = Persist(id, next); !r) {
    return Fail(ErrorCode::kInternal, "cannot keep the port's visibility: " + r.error().message);
  }
  if (next.empty()) {
    ports_.erase(id);
  } else {
    ports_[id] = std::move(next);
  }
  return {};
}

bool PublicPorts::Contains(const std::string& id, int port) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ports_.find(id);
  return it != ports_.end() && it->second.contains(port);
}

void PublicPorts::Forget(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  ports_.erase(id);
  if (!ValidSandboxId(id)) {
    return;
  }
  if (auto r = Persist(id, {}); !r) {
    Log(LogLevel::kWarn, "port.public_file_left", "sandbox={} error=\"{}\"", id, r.error().message);
  }
}

void PublicPorts::Retain(const std::set<std::string>& ids) {
  std::vector<std::string> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, ports] : ports_) {
      if (!ids.contains(id)) {
        gone.push_back(id);
      }
    }
  }
  for (const auto& id : gone) {
    Forget(id);
  }
}

}  // namespace agentbox::daemon
