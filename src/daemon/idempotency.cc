#include "daemon/idempotency.h"

#include <dirent.h>
#include <unistd.h>

#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/time_util.h"
#include "daemon/auth.h"

namespace agentbox::daemon {

IdempotencyStore::IdempotencyStore(std::string dir, double ttl_s)
    : dir_(std::move(dir)), ttl_s_(ttl_s) {
  if (dir_.empty()) {
    return;
  }
  if (auto r = EnsureDir(dir_, 0700); !r) {
    Log(LogLevel::kWarn, "idempotency.dir_failed", "dir={} error=\"{}\"", dir_, r.error().message);
    return;
  }
  const double now = NowUnix();
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir_.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      names.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  size_t loaded = 0;
  for (const auto& name : names) {
    if (name.size() != 64 + 5 || !name.ends_with(".json")) {
      if (name.ends_with(".json.tmp")) {
        ::unlink((dir_ + "/" + name).c_str());  // a temporary file of an interrupted write
      }
      continue;
    }
    const std::string digest = name.substr(0, 64);
    auto text = ReadSmallFile(dir_ + "/" + name);
    const Json j = text ? ParseUntrustedJson(*text) : Json();
    Record r;
    if (j.is_object()) {
      r.owner = ValueOr(j, "owner", "");
      r.body_hash = ValueOr(j, "body_hash", "");
      r.id = ValueOr(j, "id", "");
      r.expires_at = ValueOr(j, "expires_at", 0.0);
    }
    if (r.body_hash.empty() || r.expires_at <= now) {
      Remove(digest);
      continue;
    }
    records_[digest] = std::move(r);
    ++loaded;
  }
  if (loaded > 0) {
    Log(LogLevel::kInfo, "idempotency.loaded", "keys={}", loaded);
  }
}

std::optional<std::string> IdempotencyStore::InvalidKey(const std::string& key) {
  if (key.empty() || key.size() > 255) {
    return "Idempotency-Key must be 1 to 255 characters";
  }
  for (unsigned char c : key) {
    if (c < 0x21 || c > 0x7e) {
      return "Idempotency-Key must be visible ASCII characters (no spaces)";
    }
  }
  return std::nullopt;
}

std::string IdempotencyStore::Digest(const std::string& owner, const std::string& key) {
  return Sha256Hex(owner + '\0' + key);
}

Result<void> IdempotencyStore::Save(const std::string& digest, const Record& r) const {
  if (dir_.empty()) {
    return {};
  }
  const Json j = {
      {"owner", r.owner}, {"body_hash", r.body_hash}, {"id", r.id}, {"expires_at", r.expires_at}};
  return WriteFileDurable(dir_ + "/" + digest + ".json", DumpJson(j), 0600);
}

void IdempotencyStore::Remove(const std::string& digest) const {
  if (dir_.empty()) {
    return;
  }
  const std::string path = dir_ + "/" + digest + ".json";
  if (::unlink(path.c_str()) == 0) {
    (void)SyncParentDir(path);  // best effort: a key that comes back is resolved at start-up
  }
}

Result<IdempotencyStore::Begun> IdempotencyStore::Begin(const std::string& owner,
                                                        const std::string& key,
                                                        const std::string& body_hash,
                                                        Waiter waiter) {
  Begun b;
  b.digest = Digest(owner, key);
  std::lock_guard lock(mu_);
  auto it = records_.find(b.digest);
  if (it != records_.end() && it->second.expires_at > NowUnix()) {
    Record& r = it->second;
    if (r.body_hash != body_hash) {
      b.outcome = Outcome::kMismatch;
      return b;
    }
    if (!r.id.empty()) {
      b.outcome = Outcome::kReplay;
      b.id = r.id;
      return b;
    }
    if (r.in_flight) {
      r.waiters.push_back(std::move(waiter));
      b.outcome = Outcome::kWaiting;
      return b;
    }
    // Pending from an earlier daemon and not resolved to a sandbox: this request creates it.
  }
  Record r;
  r.owner = owner;
  r.body_hash = body_hash;
  r.expires_at = NowUnix() + ttl_s_;
  r.in_flight = true;
  if (auto saved = Save(b.digest, r); !saved) {
    return Fail(saved.error());
  }
  records_[b.digest] = std::move(r);
  b.outcome = Outcome::kNew;
  return b;
}

void IdempotencyStore::Complete(const std::string& digest, const std::string& id) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(mu_);
    auto it = records_.find(digest);
    if (it == records_.end()) {
      return;
    }
    it->second.id = id;
    it->second.in_flight = false;
    waiters.swap(it->second.waiters);
    if (auto r = Save(digest, it->second); !r) {
      // Kept in memory: retries reach this daemon until it restarts; then the label finds it.
      Log(LogLevel::kWarn, "idempotency.save_failed", "id={} error=\"{}\"", id, r.error().message);
    }
  }
  for (auto& w : waiters) {
    w(id, 201, "");
  }
}

void IdempotencyStore::Abandon(const std::string& digest, int status, const std::string& body) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard lock(mu_);
    auto it = records_.find(digest);
    if (it == records_.end()) {
      return;
    }
    waiters.swap(it->second.waiters);
    records_.erase(it);
    Remove(digest);
  }
  for (auto& w : waiters) {
    w("", status, body);
  }
}

int IdempotencyStore::ResolvePending(
    const std::function<std::optional<std::string>(const std::string&, const std::string&)>& find) {
  std::lock_guard lock(mu_);
  int resolved = 0;
  for (auto it = records_.begin(); it != records_.end();) {
    Record& r = it->second;
    if (!r.id.empty() || r.in_flight) {
      ++it;
      continue;
    }
    if (auto id = find(r.owner, it->first)) {
      r.id = *id;
      (void)Save(it->first, r);
      Log(LogLevel::kInfo, "idempotency.resolved", "id={}", *id);
      ++resolved;
      ++it;
    } else {
      Log(LogLevel::kInfo, "idempotency.forgotten", "reason=\"its create did not finish\"");
      Remove(it->first);
      it = records_.erase(it);
    }
  }
  return resolved;
}

void IdempotencyStore::Purge(double now) {
  std::lock_guard lock(mu_);
  if (now < next_purge_) {
    return;
  }
  next_purge_ = now + 60;
  for (auto it = records_.begin(); it != records_.end();) {
    if (it->second.expires_at <= now && !it->second.in_flight) {
      Remove(it->first);
      it = records_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t IdempotencyStore::size() const {
  std::lock_guard lock(mu_);
  return records_.size();
}

}  // namespace agentbox::daemon
