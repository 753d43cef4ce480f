#include "http/tls_bridge.h"

#include <array>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <memory>

#include "common/log.h"

namespace agentbox::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Local = asio::local::stream_protocol::socket;

namespace {

class Bridge : public std::enable_shared_from_this<Bridge> {
 public:
  Bridge(TlsSocket tls, Local plain, std::string peer)
      : tls_(std::move(tls)),
        plain_(std::move(plain)),
        timer_(plain_.get_executor()),
        peer_(std::move(peer)) {}

  void Start() {
    ClientToRelay();
    RelayToClient();
  }

 private:
  // Client (TLS) -> relay (plain).
  void ClientToRelay() {
    tls_.async_read_some(asio::buffer(up_), [self = shared_from_this()](
                                                boost::system::error_code ec, size_t n) {
      if (ec) {
        // The client is done sending (close_notify or a TCP end): half-close towards the relay,
        // which still answers. Anything else (a reset, our own cancel) ends the bridge.
        boost::system::error_code ignored;
        if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
          self->plain_.shutdown(asio::socket_base::shutdown_send, ignored);
        } else if (ec != asio::error::operation_aborted) {
          self->Fail("reading from the client", ec);
        }
        return;
      }
      asio::async_write(self->plain_, asio::buffer(self->up_.data(), n),
                        [self](boost::system::error_code wec, size_t) {
                          if (wec) {
                            return self->Fail("writing to the relay", wec);
                          }
                          self->ClientToRelay();
                        });
    });
  }

  // Relay (plain) -> client (TLS).
  void RelayToClient() {
    plain_.async_read_some(asio::buffer(down_), [self = shared_from_this()](
                                                    boost::system::error_code ec, size_t n) {
      if (ec) {
        return self->EndTls();  // the relay is done: so is the connection
      }
      asio::async_write(self->tls_, asio::buffer(self->down_.data(), n),
                        [self](boost::system::error_code wec, size_t) {
                          if (wec) {
                            return self->Fail("writing to the client", wec);
                          }
                          self->RelayToClient();
                        });
    });
  }

  // Sends close_notify; the connection closes when the client answers with its own, or after 2 s.
  void EndTls() {
    if (ending_) {
      return;
    }
    ending_ = true;
    timer_.expires_after(std::chrono::seconds(2));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) {
        self->Close();
      }
    });
    tls_.async_shutdown([self = shared_from_this()](boost::system::error_code) {
      self->timer_.cancel();
      self->Close();
    });
  }

  void Fail(const char* what, const boost::system::error_code& ec) {
    Log(LogLevel::kDebug, "http.tls_bridge_failed", "peer={} while=\"{}\" error=\"{}\"", peer_,
        what, ec.message());
    Close();
  }

  void Close() {
    boost::system::error_code ignored;
    beast::get_lowest_layer(tls_).shutdown(asio::socket_base::shutdown_both, ignored);
    beast::get_lowest_layer(tls_).close(ignored);
    plain_.close(ignored);
  }

  TlsSocket tls_;
  Local plain_;
  asio::steady_timer timer_;
  std::string peer_;
  bool ending_ = false;
  std::array<char, 64 << 10> up_{};
  std::array<char, 64 << 10> down_{};
};

}  // namespace

void StartTlsBridge(TlsSocket tls, Local plain, std::string peer) {
  std::make_shared<Bridge>(std::move(tls), std::move(plain), std::move(peer))->Start();
}

}  // namespace agentbox::http
