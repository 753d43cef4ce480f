#include "daemon/auth.h"

#include <openssl/evp.h>

#include "common/strings.h"

namespace agentbox::daemon {

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

ApiKeys::ApiKeys(const std::vector<std::string>& entries) {
  for (const auto& e : entries) {
    if (e.empty()) {
      continue;
    }
    const size_t colon = e.find(':');
    if (colon != std::string::npos && colon > 0 && colon + 1 < e.size()) {
      keys_.push_back({e.substr(colon + 1), e.substr(0, colon)});
    } else {
      keys_.push_back({e, "key-" + Sha256Hex(e).substr(0, 12)});
    }
  }
}

std::optional<std::string> ApiKeys::Authenticate(const std::string& header) const {
  std::string token = header;
  if (token.size() >= 7 &&
      (token.compare(0, 7, "Bearer ") == 0 || token.compare(0, 7, "bearer ") == 0)) {
    token = token.substr(7);
  } else {
    return std::nullopt;
  }
  // Check every key so the time taken does not reveal which (if any) matched.
  std::optional<std::string> owner;
  for (const auto& k : keys_) {
    if (SecretEquals(token, k.secret) && !owner) {
      owner = k.owner;
    }
  }
  return owner;
}

}  // namespace agentbox::daemon
