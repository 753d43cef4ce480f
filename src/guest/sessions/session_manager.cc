#include "guest/sessions/session_manager.h"

#include <boost/asio/post.hpp>

#include "common/strings.h"

namespace agentbox::guest {

namespace {
Result<void> ValidateId(const std::string& id) {
  if (id.size() > 128) {
    return Fail(FieldError("id", "must be at most 128 bytes"));
  }
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f || c == '/') {
      return Fail(FieldError("id", "must not contain control characters or '/'"));
    }
  }
  return {};
}
}  // namespace

SessionManager::SessionManager(boost::asio::io_context& io, ChildReaper& reaper, SessionConfig cfg,
                               SessionState initial, size_t max_sessions)
    : io_(io),
      reaper_(reaper),
      cfg_(std::move(cfg)),
      initial_(std::move(initial)),
      max_sessions_(max_sessions) {}

SessionManager::~SessionManager() { ShutdownAll(); }

Result<std::shared_ptr<Session>> SessionManager::Get(const std::string& id) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) {
    return Fail(ErrorCode::kNotFound, "session '" + id + "' not found");
  }
  return it->second;
}

Result<std::shared_ptr<Session>> SessionManager::GetOrCreate(const std::string& id_in) {
  if (!id_in.empty()) {
    if (auto it = sessions_.find(id_in); it != sessions_.end()) {
      return it->second;
    }
  }
  if (spare_ && sessions_.size() < max_sessions_) {
    const std::string id = id_in.empty() ? RandomId() : id_in;
    if (auto v = ValidateId(id); !v) {
      return Fail(v.error());
    }
    auto s = std::move(spare_);
    s->Rename(id);
    sessions_.emplace(id, s);
    boost::asio::post(io_, [this] { RefillSpare(); });
    return s;
  }
  return CreateFromState(id_in, initial_);
}

void SessionManager::EnablePrewarm() {
  prewarm_ = true;
  RefillSpare();
}

void SessionManager::RefillSpare() {
  if (!prewarm_ || spare_) {
    return;
  }
  auto s = std::make_shared<Session>(io_, reaper_, "(spare)", initial_, cfg_);
  if (s->Warm()) {
    spare_ = std::move(s);
  }
}

Result<std::shared_ptr<Session>> SessionManager::CreateFromState(const std::string& id_in,
                                                                 SessionState state) {
  std::string id = id_in.empty() ? RandomId() : id_in;
  if (auto v = ValidateId(id); !v) {
    return Fail(v.error());
  }
  if (sessions_.count(id)) {
    return Fail(ErrorCode::kConflict, "session '" + id + "' already exists");
  }
  if (sessions_.size() >= max_sessions_) {
    return Fail(ErrorCode::kUnavailable, "session limit reached (" + std::to_string(max_sessions_) +
                                             "); remove idle sessions first");
  }
  auto s = std::make_shared<Session>(io_, reaper_, id, std::move(state), cfg_);
  sessions_.emplace(id, s);
  return s;
}

Result<void> SessionManager::Remove(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) {
    return Fail(ErrorCode::kNotFound, "session '" + id + "' not found");
  }
  it->second->Shutdown();
  sessions_.erase(it);
  return {};
}

std::vector<std::shared_ptr<Session>> SessionManager::List() const {
  std::vector<std::shared_ptr<Session>> out;
  for (const auto& [id, s] : sessions_) {
    out.push_back(s);
  }
  return out;
}

void SessionManager::ShutdownAll() {
  prewarm_ = false;
  if (spare_) {
    spare_->Shutdown();
    spare_.reset();
  }
  for (auto& [id, s] : sessions_) {
    s->Shutdown();
  }
  sessions_.clear();
}

}  // namespace agentbox::guest
