#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "http/server.h"

namespace agentbox::http {

struct ClientRequest {
  std::string method = "GET";
  std::string target = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // When valid, the body is sent from this file (file_size bytes) instead of `body`.
  std::shared_ptr<UniqueFd> body_file;
  uint64_t body_file_size = 0;
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;
  // Set instead of `body` by SendStreaming: pulls the body from the live connection.
  std::shared_ptr<BodySource> stream;

  std::string Header(const std::string& lower_name) const;
};

// Asynchronous HTTP/1.1 client for unix-socket servers (the daemon talking to guests), with a
// pool of idle keep-alive connections per socket path. A request that fails on a reused
// connection before any response byte arrived is retried once on a fresh one (the server may
// have closed the idle connection). Callbacks run on the io_context's threads. Thread-safe.
class UnixHttpClient {
 public:
  explicit UnixHttpClient(boost::asio::io_context& io, size_t max_idle_per_path = 16);
  ~UnixHttpClient();

  using Done = std::function<void(Result<ClientResponse>)>;
  // `timeout` bounds the whole exchange (for SendStreaming: up to the headers, then each read of
  // the body, so it is an idle limit there). A request that outlives it fails with kTimeout;
  // other failures to reach or read the server are kUnavailable.
  // Buffers the whole response body (up to max_body bytes; more is kTooLarge).
  void Send(const std::string& socket_path, ClientRequest req, std::chrono::milliseconds timeout,
            Done done, uint64_t max_body = 64ull << 20);
  // Delivers status and headers, then the body through ClientResponse::stream. The connection
  // is reused after the stream was read to its end, and closed if the stream is dropped early.
  void SendStreaming(const std::string& socket_path, ClientRequest req,
                     std::chrono::milliseconds timeout, Done done);
  // Closes the idle connections to a socket (its sandbox is gone).
  void Forget(const std::string& socket_path);

  using Socket = boost::asio::local::stream_protocol::socket;
  // Internal: connection pool access for in-flight operations.
  std::unique_ptr<Socket> TakeIdle(const std::string& path);
  void ReturnIdle(const std::string& path, std::unique_ptr<Socket> s);
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context& io_;
  size_t max_idle_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Socket>>> idle_;
};

}  // namespace agentbox::http
