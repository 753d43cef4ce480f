#include "guest/files/dir_watch.h"

#include <dirent.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <vector>

#include "common/json_util.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace agentbox::guest {

namespace asio = boost::asio;

namespace {

constexpr uint32_t kMask =
    IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DONT_FOLLOW;
// How often a watch checks that its client is still there, and every how many ticks it sends a
// keep-alive (so that relays with an idle limit keep a quiet watch open).
constexpr std::chrono::seconds kTick(5);
constexpr int kKeepaliveTicks = 3;

std::string Line(const Json& j) { return DumpJson(j) + "\n"; }

}  // namespace

const char* WatchEventType(uint32_t mask) {
  if (mask & (IN_CREATE | IN_MOVED_TO)) {
    return "create";
  }
  if (mask & IN_MODIFY) {
    return "write";
  }
  if (mask & IN_DELETE) {
    return "remove";
  }
  if (mask & IN_MOVED_FROM) {
    return "rename";
  }
  if (mask & IN_ATTRIB) {
    return "chmod";
  }
  return nullptr;
}

struct DirWatches::Watch {
  uint64_t id = 0;
  std::string root;
  bool recursive = false;
  std::unique_ptr<asio::posix::stream_descriptor> fd;
  std::map<int, std::string> dirs;  // watch descriptor -> path relative to root ("" = root)
  std::weak_ptr<http::QueueSource> events;
  alignas(inotify_event) char buf[64 * 1024];

  // Adds a watch on root/rel and, when recursive, on every directory below it. `found` (for a
  // directory that appeared while watched) gets every entry already below it: they were made
  // before its watch existed, so inotify never reports them.
  void Add(const std::string& rel, std::vector<std::string>* found = nullptr) {
    const std::string abs = rel.empty() ? root : root + "/" + rel;
    const int wd = ::inotify_add_watch(fd->native_handle(), abs.c_str(), kMask | IN_ONLYDIR);
    if (wd < 0) {
      return;  // gone already, or a limit: what was watched keeps reporting
    }
    dirs[wd] = rel;
    if (!recursive) {
      return;
    }
    DIR* d = ::opendir(abs.c_str());
    if (d == nullptr) {
      return;
    }
    std::vector<std::string> subdirs;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") {
        continue;
      }
      const std::string child = rel.empty() ? name : rel + "/" + name;
      if (found) {
        found->push_back(child);
      }
      struct stat st {};
      if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
        subdirs.push_back(child);
      }
    }
    ::closedir(d);
    for (const auto& s : subdirs) {
      Add(s, found);
    }
  }
};

DirWatches::DirWatches(asio::io_context& io) : io_(io) {}

DirWatches::~DirWatches() {
  if (tick_) {
    tick_->cancel();
  }
}

Result<void> DirWatches::Start(const std::string& path, bool recursive,
                               std::shared_ptr<http::QueueSource> events) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Fail(ErrorCode::kNotFound, "directory " + path + " does not exist");
    }
    return Fail(ErrnoError(errno, "stat " + path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, path + " is not a directory");
  }
  UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!fd) {
    Error e = ErrnoError(errno, "inotify_init1");
    e.code = ErrorCode::kUnavailable;
    return Fail(std::move(e));
  }
  auto w = std::make_shared<Watch>();
  w->id = next_id_++;
  w->root = path.size() > 1 && path.back() == '/' ? path.substr(0, path.size() - 1) : path;
  w->recursive = recursive;
  w->fd = std::make_unique<asio::posix::stream_descriptor>(io_, fd.Release());
  w->events = events;
  w->Add("");
  if (w->dirs.empty()) {
    return Fail(ErrorCode::kUnavailable, "cannot watch " + path + " (inotify limit)");
  }
  events->Push(Line({{"event", "start"}}));
  watches_[w->id] = w;
  ReadLoop(w);
  if (!tick_) {
    tick_ = std::make_unique<asio::steady_timer>(io_);
    Tick();
  }
  Log(LogLevel::kInfo, "fs.watch_started", "path={} recursive={} dirs={}", w->root, recursive,
      w->dirs.size());
  return {};
}

void DirWatches::Tick() {
  tick_->expires_after(kTick);
  tick_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) {
      return;
    }
    const bool keepalive = ++ticks_ % kKeepaliveTicks == 0;
    std::vector<uint64_t> gone;
    for (auto& [id, w] : watches_) {
      auto s = w->events.lock();
      if (!s) {
        gone.push_back(id);
      } else if (keepalive) {
        s->Push(Line({{"event", "keepalive"}}));
      }
    }
    for (uint64_t id : gone) {
      Stop(id);
    }
    Tick();
  });
}

void DirWatches::Stop(uint64_t id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) {
    return;
  }
  boost::system::error_code ignored;
  it->second->fd->close(ignored);  // drops every inotify watch of it
  Log(LogLevel::kInfo, "fs.watch_stopped", "path={}", it->second->root);
  watches_.erase(it);
}

void DirWatches::ReadLoop(const std::shared_ptr<Watch>& w) {
  std::weak_ptr<Watch> weak = w;
  w->fd->async_wait(asio::posix::descriptor_base::wait_read,
                    [this, weak](const boost::system::error_code& ec) {
                      auto self = weak.lock();
                      if (!self || ec) {
                        return;
                      }
                      Drain(*self);
                      if (watches_.count(self->id)) {
                        ReadLoop(self);
                      }
                    });
}

void DirWatches::Drain(Watch& w) {
  auto events = w.events.lock();
  if (!events) {
    return Stop(w.id);
  }
  for (;;) {
    const ssize_t n = ::read(w.fd->native_handle(), w.buf, sizeof(w.buf));
    if (n <= 0) {
      return;  // EAGAIN: all read
    }
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(w.buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_IGNORED) {
        w.dirs.erase(ev->wd);
        continue;
      }
      auto dir = w.dirs.find(ev->wd);
      const char* type = WatchEventType(ev->mask);
      if (dir == w.dirs.end() || type == nullptr || ev->len == 0) {
        continue;
      }
      const std::string name =
          dir->second.empty() ? std::string(ev->name) : dir->second + "/" + ev->name;
      events->Push(Line({{"event", "fs"}, {"name", name}, {"type", type}}));
      if (w.recursive && (ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
        std::vector<std::string> found;
        w.Add(name, &found);
        for (const auto& f : found) {
          events->Push(Line({{"event", "fs"}, {"name", f}, {"type", "create"}}));
        }
      }
    }
  }
}

}  // namespace agentbox::guest
