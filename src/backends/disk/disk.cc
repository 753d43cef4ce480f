#include "backends/disk/disk.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <vector>

#include "common/fs_util.h"
#include "common/log.h"
#include "common/sched_slice.h"
#include "common/strings.h"

extern char** environ;

namespace agentbox::disk {
namespace {

const char* Mkfs() {
  for (const char* p : {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"}) {
    if (::access(p, X_OK) == 0) {
      return p;
    }
  }
  return nullptr;
}

std::string TrimTail(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

// Runs `argv` with stdout and stderr to `log_path`; waits for it (its own pid only).
Result<void> Run(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  const DefaultSliceScope bulk;  // what agentboxd starts does not inherit its short slice
  const int rc = ::posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    return Fail(ErrnoError(rc, "start " + argv[0]));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return Fail(ErrnoError(errno, "wait for " + argv[0]));
    }
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    auto out = ReadSmallFile(log_path, 4096);
    return Fail(ErrorCode::kInternal,
                argv[0] + " failed: " + (out ? TrimTail(*out) : std::string("no output")));
  }
  return {};
}

// Copies `from` to a new file `to`, keeping holes: a reflink where the filesystem can, else
// only the data extents (a fresh ext4 image of 10 GiB holds about 4 MiB of them).
Result<UniqueFd> SparseCopy(const std::string& from, const std::string& to) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) {
    return Fail(ErrnoError(errno, "open " + from));
  }
  UniqueFd out(::open(to.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out) {
    return Fail(ErrnoError(errno, "create " + to));
  }
  struct stat st {};
  if (::fstat(in.Get(), &st) != 0) {
    return Fail(ErrnoError(errno, "stat " + from));
  }
  if (::ioctl(out.Get(), FICLONE, in.Get()) == 0) {
    return out;
  }
  if (::ftruncate(out.Get(), st.st_size) != 0) {
    return Fail(ErrnoError(errno, "size " + to));
  }
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t data = ::lseek(in.Get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {
        break;  // only a hole remains
      }
      return Fail(ErrnoError(errno, "seek " + from));
    }
    off_t hole = ::lseek(in.Get(), data, SEEK_HOLE);
    if (hole < 0) {
      return Fail(ErrnoError(errno, "seek " + from));
    }
    loff_t src = data;
    loff_t dst = data;
    while (src < hole) {
      ssize_t n =
          ::copy_file_range(in.Get(), &src, out.Get(), &dst, static_cast<size_t>(hole - src), 0);
      if (n < 0) {
        return Fail(ErrnoError(errno, "copy " + from));
      }
      if (n == 0) {
        break;
      }
    }
    pos = hole;
  }
  return out;
}

// Attaches `image_fd` to a free loop device that clears itself when its last user (the mounted
// filesystem) lets go. Direct I/O: the sandbox's data is cached once (in its filesystem), not a
// second time as the image file's pages.
Result<std::string> AttachLoop(int image_fd, UniqueFd* loop_fd) {
  UniqueFd ctl(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!ctl) {
    return Fail(ErrnoError(errno, "open /dev/loop-control"));
  }
  for (int attempt = 0; attempt < 32; ++attempt) {
    const int n = ::ioctl(ctl.Get(), LOOP_CTL_GET_FREE);
    if (n < 0) {
      return Fail(ErrnoError(errno, "find a free loop device"));
    }
    const std::string dev = "/dev/loop" + std::to_string(n);
    UniqueFd loop(::open(dev.c_str(), O_RDWR | O_CLOEXEC));
    if (!loop) {
      return Fail(ErrnoError(errno, "open " + dev));
    }
    loop_config cfg{};
    cfg.fd = static_cast<uint32_t>(image_fd);
    cfg.block_size = 4096;
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
    if (::ioctl(loop.Get(), LOOP_CONFIGURE, &cfg) == 0) {
      *loop_fd = std::move(loop);
      return dev;
    }
    if (errno != EBUSY) {
      return Fail(ErrnoError(errno, "attach " + dev));
    }
    // Another process took that device between GET_FREE and CONFIGURE: ask again.
  }
  return Fail(ErrorCode::kUnavailable, "no free loop device after 32 attempts");
}

