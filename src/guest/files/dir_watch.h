#pragma once

#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <string>

#include "common/error.h"
#include "http/queue_source.h"

namespace agentbox::guest {

// What happens under a watched directory, from inotify(7), in the terms of E2B's envd (which
// takes them from fsnotify): create (IN_CREATE, IN_MOVED_TO), write (IN_MODIFY), remove
// (IN_DELETE), rename (IN_MOVED_FROM: the old name), chmod (IN_ATTRIB).
// fs/watch {path, recursive?} streams NDJSON lines:
//   {"event":"start"}  {"event":"fs","name":"<path relative to the watched dir>","type":"create"}
//   {"event":"keepalive"} (every 15 s)
// until the client goes away. `recursive` watches every directory below too, including ones
// created later. Threading: io thread only.
class DirWatches {
 public:
  explicit DirWatches(boost::asio::io_context& io);
  ~DirWatches();

  // Starts watching `path` (absolute) for `events`. kNotFound when it does not exist,
  // kInvalidArgument when it is not a directory, kUnavailable when inotify refuses (its limits).
  Result<void> Start(const std::string& path, bool recursive,
                     std::shared_ptr<http::QueueSource> events);
  size_t Active() const { return watches_.size(); }

 private:
  struct Watch;
  void ReadLoop(const std::shared_ptr<Watch>& w);
  void Drain(Watch& w);
  void Tick();
  void Stop(uint64_t id);

  boost::asio::io_context& io_;
  std::map<uint64_t, std::shared_ptr<Watch>> watches_;
  uint64_t next_id_ = 1;
  std::unique_ptr<boost::asio::steady_timer> tick_;
  int ticks_ = 0;
};

// The event name of an inotify mask ("create", ...), or nullptr for masks not reported.
const char* WatchEventType(uint32_t mask);

}  // namespace agentbox::guest
