// The server's streamed responses (BodySource) when the client goes away or stays: a client that
// closes its connection mid-stream cancels the source at once, not at its next piece; a client
// that stays gets the whole stream and its next request on the same connection, also one sent
// while the stream was still running (docs/reliability.md §3).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http/server.h"

namespace agentbox::http {
namespace {

using namespace std::chrono_literals;

// Delivers `pieces` one per Next(); with none left it waits (an idle event stream) until
// Finish() or Cancel().
class HeldSource : public BodySource {
 public:
  explicit HeldSource(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  ~HeldSource() override { destroyed = true; }

  void Next(Callback cb) override {
    std::unique_lock lock(mu_);
    if (next_ < pieces_.size()) {
      current_ = pieces_[next_++];
      lock.unlock();
      cb(std::string_view(current_), false);
      return;
    }
    if (finished_) {
      lock.unlock();
      cb(std::string_view(), true);
      return;
    }
    pending_ = std::move(cb);
  }
  void Cancel() override {
    cancelled = true;
    Callback cb;
    {
      std::lock_guard lock(mu_);
      cb = std::move(pending_);
      pending_ = nullptr;
    }
    if (cb) {
      cb(Fail(ErrorCode::kUnavailable, "cancelled"), true);
    }
  }
  void Finish() {
    Callback cb;
    {
      std::lock_guard lock(mu_);
      finished_ = true;
      cb = std::move(pending_);
      pending_ = nullptr;
    }
    if (cb) {
      cb(std::string_view(), true);
    }
  }

  static inline std::atomic<bool> cancelled{false};
  static inline std::atomic<bool> destroyed{false};

 private:
  std::mutex mu_;
  std::vector<std::string> pieces_;
  size_t next_ = 0;
  bool finished_ = false;
  std::string current_;
  Callback pending_;
};

class Streams : public Dispatcher {
 public:
  std::unique_ptr<BodySink> StreamBody(const Request&) override { return nullptr; }
  void Handle(Request req, Respond respond) override {
    Response r;
    if (req.path == "/events") {
      auto src = std::make_shared<HeldSource>(std::vector<std::string>{"data: one\n\n"});
      {
        std::lock_guard lock(mu);
        last = src;
      }
      r.content_type = "text/event-stream";
      r.stream = std::move(src);
    } else {
      r.body = "plain " + req.path;
    }
    respond(std::move(r));
  }
  std::mutex mu;
  std::weak_ptr<HeldSource> last;
};

class ServerStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HeldSource::cancelled = false;
    HeldSource::destroyed = false;
    char dir[] = "/tmp/agentbox-stream-XXXXXX";
    dir_ = mkdtemp(dir);
    server_ = std::make_unique<Server>(io_, streams_, ServerOptions{});
    ASSERT_TRUE(server_->Listen("unix:" + dir_ + "/s.sock"));
    for (int i = 0; i < 2; ++i) {  // two I/O threads, as agentboxd and the guest run
      threads_.emplace_back([this] { io_.run(); });
    }
  }
  void TearDown() override {
    server_->Stop();
    work_.reset();
    io_.stop();
    for (auto& t : threads_) {
      t.join();
    }
    std::system(("rm -rf " + dir_).c_str());
  }

  int Connect() {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = dir_ + "/s.sock";
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
  }
  static void Send(int fd, const std::string& bytes) {
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // Reads until `needle` was received (or 5 s passed); returns everything read.
  static std::string ReadUntil(int fd, const std::string& needle, std::string& got) {
    char buf[4096];
    while (got.find(needle) == std::string::npos) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        break;
      }
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  std::shared_ptr<HeldSource> Last() {
    std::lock_guard lock(streams_.mu);
    return streams_.last.lock();
  }
  template <class Pred>
  static bool Within(std::chrono::milliseconds limit, Pred pred) {
    for (auto until = std::chrono::steady_clock::now() + limit;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(5ms)) {
      if (pred()) {
        return true;
      }
    }
    return pred();
  }

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_{
      io_.get_executor()};
  Streams streams_;
  std::unique_ptr<Server> server_;
  std::vector<std::thread> threads_;
  std::string dir_;
};

TEST_F(ServerStreamTest, AClientGoneMidStreamCancelsTheSourceAtOnce) {
  const int fd = Connect();
  Send(fd, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string got;
  ReadUntil(fd, "data: one", got);
  ASSERT_NE(got.find("data: one"), std::string::npos) << got;
  ASSERT_TRUE(Within(2s, [&] { return Last() != nullptr; }));
  EXPECT_FALSE(HeldSource::cancelled);
  ::close(fd);  // the source has nothing more to say: only the watch can notice
  EXPECT_TRUE(Within(2s, [] { return HeldSource::cancelled.load(); }));
  EXPECT_TRUE(Within(2s, [] { return HeldSource::destroyed.load(); }));
}

TEST_F(ServerStreamTest, AClientThatStaysGetsTheStreamAndItsNextRequests) {
  const int fd = Connect();
  Send(fd, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string got;
  ReadUntil(fd, "data: one", got);
  ASSERT_TRUE(Within(2s, [&] { return Last() != nullptr; }));
  // A request sent while the stream runs (pipelined) is answered after it.
  Send(fd, "GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(HeldSource::cancelled);
  Last()->Finish();
  ReadUntil(fd, "plain /after", got);
  EXPECT_NE(got.find("0\r\n\r\n"), std::string::npos) << got;  // the stream's last chunk
  EXPECT_NE(got.find("plain /after"), std::string::npos) << got;
  // And the connection still serves requests, streamed or not.
  for (int i = 0; i < 3; ++i) {
    got.clear();
    Send(fd, "GET /events HTTP/1.1\r\nHost: t\r\n\r\n");
    ReadUntil(fd, "data: one", got);
    ASSERT_TRUE(Within(2s, [&] {
      auto s = Last();
      return s != nullptr;
    }));
    Last()->Finish();
    ReadUntil(fd, "0\r\n\r\n", got);
    Send(fd, "GET /plain HTTP/1.1\r\nHost: t\r\n\r\n");
    ReadUntil(fd, "plain /plain", got);
    EXPECT_NE(got.find("plain /plain"), std::string::npos) << i << got;
  }
  EXPECT_FALSE(HeldSource::cancelled);
  ::close(fd);
}

}  // namespace
}  // namespace agentbox::http
