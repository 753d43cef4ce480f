#include "fakes/test_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>

namespace agentbox::fakes {
namespace {

struct Deleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
  void operator()(X509* x) const { X509_free(x); }
  void operator()(FILE* f) const { std::fclose(f); }
};
template <class T>
using Owned = std::unique_ptr<T, Deleter>;

Error SslFail(const std::string& what) {
  return Error{ErrorCode::kInternal, "test certificates: " + what};
}

// A certificate for `key`, valid from an hour ago for a day, with a random serial.
Owned<X509> NewCert(EVP_PKEY* key, const std::string& cn) {
  Owned<X509> x(X509_new());
  X509_set_version(x.get(), 2);
  unsigned char serial[8];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return x;
}

bool AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    return false;
  }
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

Result<void> Write(const std::string& cert_file, X509* cert, const std::string& key_file,
                   EVP_PKEY* key) {
  Owned<FILE> c(std::fopen(cert_file.c_str(), "w"));
  Owned<FILE> k(std::fopen(key_file.c_str(), "w"));
  if (!c || !k || PEM_write_X509(c.get(), cert) != 1 ||
      PEM_write_PrivateKey(k.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Fail(SslFail("cannot write " + cert_file + " / " + key_file));
  }
  return {};
}

Result<Owned<EVP_PKEY>> ReadKey(const std::string& file) {
  Owned<FILE> f(std::fopen(file.c_str(), "r"));
  EVP_PKEY* k = f ? PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr) : nullptr;
  if (k == nullptr) {
    return Fail(SslFail("cannot read " + file));
  }
  return Owned<EVP_PKEY>(k);
}

Result<Owned<X509>> ReadCert(const std::string& file) {
  Owned<FILE> f(std::fopen(file.c_str(), "r"));
  X509* x = f ? PEM_read_X509(f.get(), nullptr, nullptr, nullptr) : nullptr;
  if (x == nullptr) {
    return Fail(SslFail("cannot read " + file));
  }
  return Owned<X509>(x);
}

}  // namespace

Result<TestCa> MakeTestCa(const std::string& dir, const std::string& name) {
  Owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) {
    return Fail(SslFail("cannot make a P-256 key"));
  }
  Owned<X509> cert = NewCert(key.get(), "agentbox test CA " + name);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  if (!AddExt(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE") ||
      !AddExt(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !AddExt(cert.get(), cert.get(), NID_subject_key_identifier, "hash") ||
      X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return Fail(SslFail("cannot sign the CA certificate"));
  }
  TestCa ca{dir + "/" + name + ".crt", dir + "/" + name + ".key"};
  if (auto w = Write(ca.cert_file, cert.get(), ca.key_file, key.get()); !w) {
    return tl::unexpected(w.error());
  }
  return ca;
}

Result<TestServerCert> MakeTestServerCert(const TestCa& ca, const std::string& dir,
                                          const std::string& name,
                                          const std::vector<std::string>& ips,
                                          const std::vector<std::string>& dns) {
  auto ca_key = ReadKey(ca.key_file);
  auto ca_cert = ReadCert(ca.cert_file);
  if (!ca_key || !ca_cert) {
    return Fail(ca_key ? ca_cert.error() : ca_key.error());
  }
  Owned<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) {
    return Fail(SslFail("cannot make a P-256 key"));
  }
  Owned<X509> cert = NewCert(key.get(), name);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert->get()));
  std::vector<std::string> names;
  for (const auto& ip : ips) {
    names.push_back("IP:" + ip);
  }
  for (const auto& d : dns) {
    names.push_back("DNS:" + d);
  }
  std::string san;
  for (const auto& n : names) {
    if (!san.empty()) {
      san.push_back(',');
    }
    san.append(n);
  }
  if (!AddExt(cert.get(), ca_cert->get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExt(cert.get(), ca_cert->get(), NID_key_usage, "critical,digitalSignature") ||
      !AddExt(cert.get(), ca_cert->get(), NID_ext_key_usage, "serverAuth") ||
      !AddExt(cert.get(), ca_cert->get(), NID_authority_key_identifier, "keyid") ||
      (!san.empty() && !AddExt(cert.get(), ca_cert->get(), NID_subject_alt_name, san)) ||
      X509_sign(cert.get(), ca_key->get(), EVP_sha256()) == 0) {
    return Fail(SslFail("cannot sign the server certificate"));
  }
  TestServerCert out{dir + "/" + name + ".crt", dir + "/" + name + ".key"};
  if (auto w = Write(out.cert_file, cert.get(), out.key_file, key.get()); !w) {
    return tl::unexpected(w.error());
  }
  return out;
}

}  // namespace agentbox::fakes
