#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "guest/sessions/session.h"

namespace agentbox::guest {

// Owns the named sessions of one guest. Threading: io thread only.
class SessionManager {
 public:
  SessionManager(boost::asio::io_context& io, ChildReaper& reaper, SessionConfig cfg,
                 SessionState initial, size_t max_sessions);
  ~SessionManager();

  // kNotFound for an unknown id.
  Result<std::shared_ptr<Session>> Get(const std::string& id) const;
  // Returns the session, creating it from the initial state if needed. An empty id creates a
  // session with a fresh random id. kValidation for ids that are too long or contain control
  // characters; kUnavailable when max_sessions are open.
  Result<std::shared_ptr<Session>> GetOrCreate(const std::string& id);
  // Creates a session from a given state (run-once, restore).
  Result<std::shared_ptr<Session>> CreateFromState(const std::string& id, SessionState state);
  Result<void> Remove(const std::string& id);
  size_t size() const { return sessions_.size(); }
  std::vector<std::shared_ptr<Session>> List() const;
  const SessionConfig& config() const { return cfg_; }
  const SessionState& initial_state() const { return initial_; }
  void ShutdownAll();
  // Keeps one session from the initial state with its shell already started, handed out by the
  // next GetOrCreate of a new id, so a sandbox's first command does not wait for a shell to
  // start (about 7 ms here). The spare is replaced in the background. Off until called.
  void EnablePrewarm();

 private:
  void RefillSpare();

  boost::asio::io_context& io_;
  ChildReaper& reaper_;
  SessionConfig cfg_;
  SessionState initial_;
  size_t max_sessions_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  bool prewarm_ = false;
  std::shared_ptr<Session> spare_;
};

}  // namespace agentbox::guest
