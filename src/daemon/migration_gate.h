#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace agentbox::daemon {

// Which sandboxes are being moved to another backend (daemon/migrate.cc), and the calls to them:
// while a sandbox moves, new calls wait for the move to end (bounded) instead of reaching a guest
// that is about to go away, and the move itself waits until the calls admitted before it have
// been answered, so that the state it copies is the state the last answer described.
// Thread-safe.
class MigrationGate {
 public:
  explicit MigrationGate(boost::asio::io_context& io) : io_(io) {}

  // Starts a move of `id`: from now on calls to it are held. False when a move of `id` is
  // already under way.
  bool Close(const std::string& id);
  // Ends the move of `id`: every held call resumes (posted to the I/O context, in arrival order)
  // with `moved` true.
  void Open(const std::string& id);
  bool Moving(const std::string& id) const;

  // A call to `id` arrives: admitted (counted in flight until Leave) unless `id` is moving.
  bool TryAdmit(const std::string& id);
  // A call to `id` arrives. Not moving: it is admitted (counted in flight until Leave) and this
  // returns true. Moving: `resume` is kept and this returns false; it is called once, on the I/O
  // context, with true when the move ends (the call may try again) or false when `wait` passed
  // first (the call must be refused).
  bool AdmitOrHold(const std::string& id, std::chrono::milliseconds wait,
                   std::function<void(bool moved)> resume);
  // The blocking form, for threads of their own (bulk relays): waits up to `wait` for a move of
  // `id` to end, then admits. False (nothing admitted) when the move outlasted `wait`.
  bool AdmitWaiting(const std::string& id, std::chrono::milliseconds wait);
  // An admitted call to `id` was answered.
  void Leave(const std::string& id);
  // Waits up to `wait` until no admitted call to `id` is in flight; returns how many still are.
  int WaitIdle(const std::string& id, std::chrono::milliseconds wait);

 private:
  struct Held;
  boost::asio::io_context& io_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> in_flight_;  // admitted calls not yet answered, by id
  std::map<std::string, std::vector<std::shared_ptr<Held>>> moving_;  // held calls, by id
};

}  // namespace agentbox::daemon
