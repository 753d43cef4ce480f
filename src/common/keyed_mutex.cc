#include "common/keyed_mutex.h"

namespace agentbox {

void KeyedMutex::Lock(const std::string& key) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return held_.count(key) == 0; });
  held_.insert(key);
}

bool KeyedMutex::TryLock(const std::string& key) {
  std::lock_guard lock(mu_);
  return held_.insert(key).second;
}

void KeyedMutex::Unlock(const std::string& key) {
  {
    std::lock_guard lock(mu_);
    held_.erase(key);
  }
  cv_.notify_all();
}

}  // namespace agentbox
