#include "http/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cstring>

namespace agentbox::http {

namespace ssl = boost::asio::ssl;

namespace {

// A readable regular file, or why not (the errno text OpenSSL would hide behind "system lib").
Result<void> Readable(const std::string& what, const std::string& path) {
  if (path.empty()) {
    return Fail(ErrorCode::kInvalidArgument, what + ": no file given");
  }
  if (::access(path.c_str(), R_OK) != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                what + " '" + path + "' cannot be read: " + std::strerror(errno));
  }
  return {};
}

}  // namespace

std::string TakeOpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) {
    return "";
  }
  const char* reason = ERR_reason_error_string(e);
  return reason ? reason : "OpenSSL error " + std::to_string(e);
}

Result<TlsContextPtr> MakeServerTlsContext(const std::string& cert_file,
                                           const std::string& key_file) {
  if (auto r = Readable("TLS certificate", cert_file); !r) {
    return tl::unexpected(r.error());
  }
  if (auto r = Readable("TLS private key", key_file); !r) {
    return tl::unexpected(r.error());
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(c, cert_file.c_str()) != 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "TLS certificate '" + cert_file +
                    "' is not a usable PEM certificate chain: " + TakeOpenSslError());
  }
  if (SSL_CTX_use_PrivateKey_file(c, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    const unsigned long e = ERR_peek_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return Fail(ErrorCode::kInvalidArgument, "TLS private key '" + key_file +
                                                   "' does not belong to the certificate '" +
                                                   cert_file + "'");
    }
    return Fail(ErrorCode::kInvalidArgument,
                "TLS private key '" + key_file +
                    "' is not a usable PEM private key: " + TakeOpenSslError());
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    return Fail(ErrorCode::kInvalidArgument, "TLS private key '" + key_file +
                                                 "' does not belong to the certificate '" +
                                                 cert_file + "': " + TakeOpenSslError());
  }
  return ctx;
}

Result<TlsContextPtr> MakeClientTlsContext(const std::string& ca_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX* c = ctx->native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  if (ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(c) != 1) {
      return Fail(ErrorCode::kInvalidArgument,
                  "cannot load the system's CA certificates: " + TakeOpenSslError());
    }
    return ctx;
  }
  if (auto r = Readable("CA file", ca_file); !r) {
    return tl::unexpected(r.error());
  }
  if (SSL_CTX_load_verify_locations(c, ca_file.c_str(), nullptr) != 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "CA file '" + ca_file + "' holds no usable PEM certificate: " + TakeOpenSslError());
  }
  return ctx;
}

Result<void> SetTlsPeerName(TlsSocket& stream, const std::string& host) {
  SSL* s = stream.native_handle();
  X509_VERIFY_PARAM* param = SSL_get0_param(s);
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  if (!ec) {
    // A numeric address must be in the certificate's subjectAltName as an IP entry.
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
      return Fail(ErrorCode::kInvalidArgument, "bad address '" + host + "' for TLS verification");
    }
    return {};
  }
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size()) != 1 ||
      SSL_set_tlsext_host_name(s, host.c_str()) != 1) {
    return Fail(ErrorCode::kInvalidArgument, "bad host name '" + host + "' for TLS");
  }
  return {};
}

std::string TlsHandshakeError(TlsSocket& stream, const boost::system::error_code& ec) {
  const long v = SSL_get_verify_result(stream.native_handle());
  if (v != X509_V_OK) {
    return std::string("certificate verify failed: ") + X509_verify_cert_error_string(v);
  }
  return ec.message();
}

}  // namespace agentbox::http
