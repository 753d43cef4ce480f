#pragma once

// Request bodies the daemon spools to disk before relaying them as one request (the E2B API's
// uploads, and uploads on TLS connections, which cannot take the raw relay of bulk_relay.cc), and
// bodies answered before they arrived.

#include <unistd.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <string_view>

#include "common/error.h"
#include "common/unique_fd.h"
#include "http/server.h"

namespace agentbox::daemon {

// Writes the body to an unlinked file, then hands it on with its size.
class SpoolSink : public http::BodySink {
 public:
  using Done = std::function<void(std::shared_ptr<UniqueFd>, uint64_t, http::Respond)>;
  SpoolSink(UniqueFd fd, Done done)
      : fd_(std::make_shared<UniqueFd>(std::move(fd))), done_(std::move(done)) {}
  Result<void> OnData(std::string_view bytes) override {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::write(fd_->Get(), bytes.data() + off, bytes.size() - off);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return Fail(ErrnoError(errno, "spool upload"));
      }
      off += static_cast<size_t>(n);
    }
    size_ += bytes.size();
    return {};
  }
  void OnEnd(http::Respond respond) override { done_(fd_, size_, std::move(respond)); }

 private:
  std::shared_ptr<UniqueFd> fd_;
  uint64_t size_ = 0;
  Done done_;
};

// Drops the body and answers a response decided before it arrived.
class AnswerSink : public http::BodySink {
 public:
  explicit AnswerSink(http::Response r) : r_(std::move(r)) {}
  Result<void> OnData(std::string_view) override { return {}; }
  void OnEnd(http::Respond respond) override { respond(std::move(r_)); }

 private:
  http::Response r_;
};

}  // namespace agentbox::daemon
