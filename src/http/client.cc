#include "http/client.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include "common/strings.h"
#include "http/guest_budget.h"
#include "http/pieces_body.h"

namespace agentbox::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using Socket = UnixHttpClient::Socket;

std::string ClientResponse::Header(const std::string& lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) {
      return v;
    }
  }
  return {};
}

namespace {

// A guest's status line and headers together (Beast's default, stated): more is refused.
constexpr uint32_t kMaxHeaderBytes = 8 * 1024;
// What one read of a body asks the socket for. Beast reads at most the buffer's free capacity
// (and at least 512 bytes), and the buffer only grew to hold the header: a 4.7 MB answer came
// in about 2,300 reads of 2 KB, each a trip through the reactor, the guest's budget and a wake-up
// of the other I/O thread (15 ms of the daemon's CPU per such answer; 64 KB reads: see
// docs/reliability.md §4).
constexpr size_t kBodyReadSize = 64 * 1024;

// One request/response exchange. Owns its connection while in flight.
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  ~Exchange() { GuestBudget::Shared().Give(path_, counted_); }

  Exchange(UnixHttpClient& client, std::string path, ClientRequest req,
           std::chrono::milliseconds timeout, UnixHttpClient::Done done, bool streaming,
           uint64_t max_body)
      : client_(client),
        path_(std::move(path)),
        req_(std::move(req)),
        timeout_(timeout),
        done_(std::move(done)),
        streaming_(streaming),
        max_body_(max_body),
        timer_(client.io()),
        pace_(client.io()) {}

  void Start() {
    socket_ = client_.TakeIdle(path_);
    reused_ = socket_ != nullptr;
    ArmTimer();
    if (socket_) {
      Write();
      return;
    }
    Connect();
  }

  // Body streaming after the headers were delivered (SendStreaming).
  void NextChunk(BodySource::Callback cb) {
    if (body_done_) {
      cb(std::string_view(), true);
      return;
    }
    auto& body = stream_parser_->get().body();
    body.data = chunk_;
    body.size = sizeof(chunk_);
    ArmTimer();
    // async_read_some, not async_read: an event stream never completes, and async_read would
    // wait until the whole buffer is full before delivering anything.
    bhttp::async_read_some(
        *socket_, buffer_, *stream_parser_,
        [self = shared_from_this(), cb](beast::error_code ec, size_t) {
          self->timer_.cancel();
          if (ec == bhttp::error::need_buffer) {
            ec = {};
          }
          if (ec) {
            cb(self->timed_out_
                   ? Fail(ErrorCode::kTimeout, "guest stream was silent for longer than " +
                                                   std::to_string(self->timeout_.count()) + " ms")
                   : Fail(ErrorCode::kUnavailable, "guest stream failed: " + ec.message()),
               true);
            return;
          }
          const size_t n = sizeof(self->chunk_) - self->stream_parser_->get().body().size;
          self->body_done_ = self->stream_parser_->is_done();
          if (n == 0 && !self->body_done_) {
            self->NextChunk(cb);  // only framing (chunk headers) was parsed: read on
            return;
          }
          if (self->body_done_ && self->stream_parser_->keep_alive()) {
            self->client_.ReturnIdle(self->path_, std::move(self->socket_));
          }
          cb(std::string_view(self->chunk_, n), self->body_done_);
        });
  }

