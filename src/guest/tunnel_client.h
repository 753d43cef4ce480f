#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "common/error.h"
#include "http/server.h"
#include "http/tunnel_mux.h"

namespace agentbox::guest {

struct TunnelClientOptions {
  std::string url;    // ws://HOST:PORT/v1/tunnel or wss://HOST:PORT/v1/tunnel
  std::string token;  // sent as "Authorization: Bearer <token>"; never logged
  // wss://: the PEM CA certificates the daemon's certificate must chain to; empty = the system's
  // CAs. The certificate must also name the URL's host (DNS or IP subjectAltName). There is no
  // option to skip verification.
  std::string ca_file;
  // Reconnect delays double from min to max (with up to 25 % jitter) while attempts fail; reset
  // once a tunnel is up.
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{5000};
  // WebSocket keep-alive: a ping after half of this idle time; the link is declared dead when
  // nothing at all arrives for this long.
  std::chrono::milliseconds idle_timeout{20000};
};

struct TunnelUrl {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;  // path (and query), "/" when absent
};
// kInvalidArgument for anything but ws://HOST[:PORT][/PATH] or wss://...
Result<TunnelUrl> ParseTunnelUrl(const std::string& url);

// The guest's end of the tunnel: dials out to agentboxd, and serves every stream the daemon opens
// with `server` (through a socketpair per stream, so the guest API is exactly the one it serves on
// --listen). Reconnects with backoff whenever the link drops or an attempt fails. Runs on `io`.
class TunnelClient {
 public:
  TunnelClient(boost::asio::io_context& io, http::Server& server, TunnelClientOptions options);
  ~TunnelClient();
  // Validates the options (URL; for wss:// the CA file, or the system's CAs) and starts dialling.
  Result<void> Start();
  void Stop();

 private:
  template <class Ws>
  struct Attempt;
  void Dial();
  void Retry(const std::string& why);
  void Up(std::unique_ptr<http::tunnel::Link> link);

  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  http::Server& server_;
  TunnelClientOptions opts_;
  TunnelUrl url_;
  boost::asio::steady_timer timer_;
  std::chrono::milliseconds backoff_;
  std::shared_ptr<http::tunnel::Mux> mux_;
  http::TlsContextPtr tls_;  // wss:// only
  bool stopped_ = false;
  uint64_t connections_ = 0;
};

}  // namespace agentbox::guest
