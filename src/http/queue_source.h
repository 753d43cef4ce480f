#pragma once

#include <deque>
#include <mutex>
#include <string>

#include "http/server.h"

namespace agentbox::http {

// A response body produced by another thread piece by piece (e.g. progress lines of a long
// operation): the producer Push()es, the server pulls with Next(). Whatever queued up between
// two pulls is sent as one chunk. Pushing after the client went away is harmless. Thread-safe.
class QueueSource : public BodySource {
 public:
  // `last` ends the body after `bytes`.
  void Push(std::string bytes, bool last = false);
  void Next(Callback cb) override;

 private:
  // Moves everything queued into current_ (one chunk) and returns whether the body ends there.
  // The caller holds mu_.
  bool TakeQueuedLocked();

  std::mutex mu_;
  std::deque<std::string> queue_;
  bool done_ = false;
  Callback pending_;
  std::string current_;  // what the last callback pointed at; valid until the next delivery
};

}  // namespace agentbox::http
