#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace agentbox::daemon {

// Watches configuration files for changes with inotify and calls `on_change` once things have
// settled (a short debounce after the last event). It watches each file's directory, not the file,
// so it sees a file that is replaced by rename (editors, `mv`), deleted, or created later, and the
// symlink swaps of a Kubernetes ConfigMap volume (`..data`). Runs on `io`; Stop() cancels it.
class ConfigWatch {
 public:
  ConfigWatch(boost::asio::io_context& io, std::vector<std::string> files,
              std::function<void()> on_change,
              std::chrono::milliseconds debounce = std::chrono::milliseconds(100));
  ~ConfigWatch();
  ConfigWatch(const ConfigWatch&) = delete;
  ConfigWatch& operator=(const ConfigWatch&) = delete;

  // False when inotify is unavailable or no directory could be watched (SIGHUP still works).
  bool active() const { return active_; }
  void Stop();

 private:
  void Arm();
  void OnReadable();

  boost::asio::posix::stream_descriptor fd_;
  boost::asio::steady_timer debounce_timer_;
  std::chrono::milliseconds debounce_;
  std::function<void()> on_change_;
  std::map<int, std::set<std::string>> names_;  // watch descriptor -> file names in that dir
  bool active_ = false;
};

}  // namespace agentbox::daemon
