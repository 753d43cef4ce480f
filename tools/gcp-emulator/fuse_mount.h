#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/error.h"
#include "executor.h"

// The "honest" volume mode (--volumes fuse): a Cloud Storage volume is an rclone FUSE mount of
// the bucket through the emulator's own Storage JSON API, bind-mounted into the container, so
// that the container sees object-store semantics (uploads on close, no hard links, no locks,
// non-atomic directory renames) as with Cloud Run's gcsfuse, instead of a POSIX directory.
namespace agentbox::gcpemu {

// Whether `rclone` and `fusermount3` are on PATH and /dev/fuse exists; the reason otherwise.
Result<void> FuseAvailable();

// One rclone mount process. Mount() returns once the mount is visible; the destructor unmounts
// (fusermount3 -u), waits for rclone to finish its uploads and exit, and kills it after 60 s.
class FuseMount {
 public:
  // `storage_url` is the emulator's base URL ("http://127.0.0.1:PORT"); `vm` says which bucket
  // and directory, read-only or not, and the file/dir modes and owner to show.
  static Result<std::unique_ptr<FuseMount>> Mount(const std::string& storage_url,
                                                  const VolumeMount& vm,
                                                  const std::string& mountpoint,
                                                  const std::string& cache_dir,
                                                  const std::string& log_file);
  ~FuseMount();
  FuseMount(const FuseMount&) = delete;
  FuseMount& operator=(const FuseMount&) = delete;

  const std::string& path() const { return mountpoint_; }

 private:
  FuseMount(pid_t pid, std::string mountpoint) : pid_(pid), mountpoint_(std::move(mountpoint)) {}
  pid_t pid_;
  std::string mountpoint_;
};

}  // namespace agentbox::gcpemu
