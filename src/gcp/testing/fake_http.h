#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace agentbox::gcp::testing {

// One request as the fake server received it.
struct FakeRequest {
  std::string method;
  std::string target;                          // as sent: path?query, still encoded
  std::string path;                            // encoded path only
  std::string query;                           // encoded query string without '?'
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  int connection = 0;  // which accepted connection carried it (1-based)

  std::string Header(const std::string& lower_name) const;
  // Form-decoded query parameter ('+' is a space); "" when absent.
  std::string Query(const std::string& name) const;
  bool HasQuery(const std::string& name) const;
};

struct FakeResponse {
  enum class Action {
    kRespond,          // send the response, keep the connection
    kReset,            // abort the connection (RST) without answering
    kPartialAndClose,  // send headers and `partial_bytes` of the body, then close
    kHang              // never answer (the connection stays open until the client gives up)
  };
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  Action action = Action::kRespond;
  size_t partial_bytes = 0;

  static FakeResponse Json(int status, const std::string& body);
};

// A tiny HTTP/1.1 server on 127.0.0.1:<ephemeral> for client tests: keep-alive, Content-Length
// bodies, one thread per connection. Every request is recorded and answered by `handler`
// (called under no lock; may be called from several threads). Stops and joins in the destructor.
class FakeHttpServer {
 public:
  using Handler = std::function<FakeResponse(const FakeRequest&)>;
  explicit FakeHttpServer(Handler handler);
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  std::vector<FakeRequest> requests() const;
  int connections() const { return connections_.load(); }

 private:
  void AcceptLoop();
  void Serve(int fd, int connection);

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::vector<FakeRequest> requests_;
  std::vector<int> open_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// Percent-decodes (and, when form, turns '+' into ' ').
std::string PercentDecode(const std::string& s, bool form);

}  // namespace agentbox::gcp::testing