// A detached mount of the ext4 filesystem on `dev`. noinit_itable: the kernel does not zero the
// inode tables in the background, which would write ~16 MiB per GiB into the sparse image.
Result<UniqueFd> MountDetached(const std::string& dev) {
  UniqueFd fs(::fsopen("ext4", FSOPEN_CLOEXEC));
  if (!fs) {
    return Fail(ErrnoError(errno, "fsopen ext4"));
  }
  if (::fsconfig(fs.Get(), FSCONFIG_SET_STRING, "source", dev.c_str(), 0) != 0 ||
      ::fsconfig(fs.Get(), FSCONFIG_SET_FLAG, "noinit_itable", nullptr, 0) != 0 ||
      ::fsconfig(fs.Get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return Fail(ErrnoError(errno, "mount ext4 from " + dev));
  }
  UniqueFd m(::fsmount(fs.Get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV));
  if (!m) {
    return Fail(ErrnoError(errno, "fsmount " + dev));
  }
  return m;
}

// mkdir -p, mode 0700 for what it creates.
Result<void> MakeDirs(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return Fail(ErrnoError(errno, "mkdir " + prefix));
    }
    if (slash == std::string::npos) {
      return {};
    }
  }
}

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// Removes the ready images of makers whose process is gone (their mounts went with it).
void RemoveStaleReadyDirs(const std::string& work_dir) {
  DIR* d = ::opendir(work_dir.c_str());
  if (d == nullptr) {
    return;
  }
  std::vector<std::string> stale;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (!name.starts_with("ready.")) {
      continue;
    }
    const pid_t pid = static_cast<pid_t>(std::atoi(name.c_str() + 6));
    if (pid <= 0 || (pid != ::getpid() && !Alive(pid))) {
      stale.push_back(work_dir + "/" + name);
    }
  }
  ::closedir(d);
  for (const auto& s : stale) {
    (void)RemoveTree(s);
  }
}

}  // namespace

std::string WhyUnsupported() {
  if (::geteuid() != 0) {
    return "disk limits need root (loop devices and mounting a filesystem): this process runs "
           "as uid " +
           std::to_string(::geteuid());
  }
  if (::access("/dev/loop-control", R_OK | W_OK) != 0) {
    return "disk limits need /dev/loop-control, which is missing here";
  }
  if (Mkfs() == nullptr) {
    return "disk limits need mkfs.ext4 (Debian package e2fsprogs), which is not installed";
  }
  UniqueFd ext4(::fsopen("ext4", FSOPEN_CLOEXEC));  // loads the module if need be
  if (!ext4) {
    return "disk limits need the kernel's ext4 filesystem: " +
           ErrnoError(errno, "fsopen ext4").message;
  }
  return "";
}

Result<Usage> UsageOf(const std::string& mount_point) {
  struct stat st {};
  struct stat parent {};
  if (::stat(mount_point.c_str(), &st) != 0 ||
      ::stat((mount_point + "/..").c_str(), &parent) != 0 || st.st_dev == parent.st_dev) {
    return Fail(ErrorCode::kNotFound, "no disk mounted at " + mount_point);
  }
  struct statvfs vfs {};
  if (::statvfs(mount_point.c_str(), &vfs) != 0) {
    return Fail(ErrnoError(errno, "statvfs " + mount_point));
  }
  Usage u;
  u.size_bytes = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  u.used_bytes = static_cast<uint64_t>(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
  return u;
}

Result<void> Unmount(const std::string& mount_point) {
  if (::umount2(mount_point.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL &&
      errno != ENOENT) {
    return Fail(ErrnoError(errno, "unmount " + mount_point));
  }
  return {};
}

DiskMaker::DiskMaker(std::string work_dir, uint64_t ready_bytes, size_t ready_count)
    : work_dir_(std::move(work_dir)), ready_bytes_(ready_bytes), ready_count_(ready_count) {
  (void)MakeDirs(work_dir_);
  RemoveStaleReadyDirs(work_dir_);
}

DiskMaker::~DiskMaker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (refill_.joinable()) {
    refill_.join();
  }
  ready_.clear();  // closes the detached mounts: their loop devices clear themselves
  (void)RemoveTree(work_dir_ + "/ready." + std::to_string(::getpid()) + "." +
                   std::to_string(reinterpret_cast<uintptr_t>(this)));
}

size_t DiskMaker::ready() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ready_.size();
}

Result<std::string> DiskMaker::Template(uint64_t bytes) {
  // "-j": made with a journal (templates made before, without one, are left alone).
  const std::string path = work_dir_ + "/template-j-" + std::to_string(bytes) + ".img";
  std::lock_guard<std::mutex> lock(template_mu_);
  if (::access(path.c_str(), R_OK) == 0) {
    return path;
  }
  const char* mkfs = Mkfs();
  if (mkfs == nullptr) {
    return Fail(ErrorCode::kUnavailable, WhyUnsupported());
  }
  if (auto r = MakeDirs(work_dir_); !r) {
    return Fail(r.error());
  }
  // Unique: makers of other backends over the same directory may be making it too.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + RandomId(8);
  {
    UniqueFd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!f || ::ftruncate(f.Get(), static_cast<off_t>(bytes)) != 0) {
      return Fail(ErrnoError(errno, "create " + tmp));
    }
  }
  // A small journal, because ext4 without one never reuses an inode freed in the last 30 s
  // while its inode-table block is dirty (find_inode_bit -> recently_deleted): every file
  // created after a large `rm -rf` then scans past all of them, quadratic in the files deleted
  // (a 10,000-file tree unpacked after deleting the previous one took 10-17 s instead of 0.5 s;
  // docs/benchmarks.md). No reserved blocks (df shows the whole limit), nothing zeroed up
  // front (the journal neither: the image stays sparse). Disks under 256 MiB, too small to
  // hold many files, keep the whole limit instead (a 16 MiB journal would be a visible share).
  const bool journal = bytes >= (256ull << 20);
  auto made = Run({mkfs, "-q", "-F", "-b", "4096", "-m", "0", journal ? "-J" : "-O",
                   journal ? "size=16" : "^has_journal", "-E",
                   "nodiscard,lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", tmp},
                  work_dir_ + "/mkfs.log");
  if (!made) {
    ::unlink(tmp.c_str());
    return Fail(made.error());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Fail(ErrnoError(errno, "rename " + tmp));
  }
  Log(LogLevel::kInfo, "disk.template_made", "path={} bytes={}", path, bytes);
  return path;
}