 private:
  void ArmTimer() {
    timer_.expires_after(timeout_);
    timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
      auto self = weak.lock();
      if (ec || !self) {
        return;
      }
      self->timed_out_ = true;
      if (self->socket_) {
        beast::error_code ignored;
        self->socket_->close(ignored);
      }
    });
  }

  void Connect() {
    // A sandbox can write the directory its guest socket lives in: refuse a symlink in the last
    // component instead of following it to some host socket, and connect through the opened
    // O_PATH descriptor so nothing can be swapped between the check and the connect.
    path_fd_.Reset(::open(path_.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!path_fd_ || ::fstat(path_fd_.Get(), &st) != 0) {
      Finish(Fail(ErrorCode::kUnavailable,
                  "cannot reach guest at " + path_ + ": " + std::strerror(errno)));
      return;
    }
    if (!S_ISSOCK(st.st_mode)) {
      Finish(Fail(ErrorCode::kForbidden, path_ + " is not a socket (refusing to follow it)"));
      return;
    }
    const std::string via = "/proc/self/fd/" + std::to_string(path_fd_.Get());
    socket_ = std::make_unique<Socket>(client_.io());
    beast::error_code oec;
    socket_->open(asio::local::stream_protocol(), oec);
    if (!oec) {
      ::fcntl(socket_->native_handle(), F_SETFD, FD_CLOEXEC);  // never leak into children
    }
    socket_->async_connect(asio::local::stream_protocol::endpoint(via), [self = shared_from_this()](
                                                                            beast::error_code ec) {
      self->path_fd_.Reset();
      if (ec) {
        self->Finish(self->timed_out_
                         ? Fail(ErrorCode::kTimeout, "guest did not accept the connection in time")
                         : Fail(ErrorCode::kUnavailable,
                                "cannot reach guest at " + self->path_ + ": " + ec.message()));
        return;
      }
      self->Write();
    });
  }

  template <class Body>
  void Prepare(bhttp::request<Body>& r) {
    r.method_string(req_.method);
    r.target(req_.target);
    r.version(11);
    r.set(bhttp::field::host, "guest");
    for (const auto& [k, v] : req_.headers) {
      r.set(k, v);
    }
    r.keep_alive(true);
  }

  void Write() {
    auto on_written = [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) {
        self->Retry(ec);
        return;
      }
      self->Read();
    };
    if (req_.body_file && req_.body_file->Valid()) {
      auto r = std::make_shared<bhttp::request<bhttp::file_body>>();
      Prepare(*r);
      beast::file_posix f;
      f.native_handle(::dup(req_.body_file->Get()));
      ::lseek(req_.body_file->Get(), 0, SEEK_SET);
      beast::error_code ec;
      r->body().reset(std::move(f), ec);
      r->prepare_payload();
      bhttp::async_write(*socket_, *r,
                         [r, on_written](beast::error_code e, size_t n) { on_written(e, n); });
      return;
    }
    auto r = std::make_shared<bhttp::request<bhttp::string_body>>();
    Prepare(*r);
    r->body() = req_.body;
    r->prepare_payload();
    bhttp::async_write(*socket_, *r,
                       [r, on_written](beast::error_code e, size_t n) { on_written(e, n); });
  }

  void Read() {
    if (streaming_) {
      stream_parser_.emplace();
      stream_parser_->header_limit(kMaxHeaderBytes);
      stream_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
      bhttp::async_read_header(*socket_, buffer_, *stream_parser_,
                               [self = shared_from_this()](beast::error_code ec, size_t) {
                                 if (ec) {
                                   self->ReadFailed(ec);
                                   return;
                                 }
                                 self->timer_.cancel();
                                 self->buffer_.reserve(kBodyReadSize);
                                 ClientResponse resp;
                                 self->FillHeaders(resp, self->stream_parser_->get());
                                 self->body_done_ = self->stream_parser_->is_done();
                                 resp.stream = std::make_shared<StreamSource>(self);
                                 self->Finish(std::move(resp));
                               });
      return;
    }
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(max_body_);
    // The header first, on its own: Boost 1.74's parser, reading eagerly, goes on into the body
    // after refusing a Content-Length over the body limit and reserves that many bytes (a guest
    // answering "Content-Length: 100000000000" made agentboxd throw std::bad_alloc and die).
    // Reading the header alone stops at the refusal.
    bhttp::async_read_header(*socket_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, size_t) {
                               if (ec) {
                                 self->ReadFailed(ec);
                                 return;
                               }
                               self->buffer_.reserve(kBodyReadSize);
                               self->ReadBody();
                             });
  }

  // Piece by piece, so that what all answers of one guest hold at once is counted
  // (GuestBudget): a sandbox answering many calls with large bodies at once must not grow the
  // daemon by calls x max_body.
  void ReadBody() {
    bhttp::async_read_some(
        *socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t n) {
          if (ec) {
            self->ReadFailed(ec);
            return;
          }
          auto& msg = self->parser_->get();
          // Capacity, not size: what the pieces have allocated.
          const uint64_t held = msg.body().capacity();
          if (held > self->counted_) {
            if (!GuestBudget::Shared().Take(self->path_, held - self->counted_)) {
              self->Finish(Fail(ErrorCode::kTooLarge,
                                "answers of this sandbox's guest held at once exceed " +
                                    std::to_string(GuestBudget::Shared().limits().max_held) +
                                    " bytes (refused)"));
              return;
            }
            self->counted_ = held;
          }
          if (!self->parser_->is_done()) {
            self->ReadBodyPaced(n);
            return;
          }
          ClientResponse resp;
          self->FillHeaders(resp, msg);
          resp.body = msg.body().Take();
          if (self->parser_->keep_alive()) {
            self->client_.ReturnIdle(self->path_, std::move(self->socket_));
          }
          self->Finish(std::move(resp));
        });
  }

  // Reads on after `n` more bytes, at once while the guest's bucket has tokens (GuestBudget).
  // The deadline timer still runs meanwhile: closing the socket fails the next read.
  void ReadBodyPaced(size_t n) {
    const auto wait = GuestBudget::Shared().Pace(path_, n, GuestBudget::Clock::now());
    if (wait.count() == 0) {
      ReadBody();
      return;
    }
    pace_.expires_after(wait);
    pace_.async_wait([self = shared_from_this()](beast::error_code) { self->ReadBody(); });
  }

  // A response that broke a limit is the guest's fault, not a connection to retry; anything
  // else may be a reused connection the guest had closed.
  void ReadFailed(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) {
      Finish(Fail(ErrorCode::kTooLarge,
                  "guest response larger than " + std::to_string(max_body_) + " bytes (refused)"));
      return;
    }
    if (ec == bhttp::error::header_limit) {
      Finish(Fail(ErrorCode::kBadGateway, "guest response header larger than " +
                                              std::to_string(kMaxHeaderBytes) +
                                              " bytes (refused)"));
      return;
    }
    // Bytes that are not HTTP: the guest (a sandbox controls it) answered garbage. A closed or
    // reset connection is not this: it may be a reused one the guest had closed.
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
        ec != bhttp::error::need_more) {
      Finish(Fail(ErrorCode::kBadGateway, "guest answered malformed HTTP: " + ec.message()));
      return;
    }
    Retry(ec);
  }

  template <class Msg>
  void FillHeaders(ClientResponse& resp, const Msg& msg) {
    resp.status = static_cast<int>(msg.result_int());
    for (const auto& f : msg) {
      resp.headers.emplace_back(AsciiLower(f.name_string()), std::string(f.value()));
    }
  }

  // A reused idle connection may have been closed by the server: try once more on a new one.
  void Retry(beast::error_code ec) {
    if (reused_ && !timed_out_ && !req_.body_file) {
      reused_ = false;
      socket_.reset();
      buffer_.clear();
      Connect();
      return;
    }
    Finish(timed_out_ ? Fail(ErrorCode::kTimeout, "guest did not answer in time")
                      : Fail(ErrorCode::kUnavailable, "guest connection failed: " + ec.message()));
  }

  void Finish(Result<ClientResponse> r) {
    if (!streaming_ || !r) {
      timer_.cancel();
    }
    if (done_) {
      auto d = std::move(done_);
      d(std::move(r));
    }
  }

  class StreamSource : public BodySource {
   public:
    explicit StreamSource(std::shared_ptr<Exchange> ex) : ex_(std::move(ex)) {}
    ~StreamSource() override {
      if (ex_->socket_ && !ex_->body_done_) {
        beast::error_code ignored;
        ex_->socket_->close(ignored);  // abandoned mid-body: the connection is unusable
      }
    }
    void Next(Callback cb) override { ex_->NextChunk(std::move(cb)); }
    // Closes the guest connection on the client's I/O: the pending read fails and calls back.
    void Cancel() override {
      asio::post(ex_->client_.io(), [ex = ex_] {
        if (ex->socket_ && !ex->body_done_) {
          beast::error_code ignored;
          ex->socket_->close(ignored);
        }
      });
    }

   private:
    std::shared_ptr<Exchange> ex_;
  };

  UnixHttpClient& client_;
  std::string path_;
  ClientRequest req_;
  std::chrono::milliseconds timeout_;
  UnixHttpClient::Done done_;
  bool streaming_;
  uint64_t max_body_;
  asio::steady_timer timer_;
  asio::steady_timer pace_;  // waits out GuestBudget::Pace between body reads
  std::unique_ptr<Socket> socket_;
  UniqueFd path_fd_;  // O_PATH handle of the socket file while connecting
  bool reused_ = false;
  bool timed_out_ = false;
  bool body_done_ = false;
  uint64_t counted_ = 0;  // body bytes taken from Budget()
  beast::flat_buffer buffer_;
  std::optional<bhttp::response_parser<PiecesBody>> parser_;
  std::optional<bhttp::response_parser<bhttp::buffer_body>> stream_parser_;
  char chunk_[65536];
};

}  // namespace

