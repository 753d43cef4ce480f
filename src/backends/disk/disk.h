#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::disk {

// A sandbox's disk: an ext4 filesystem in a sparse image file on a loop device, mounted where the
// sandbox keeps /workspace (and a writable root), so the kernel bounds what the sandbox can write
// (ENOSPC at the limit) and `df` inside shows the sandbox's own size. See README.md here.

// Empty when this process can make sandbox disks; otherwise why not (no root, no loop control
// device, no mkfs.ext4), in a sentence.
std::string WhyUnsupported();

struct Usage {
  uint64_t used_bytes = 0;  // blocks in use, as df counts them
  uint64_t size_bytes = 0;  // the filesystem's size
};
// kNotFound when `mount_point` is not the root of a filesystem other than its parent's (no disk
// there, or not mounted any more).
Result<Usage> UsageOf(const std::string& mount_point);

// Detaches the disk mounted on `mount_point` (nothing when none is); its loop device clears
// itself once the last user lets go.
Result<void> Unmount(const std::string& mount_point);

// Smallest and largest disk a sandbox may ask for.
inline constexpr uint64_t kMinDiskBytes = 16ull << 20;
inline constexpr uint64_t kMaxDiskBytes = 16ull << 40;

// Makes disks and keeps a few of the default size ready, like the warm pool keeps sandboxes: a
// ready disk is an image already copied from the template, on an attached loop device, with its
// filesystem mounted but not yet attached anywhere (a detached mount, fsmount(2)). Handing one
// out is then a rename and a move_mount(2): microseconds on the create path. Keeping disks
// ready starts with the first Provide of `ready_bytes` (which is made on the spot). Ready disks die
// with the process (the mount fd closes, the loop device clears itself), and their images are
// removed at the next start. Thread-safe.
class DiskMaker {
 public:
  // `work_dir` holds the templates (one sparse image per size) and the ready images; it must be
  // on the same filesystem as the sandboxes' images (they are renamed). `ready_bytes` = 0 or
  // `ready_count` = 0: nothing is kept ready.
  DiskMaker(std::string work_dir, uint64_t ready_bytes, size_t ready_count);
  ~DiskMaker();
  DiskMaker(const DiskMaker&) = delete;
  DiskMaker& operator=(const DiskMaker&) = delete;

  // Mounts a new, empty filesystem of `bytes` on `target` (an existing directory), its image at
  // `image_path`. The filesystem's root is owned by uid:gid, mode 0755; nosuid, nodev.
  Result<void> Provide(uint64_t bytes, const std::string& image_path, const std::string& target,
                       uint32_t uid, uint32_t gid);

  size_t ready() const;

 private:
  struct Ready {
    std::string image;
    UniqueFd mount;
  };
  Result<Ready> Make(uint64_t bytes, const std::string& image_path);
  Result<std::string> Template(uint64_t bytes);
  void Refill();

  const std::string work_dir_;
  const uint64_t ready_bytes_;
  const size_t ready_count_;
  std::mutex template_mu_;  // one mkfs per size at a time
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Ready> ready_;  // guarded by mu_
  bool stop_ = false;        // guarded by mu_
  std::thread refill_;
};

}  // namespace agentbox::disk
