// UnixHttpClient against a hostile server standing in for a guest (issue 10 §4): whatever a
// sandbox answers, the daemon's client refuses it within its limits, with a clear error, and
// never holds more than it allows.
#include <gtest/gtest.h>

#include <optional>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"
#include "http/guest_budget.h"

namespace agentbox::http {
namespace {

using namespace std::chrono_literals;

// Reads the request's header, then hands the connection to `answer`, each connection on a
// thread of its own; stops when destroyed.
class HostileGuest {
 public:
  using Answer = std::function<void(int fd, const std::atomic<bool>& stop)>;
  explicit HostileGuest(Answer answer) : answer_(std::move(answer)) {
    char dir[] = "/tmp/agentbox-hostile-XXXXXX";
    dir_ = mkdtemp(dir);
    path_ = dir_ + "/guest.sock";
    lfd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(lfd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(lfd_, 8), 0);
    thread_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept(lfd_, nullptr, nullptr);
        if (fd < 0 || stop_) {
          if (fd >= 0) {
            ::close(fd);
          }
          return;
        }
        handlers_.emplace_back([this, fd] {
          std::string req;
          char buf[4096];
          while (req.find("\r\n\r\n") == std::string::npos) {
            const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
            if (n <= 0) {
              break;
            }
            req.append(buf, static_cast<size_t>(n));
          }
          answer_(fd, stop_);
          ::close(fd);
        });
      }
    });
  }
  ~HostileGuest() {
    stop_ = true;
    ::shutdown(lfd_, SHUT_RDWR);
    ::close(lfd_);
    thread_.join();
    for (auto& h : handlers_) {
      h.join();
    }
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  Answer answer_;
  std::string dir_, path_;
  int lfd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> handlers_;  // one per connection, joined at the end
};

// Writes until the peer goes away or the test ends.
void Flood(int fd, const std::string& head, const std::string& unit,
           const std::atomic<bool>& stop) {
  if (::send(fd, head.data(), head.size(), MSG_NOSIGNAL) < 0) {
    return;
  }
  while (!stop && ::send(fd, unit.data(), unit.size(), MSG_NOSIGNAL) > 0) {
  }
}

long RssKb() {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = 0;
  while (f != nullptr && fgets(line, sizeof(line), f) != nullptr) {
    if (std::strncmp(line, "VmRSS:", 6) == 0) {
      kb = std::atol(line + 6);
    }
  }
  if (f != nullptr) {
    fclose(f);
  }
  return kb;
}

struct Outcome {
  Result<ClientResponse> result;
  std::chrono::milliseconds took;
};

Outcome Call(const std::string& path, std::chrono::milliseconds timeout, bool streaming = false,
             uint64_t max_body = 1 << 20) {
  boost::asio::io_context io;
  UnixHttpClient client(io);
  std::promise<Result<ClientResponse>> done;
  const auto start = std::chrono::steady_clock::now();
  ClientRequest req;
  req.method = "POST";
  req.target = "/api/v1/shell/exec";
  req.body = R"({"command":"echo hi"})";
  auto on_done = [&](Result<ClientResponse> r) { done.set_value(std::move(r)); };
  if (streaming) {
    client.SendStreaming(path, req, timeout, on_done);
  } else {
    client.Send(path, req, timeout, on_done, max_body);
  }
  io.run();
  auto r = done.get_future().get();
  return {std::move(r), std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - start)};
}

TEST(ClientLimits, HugeContentLengthIsRefusedWithoutAllocatingIt) {
  // Boost 1.74 reserved the announced length after refusing it: agentboxd died of bad_alloc.
  HostileGuest g([](int fd, const std::atomic<bool>& stop) {
    Flood(fd,
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
          "Content-Length: 100000000000\r\n\r\n",
          std::string(65536, 'x'), stop);
  });
  const long before = RssKb();
  const Outcome o = Call(g.path(), 10s);
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, ErrorCode::kTooLarge) << o.result.error().message;
  EXPECT_NE(o.result.error().message.find("larger than 1048576 bytes"), std::string::npos);
  EXPECT_LT(RssKb() - before, 32 * 1024);
}

TEST(ClientLimits, EndlessChunkedBodyStopsAtTheLimit) {
  HostileGuest g([](int fd, const std::atomic<bool>& stop) {
    Flood(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
          "10000\r\n" + std::string(65536, 'x') + "\r\n", stop);
  });
  const long before = RssKb();
  const Outcome o = Call(g.path(), 10s);
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, ErrorCode::kTooLarge) << o.result.error().message;
  EXPECT_LT(RssKb() - before, 32 * 1024);
}

TEST(ClientLimits, AnswersOfOneGuestHeldAtOnceAreBounded) {
  // Each call may buffer 64 MiB; four at once from one guest may not buffer 256 MiB.
  HostileGuest g([](int fd, const std::atomic<bool>& stop) {
    Flood(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
          "10000\r\n" + std::string(65536, 'x') + "\r\n", stop);
  });
  boost::asio::io_context io;
  UnixHttpClient client(io);
  std::vector<Result<ClientResponse>> results;
  for (int i = 0; i < 4; ++i) {
    ClientRequest req;
    req.target = "/api/v1/shell/exec";
    client.Send(g.path(), req, std::chrono::seconds(20), [&](Result<ClientResponse> r) {
      results.push_back(std::move(r));
    });
  }
  io.run();
  ASSERT_EQ(results.size(), 4u);
  int over_budget = 0;
  for (const auto& r : results) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kTooLarge) << r.error().message;
    over_budget += r.error().message.find("held at once exceed") != std::string::npos ? 1 : 0;
  }
  // 128 MiB hold two full answers at most: the others are refused by the budget, early.
  EXPECT_GE(over_budget, 2);
}

