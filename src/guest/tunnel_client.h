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
  std::string url;      // ws://HOST:PORT/v1/tunnel (wss:// when built with TLS support)
  std::string token;    // sent as "Authorization: Bearer <token>"; never logged
  std::string ca_file;  // wss://: the CA certificates the daemon's certificate must chain to
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
  // Validates the options (URL, CA file) and starts dialling.
  Result<void> Start();
  void Stop();

 private:
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
  std::shared_ptr<void> tls_;  // boost::asio::ssl::context for wss://
  bool stopped_ = false;
  uint64_t connections_ = 0;
};

}  // namespace agentbox::guest
