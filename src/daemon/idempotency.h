#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/sandbox_backend.h"
#include "common/error.h"

namespace agentbox::daemon {

// The label a create with an Idempotency-Key gives its sandbox: the key's digest (see
// IdempotencyStore::Digest). The backend records it with the sandbox (jail: spec.json; docker:
// meta.json; a warm pool's claim likewise), so a daemon that died between creating the sandbox and
// recording its id finds the sandbox again by it. Clients cannot set it.
inline constexpr const char* kIdempotencyLabel = "agentbox.idempotency_key";

// Idempotency keys of POST /v1/sandboxes (docs/reliability.md): per caller, key -> the sandbox
// its first request created, kept in <state>/idempotency/<digest>.json until it expires, so a
// retry after a daemon restart still finds it. Thread-safe.
class IdempotencyStore {
 public:
  // What a create with a key should do.
  enum class Outcome {
    kNew,       // first use (or the earlier attempt failed): create, then Complete or Abandon
    kReplay,    // created already: answer with sandbox `id`
    kMismatch,  // the key was used with another body: 422
    kWaiting,   // the first request is still running: `waiter` is called when it ends
  };
  struct Begun {
    Outcome outcome = Outcome::kNew;
    std::string digest;  // the key's identity (file name and label value)
    std::string id;      // kReplay: the sandbox
  };
  // Called when the first request ends: the sandbox's id; or, when it failed, an empty id with
  // the status and body of the first request's answer, which the waiters answer too.
  using Waiter =
      std::function<void(const std::string& id, int status, const std::string& failure_body)>;

  // `dir` is created (0700) if missing; records found there are loaded, expired ones removed.
  // Empty `dir`: keys are kept in memory only (they do not survive a restart).
  IdempotencyStore(std::string dir, double ttl_s);

  // 1-255 visible ASCII characters (0x21-0x7e); a sentence saying so otherwise.
  static std::optional<std::string> InvalidKey(const std::string& key);
  // Identity of `key` for `owner`: keys of two callers never meet.
  static std::string Digest(const std::string& owner, const std::string& key);

  // `body_hash`: the request body's canonical digest. kNew records the key as pending (durably,
  // before the caller's first side effect); kWaiting keeps `waiter`.
  Result<Begun> Begin(const std::string& owner, const std::string& key,
                      const std::string& body_hash, Waiter waiter);
  // The create of `digest` made sandbox `id` (durably recorded), and its waiters are told.
  void Complete(const std::string& digest, const std::string& id);
  // The create of `digest` failed with `status` and `body`: the key is forgotten (a retry
  // creates), and the waiters answer the same.
  void Abandon(const std::string& digest, int status, const std::string& body);

  // After a restart: keys left pending by the previous daemon are resolved against the
  // sandboxes now known. `find` returns the id of the owner's sandbox labelled with a digest,
  // if any; pending keys without one are forgotten (their create was rolled back). Returns how
  // many keys it resolved to a sandbox.
  int ResolvePending(
      const std::function<std::optional<std::string>(const std::string& owner,
                                                      const std::string& digest)>& find);
  // Forgets expired keys (at most once a minute does any work).
  void Purge(double now);
  size_t size() const;

 private:
  struct Record {
    std::string owner;
    std::string body_hash;
    std::string id;  // empty while pending
    double expires_at = 0;
    bool in_flight = false;  // a request of this process is creating it
    std::vector<Waiter> waiters;
  };
  Result<void> Save(const std::string& digest, const Record& r) const;
  void Remove(const std::string& digest) const;

  const std::string dir_;
  const double ttl_s_;
  mutable std::mutex mu_;
  std::map<std::string, Record> records_;  // guarded by mu_, by digest
  double next_purge_ = 0;                  // guarded by mu_
};

}  // namespace agentbox::daemon
