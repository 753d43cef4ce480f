#include "daemon/config_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace agentbox::daemon {
namespace {

constexpr uint32_t kMask =
    IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB;

std::pair<std::string, std::string> SplitPath(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return {".", path};
  }
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

ConfigWatch::ConfigWatch(boost::asio::io_context& io, std::vector<std::string> files,
                         std::function<void()> on_change, std::chrono::milliseconds debounce)
    : fd_(io), debounce_timer_(io), debounce_(debounce), on_change_(std::move(on_change)) {
  const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    Log(LogLevel::kWarn, "config.watch_unavailable", "error=\"inotify: {}\"", std::strerror(errno));
    return;
  }
  fd_.assign(fd);
  std::map<std::string, int> by_dir;
  for (const auto& file : files) {
    if (file.empty()) {
      continue;
    }
    auto [dir, name] = SplitPath(file);
    auto it = by_dir.find(dir);
    if (it == by_dir.end()) {
      const int wd = ::inotify_add_watch(fd, dir.c_str(), kMask);
      if (wd < 0) {
        Log(LogLevel::kWarn, "config.watch_unavailable", "dir={} error=\"{}\"", dir,
            std::strerror(errno));
        continue;
      }
      it = by_dir.emplace(dir, wd).first;
    }
    names_[it->second].insert(name);
  }
  active_ = !names_.empty();
  if (active_) {
    Arm();
  }
}

ConfigWatch::~ConfigWatch() { Stop(); }

void ConfigWatch::Stop() {
  boost::system::error_code ec;
  debounce_timer_.cancel();
  fd_.cancel(ec);
}

void ConfigWatch::Arm() {
  fd_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                 [this](const boost::system::error_code& ec) {
                   if (!ec) {
                     OnReadable();
                   }
                 });
}

void ConfigWatch::OnReadable() {
  alignas(inotify_event) char buf[16384];
  bool relevant = false;
  for (;;) {
    const ssize_t n = ::read(fd_.native_handle(), buf, sizeof(buf));
    if (n <= 0) {
      break;  // EAGAIN: drained
    }
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      const std::string name = ev->len > 0 ? std::string(ev->name) : std::string();
      auto it = names_.find(ev->wd);
      // A ConfigMap volume swaps its "..data" symlink; the files are links through it.
      if (it != names_.end() && (it->second.count(name) || name == "..data")) {
        relevant = true;
      }
    }
  }
  if (relevant) {
    debounce_timer_.expires_after(debounce_);
    debounce_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) {
        on_change_();
      }
    });
  }
  Arm();
}

}  // namespace agentbox::daemon
