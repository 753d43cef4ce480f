#include "common/worker_pool.h"

#include <pthread.h>

#include <boost/asio/post.hpp>

#include "common/guarded.h"
#include "common/log.h"
#include "common/sched_slice.h"

namespace agentbox {

WorkerPool::WorkerPool(size_t threads, size_t stack_bytes)
    : work_(boost::asio::make_work_guard(io_)) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_bytes);
  for (size_t i = 0; i < threads; ++i) {
    pthread_t t;
    int rc = pthread_create(
        &t, &attr,
        [](void* arg) -> void* {
          // Bulk work: the kernel's default slice, so that the threads answering calls (short
          // slice, common/sched_slice.h) preempt it at once when they wake.
          (void)UseDefaultSchedulerSlice();
          RunGuarded(*static_cast<boost::asio::io_context*>(arg), "worker_pool");
          return nullptr;
        },
        &io_);
    if (rc != 0) {
      Log(LogLevel::kError, "worker_pool.thread_failed", "errno={}", rc);
      continue;
    }
    threads_.push_back(t);
  }
  pthread_attr_destroy(&attr);
}

WorkerPool::~WorkerPool() {
  work_.reset();
  for (pthread_t t : threads_) {
    pthread_join(t, nullptr);
  }
}

void WorkerPool::Post(std::function<void()> job) {
  if (threads_.empty()) {
    job();  // no thread could be started: degrade to running inline
    return;
  }
  boost::asio::post(io_, std::move(job));
}

}  // namespace agentbox