TEST(ClientLimits, AGuestsAnswersAreReadAtTheBudgetsPace) {
  // Three endless answers one after another, each refused at 64 MiB: past the burst the
  // client reads the guest's bytes at the budget's rate, not as fast as the guest sends them.
  HostileGuest g([](int fd, const std::atomic<bool>& stop) {
    Flood(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
          "10000\r\n" + std::string(65536, 'x') + "\r\n", stop);
  });
  const GuestBudget::Limits& l = GuestBudget::Shared().limits();
  const uint64_t read = 3 * (64ull << 20);
  const auto at_least = std::chrono::milliseconds((read - l.burst) * 1000 / l.rate);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    const Outcome o = Call(g.path(), 30s, false, 64ull << 20);
    ASSERT_FALSE(o.result);
    EXPECT_EQ(o.result.error().code, ErrorCode::kTooLarge) << o.result.error().message;
  }
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, at_least * 9 / 10);
  EXPECT_LT(took, at_least + 20s);
}

TEST(ClientLimits, EndlessHeadersAreABadGateway) {
  for (const bool streaming : {false, true}) {
    HostileGuest g([](int fd, const std::atomic<bool>& stop) {
      Flood(fd, "HTTP/1.1 200 OK\r\n", "X-Flood: " + std::string(1000, 'a') + "\r\n", stop);
    });
    const Outcome o = Call(g.path(), 10s, streaming);
    ASSERT_FALSE(o.result) << streaming;
    EXPECT_EQ(o.result.error().code, ErrorCode::kBadGateway) << o.result.error().message;
    EXPECT_NE(o.result.error().message.find("header larger than 8192 bytes"), std::string::npos)
        << o.result.error().message;
    EXPECT_LT(o.took, 5s);
  }
}

TEST(ClientLimits, GarbageIsABadGateway) {
  HostileGuest g([](int fd, const std::atomic<bool>&) {
    std::string junk(4096, '\0');
    for (size_t i = 0; i < junk.size(); ++i) {
      junk[i] = static_cast<char>((i * 7919 + 13) % 251);
    }
    ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
  });
  const Outcome o = Call(g.path(), 10s);
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, ErrorCode::kBadGateway) << o.result.error().message;
  EXPECT_NE(o.result.error().message.find("malformed HTTP"), std::string::npos);
  EXPECT_EQ(HttpStatus(o.result.error().code), 502);
}

TEST(ClientLimits, AByteBySlowAnswerEndsAtTheDeadline) {
  HostileGuest g([](int fd, const std::atomic<bool>& stop) {
    const std::string answer =
        "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, 'x');
    for (const char c : answer) {
      if (stop || ::send(fd, &c, 1, MSG_NOSIGNAL) <= 0) {
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  const Outcome o = Call(g.path(), 1500ms);
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, ErrorCode::kTimeout) << o.result.error().message;
  EXPECT_LT(o.took, 3s);
}

TEST(ClientLimits, ASilentGuestEndsAtTheDeadline) {
  HostileGuest g([](int, const std::atomic<bool>& stop) {
    for (int i = 0; i < 100 && !stop; ++i) {
      std::this_thread::sleep_for(50ms);
    }
  });
  const Outcome o = Call(g.path(), 500ms);
  ASSERT_FALSE(o.result);
  EXPECT_EQ(o.result.error().code, ErrorCode::kTimeout) << o.result.error().message;
  EXPECT_LT(o.took, 2s);
}

TEST(ClientLimits, AnHonestAnswerStillPasses) {
  HostileGuest g([](int fd, const std::atomic<bool>&) {
    const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    ::send(fd, ok.data(), ok.size(), MSG_NOSIGNAL);
  });
  const Outcome o = Call(g.path(), 5s);
  ASSERT_TRUE(o.result) << o.result.error().message;
  EXPECT_EQ(o.result->status, 200);
  EXPECT_EQ(o.result->body, "{}");
}

TEST(ClientLimits, ARequestOnStoppedIoIsRefusedAtOnce) {
  // A stopped io_context runs no handler: the exchange would never call back, and a daemon
  // waiting on it could not finish its shutdown.
  boost::asio::io_context io;
  UnixHttpClient client(io);
  io.stop();
  for (bool streaming : {false, true}) {
    std::optional<Result<ClientResponse>> got;
    ClientRequest req;
    req.method = "GET";
    req.target = "/health";
    auto done = [&](Result<ClientResponse> r) { got = std::move(r); };
    if (streaming) {
      client.SendStreaming("/nonexistent.sock", req, 5s, done);
    } else {
      client.Send("/nonexistent.sock", req, 5s, done);
    }
    ASSERT_TRUE(got.has_value()) << "streaming=" << streaming;
    ASSERT_FALSE(*got);
    EXPECT_EQ(got->error().code, ErrorCode::kUnavailable);
  }
}

}  // namespace
}  // namespace agentbox::http
