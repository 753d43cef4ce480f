#pragma once

#include <optional>
#include <string>
#include <vector>

namespace agentbox::daemon {

// API keys accepted on TCP. Each key maps to an owner id: "NAME:KEY" entries own as NAME, bare
// keys own as "key-" + the first 12 hex digits of SHA-256(key), so logs and state never hold a
// key. Keys are compared in constant time. Immutable after construction; thread-safe.
class ApiKeys {
 public:
  // `entries` as in AGENTBOX_API_KEYS (comma-separated); empty entries are ignored.
  explicit ApiKeys(const std::vector<std::string>& entries);

  bool empty() const { return keys_.empty(); }
  size_t size() const { return keys_.size(); }
  // Owner id for `Authorization: Bearer KEY` (the header value), or nullopt.
  std::optional<std::string> Authenticate(const std::string& authorization_header) const;

 private:
  struct Key {
    std::string secret;
    std::string owner;
  };
  std::vector<Key> keys_;
};

// The owner id of callers on the daemon's unix socket: trusted by the socket's file mode, they
// see every sandbox.
inline constexpr const char* kLocalOwner = "local";

std::string Sha256Hex(const std::string& data);

}  // namespace agentbox::daemon
