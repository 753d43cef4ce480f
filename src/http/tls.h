#pragma once

// TLS for agentboxd's listen addresses ("tls:HOST:PORT") and for the guest's wss:// tunnel:
// OpenSSL through Boost.Asio's ssl::stream. The contexts are built here so that every error names
// the file and OpenSSL's reason, ready to print at start-up.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <string>

#include "common/error.h"

namespace agentbox::http {

using TlsSocket = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;
using TlsContextPtr = std::shared_ptr<boost::asio::ssl::context>;

// A server context (TLS 1.2 and newer) with the PEM certificate chain `cert_file` and the PEM
// private key `key_file`. kInvalidArgument naming the file and the reason when either is missing,
// unreadable or not PEM, or when the key does not belong to the certificate.
Result<TlsContextPtr> MakeServerTlsContext(const std::string& cert_file,
                                           const std::string& key_file);

// A client context (TLS 1.2 and newer) that verifies the peer's certificate chain against the PEM
// CA certificates in `ca_file`, or against the system's CAs when `ca_file` is empty (OpenSSL's
// default paths; SSL_CERT_FILE / SSL_CERT_DIR override them). kInvalidArgument when `ca_file`
// cannot be read or holds no certificate. There is no way to turn verification off.
Result<TlsContextPtr> MakeClientTlsContext(const std::string& ca_file);

// Prepares a client stream for `host` (a DNS name or a numeric address): sends it as SNI (names
// only) and makes the handshake fail unless the certificate is valid for it (subjectAltName DNS
// or IP entries). Call before the handshake.
Result<void> SetTlsPeerName(TlsSocket& stream, const std::string& host);

// Why the last handshake on `stream` failed, in words: the certificate verification result when
// there is one ("certificate verify failed: self-signed certificate in certificate chain"),
// else `ec`'s message.
std::string TlsHandshakeError(TlsSocket& stream, const boost::system::error_code& ec);

// The oldest OpenSSL error on this thread's queue, as text (empty when none); clears the queue.
std::string TakeOpenSslError();

}  // namespace agentbox::http