UnixHttpClient::UnixHttpClient(asio::io_context& io, size_t max_idle_per_path)
    : io_(io), max_idle_(max_idle_per_path) {}

UnixHttpClient::~UnixHttpClient() = default;

namespace {

// A stopped io_context runs no handler: an exchange started on it would never call back.
bool RefuseWhenStopped(boost::asio::io_context& io, const UnixHttpClient::Done& done) {
  if (!io.stopped()) {
    return false;
  }
  done(Fail(ErrorCode::kUnavailable, "shutting down: the client's I/O has stopped"));
  return true;
}

}  // namespace

void UnixHttpClient::Send(const std::string& socket_path, ClientRequest req,
                          std::chrono::milliseconds timeout, Done done, uint64_t max_body) {
  if (RefuseWhenStopped(io_, done)) {
    return;
  }
  std::make_shared<Exchange>(*this, socket_path, std::move(req), timeout, std::move(done), false,
                             max_body)
      ->Start();
}

void UnixHttpClient::SendStreaming(const std::string& socket_path, ClientRequest req,
                                   std::chrono::milliseconds timeout, Done done) {
  if (RefuseWhenStopped(io_, done)) {
    return;
  }
  std::make_shared<Exchange>(*this, socket_path, std::move(req), timeout, std::move(done), true, 0)
      ->Start();
}

std::unique_ptr<Socket> UnixHttpClient::TakeIdle(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = idle_.find(path);
  if (it == idle_.end() || it->second.empty()) {
    return nullptr;
  }
  auto s = std::move(it->second.back());
  it->second.pop_back();
  return s;
}

void UnixHttpClient::ReturnIdle(const std::string& path, std::unique_ptr<Socket> s) {
  if (!s || !s->is_open()) {
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto& v = idle_[path];
  if (v.size() < max_idle_) {
    v.push_back(std::move(s));
  }
}

void UnixHttpClient::Forget(const std::string& socket_path) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.erase(socket_path);
}

}  // namespace agentbox::http
