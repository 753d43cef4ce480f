#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

namespace agentbox {

// A fixed set of threads with large stacks running posted jobs. File operations run here: they
// may block on disk, and regex search recurses deeply (libstdc++'s matcher), so the threads get
// a stack big enough for it instead of spawning a thread per search. Stack memory is virtual
// until touched. The threads run with the kernel's default scheduler slice whatever their
// creator's (bulk work; common/sched_slice.h). Thread-safe.
class WorkerPool {
 public:
  WorkerPool(size_t threads, size_t stack_bytes);
  ~WorkerPool();  // finishes queued jobs, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Post(std::function<void()> job);

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::vector<pthread_t> threads_;
};

}  // namespace agentbox
