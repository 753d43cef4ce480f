#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace agentbox::gcp::testing {

// A fresh 2048-bit RSA key for tests: its PEM (PKCS#8, like Google's key files) goes into a
// service-account key file; Verify checks an RS256 signature made with it.
class TestRsaKey {
 public:
  TestRsaKey();
  ~TestRsaKey();
  TestRsaKey(const TestRsaKey&) = delete;
  TestRsaKey& operator=(const TestRsaKey&) = delete;

  const std::string& pem() const { return pem_; }
  bool Verify(const std::string& signed_input, const std::string& signature) const;
  // A service_account key file's JSON for this key.
  nlohmann::json ServiceAccountKey(
      const std::string& token_uri,
      const std::string& email = "agentbox@proj.iam.gserviceaccount.com",
      const std::string& key_id = "kid-123") const;

 private:
  void* pkey_ = nullptr;  // EVP_PKEY
  std::string pem_;
};

// Decodes base64url without padding (JWT segments).
std::string Base64UrlDecode(std::string s);

}  // namespace agentbox::gcp::testing
