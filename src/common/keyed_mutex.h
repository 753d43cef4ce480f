#pragma once

#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <utility>

namespace agentbox {

// Mutual exclusion per key: holders of distinct keys run in parallel, holders of one key run one
// at a time. The backends use it to serialise operations on one sandbox id. Thread-safe. Not
// re-entrant: a thread that locks a key it holds waits forever.
class KeyedMutex {
 public:
  KeyedMutex() = default;
  KeyedMutex(const KeyedMutex&) = delete;
  KeyedMutex& operator=(const KeyedMutex&) = delete;

  // Blocks until no one holds `key`, then holds it.
  void Lock(const std::string& key);
  // Holds `key` if no one does; false (without waiting) otherwise.
  bool TryLock(const std::string& key);
  // Releases `key`, which the caller holds, and wakes its waiters.
  void Unlock(const std::string& key);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> held_;  // guarded by mu_
};

// Holds one key of a KeyedMutex for its lifetime (blocking in the constructor).
class KeyedLock {
 public:
  KeyedLock(KeyedMutex& mutex, std::string key) : mutex_(mutex), key_(std::move(key)) {
    mutex_.Lock(key_);
  }
  ~KeyedLock() { mutex_.Unlock(key_); }
  KeyedLock(const KeyedLock&) = delete;
  KeyedLock& operator=(const KeyedLock&) = delete;

 private:
  KeyedMutex& mutex_;
  std::string key_;
};

}  // namespace agentbox
