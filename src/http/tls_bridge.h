#pragma once

// A TLS connection's plaintext as a unix socket: what lets the raw relays (a sandbox's port,
// docs/ports.md) run on "tls:" listeners, whose sockets carry ciphertext. The server keeps the
// TLS stream and moves bytes between it and one end of a socketpair; the relay gets the other
// end, a plain descriptor like any other.

#include <boost/asio/local/stream_protocol.hpp>
#include <string>

#include "http/tls.h"

namespace agentbox::http {

// Moves bytes both ways between `tls` (handshake done) and `plain` until both directions ended:
// an end of stream from the client is passed on as a half-close of `plain`; the end of `plain`
// (the relay closed or shut down its end) sends TLS close_notify and closes the connection
// (after at most 2 s for the client's close_notify). A failure on either side ends both. `plain`
// must use `tls`'s executor (a strand: an ssl::stream's operations must never run concurrently).
// `peer` names the client in logs.
void StartTlsBridge(TlsSocket tls, boost::asio::local::stream_protocol::socket plain,
                    std::string peer);

}  // namespace agentbox::http
