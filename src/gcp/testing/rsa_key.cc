#include "gcp/testing/rsa_key.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>

namespace agentbox::gcp::testing {

TestRsaKey::TestRsaKey() {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  pkey_ = key;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  pem_.assign(data, static_cast<size_t>(n));
  BIO_free(bio);
}

TestRsaKey::~TestRsaKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

bool TestRsaKey::Verify(const std::string& input, const std::string& sig) const {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, static_cast<EVP_PKEY*>(pkey_)) ==
          1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

nlohmann::json TestRsaKey::ServiceAccountKey(const std::string& token_uri, const std::string& email,
                                             const std::string& key_id) const {
  return {{"type", "service_account"}, {"project_id", "proj"},  {"private_key_id", key_id},
          {"private_key", pem_},       {"client_email", email}, {"client_id", "1"},
          {"token_uri", token_uri}};
}

std::string Base64UrlDecode(std::string s) {
  for (char& c : s) {
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  size_t pad = 0;
  while (s.size() % 4 != 0) {
    s += '=';
    ++pad;
  }
  std::string out(s.size(), '\0');
  int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  out.resize(static_cast<size_t>(std::max(n, 0)) - pad);
  return out;
}

}  // namespace agentbox::gcp::testing