Result<DiskMaker::Ready> DiskMaker::Make(uint64_t bytes, const std::string& image_path) {
  auto tmpl = Template(bytes);
  if (!tmpl) {
    return Fail(tmpl.error());
  }
  auto image = SparseCopy(*tmpl, image_path);
  if (!image) {
    ::unlink(image_path.c_str());
    return Fail(image.error());
  }
  // On disk before the loop device reads it with direct I/O: otherwise the sandbox's first
  // metadata reads wait for this copy's writeback (~6 ms on the create path).
  if (::fdatasync(image->Get()) != 0) {
    ::unlink(image_path.c_str());
    return Fail(ErrnoError(errno, "sync " + image_path));
  }
  UniqueFd loop;
  auto dev = AttachLoop(image->Get(), &loop);
  if (!dev) {
    ::unlink(image_path.c_str());
    return Fail(dev.error());
  }
  auto m = MountDetached(*dev);
  if (!m) {
    (void)::ioctl(loop.Get(), LOOP_CLR_FD, 0);
    ::unlink(image_path.c_str());
    return Fail(m.error());
  }
  // The first directory made in a fresh filesystem reads its group's bitmaps and inode table
  // through the loop device (a few ms under load): done here, where a ready disk is made in the
  // background, so the create path finds them cached.
  if (::mkdirat(m->Get(), "workspace", 0755) != 0 ||
      ::unlinkat(m->Get(), "workspace", AT_REMOVEDIR) != 0) {
    ::unlink(image_path.c_str());
    return Fail(ErrnoError(errno, "prepare the filesystem of " + image_path));
  }
  return Ready{image_path, std::move(*m)};
}

void DiskMaker::Refill() {
  const std::string dir = work_dir_ + "/ready." + std::to_string(::getpid()) + "." +
                          std::to_string(reinterpret_cast<uintptr_t>(this));
  uint64_t n = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (ready_.size() >= ready_count_) {
      cv_.wait(lock);
      continue;
    }
    lock.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    auto made = MakeDirs(dir).and_then(
        [&] { return Make(ready_bytes_, dir + "/" + std::to_string(n++) + ".img"); });
    lock.lock();
    if (made) {
      Log(LogLevel::kDebug, "disk.ready_made", "image={} ms={:.2f}", made->image,
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      ready_.push_back(std::move(*made));
      continue;
    }
    Log(LogLevel::kWarn, "disk.ready_failed", "bytes={} error=\"{}\"", ready_bytes_,
        made.error().message);
    cv_.wait_for(lock, std::chrono::seconds(10));  // and try again
  }
}

Result<void> DiskMaker::Provide(uint64_t bytes, const std::string& image_path,
                                const std::string& target, uint32_t uid, uint32_t gid) {
  const auto t0 = std::chrono::steady_clock::now();
  std::optional<Ready> disk;
  bool hit = false;
  if (bytes == ready_bytes_) {
    std::lock_guard<std::mutex> lock(mu_);
    // Disks are kept ready from the first one asked for on: a backend that makes none (docker
    // where nobody uses it) holds no loop devices.
    if (!refill_.joinable() && ready_count_ > 0 && !stop_) {
      refill_ = std::thread([this] { Refill(); });
    }
    if (!ready_.empty()) {
      disk.emplace(std::move(ready_.front()));
      ready_.pop_front();
      hit = true;
    }
  }
  if (disk) {
    cv_.notify_all();
    if (::rename(disk->image.c_str(), image_path.c_str()) != 0) {
      Log(LogLevel::kWarn, "disk.ready_lost", "image={} error=\"{}\"", disk->image,
          ErrnoError(errno, "rename").message);
      disk.reset();
    } else {
      disk->image = image_path;
    }
  }
  if (!disk) {
    auto made = Make(bytes, image_path);
    if (!made) {
      return Fail(made.error());
    }
    disk.emplace(std::move(*made));
  }
  if (::move_mount(disk->mount.Get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    return Fail(ErrnoError(errno, "mount the sandbox's disk on " + target));
  }
  if (::chown(target.c_str(), uid, gid) != 0) {
    return Fail(ErrnoError(errno, "chown " + target));
  }
  Log(LogLevel::kDebug, "disk.provided", "target={} bytes={} ready={} ms={:.2f}", target, bytes,
      hit,
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return {};
}

}  // namespace agentbox::disk
