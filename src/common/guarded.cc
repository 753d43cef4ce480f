#include "common/guarded.h"

#include <atomic>
#include <exception>

#include "common/log.h"

namespace agentbox {
namespace {

std::atomic<uint64_t> caught{0};

void Report(const char* where, const char* what) {
  caught.fetch_add(1, std::memory_order_relaxed);
  Log(LogLevel::kError, "thread.exception", "where={} what=\"{}\"", where, what);
}

}  // namespace

void RunGuarded(boost::asio::io_context& io, const char* where) {
  for (;;) {
    try {
      io.run();
      return;
    } catch (const std::exception& e) {
      Report(where, e.what());
    } catch (...) {
      Report(where, "a non-standard exception");
    }
  }
}

void CallGuarded(const std::function<void()>& fn, const char* where) {
  try {
    fn();
  } catch (const std::exception& e) {
    Report(where, e.what());
  } catch (...) {
    Report(where, "a non-standard exception");
  }
}

uint64_t CaughtHandlerExceptions() { return caught.load(std::memory_order_relaxed); }

}  // namespace agentbox
