#include "fuse_mount.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include "common/fs_util.h"
#include "common/log.h"

namespace agentbox::gcpemu {
namespace {

bool OnPath(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::string p = path != nullptr ? path : "/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= p.size()) {
    size_t colon = p.find(':', pos);
    if (colon == std::string::npos) {
      colon = p.size();
    }
    if (::access((p.substr(pos, colon - pos) + "/" + tool).c_str(), X_OK) == 0) {
      return true;
    }
    pos = colon + 1;
  }
  return false;
}

bool Mounted(const std::string& mountpoint) {
  auto mounts = ReadSmallFile("/proc/self/mounts", 16 << 20);
  return mounts && mounts->find(" " + mountpoint + " fuse") != std::string::npos;
}

// fork + execvp; the child only calls async-signal-safe functions before exec.
pid_t Spawn(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

std::string Octal(mode_t m) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0%o", static_cast<unsigned>(m));
  return buf;
}

}  // namespace

Result<void> FuseAvailable() {
  if (!OnPath("rclone") || !OnPath("fusermount3")) {
    return Fail(ErrorCode::kUnavailable,
                "--volumes fuse needs rclone and fusermount3 (Debian packages rclone, fuse3)");
  }
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    return Fail(ErrorCode::kUnavailable, "--volumes fuse needs /dev/fuse");
  }
  return {};
}

Result<std::unique_ptr<FuseMount>> FuseMount::Mount(const std::string& storage_url,
                                                    const VolumeMount& vm,
                                                    const std::string& mountpoint,
                                                    const std::string& cache_dir,
                                                    const std::string& log_file) {
  if (auto r = EnsureDir(mountpoint, 0755); !r) {
    return Fail(r.error());
  }
  std::string remote = ":gcs:" + vm.bucket;
  if (!vm.only_dir.empty()) {
    remote += "/" + vm.only_dir;
  }
  // gcsfuse's defaults: files 0644, directories 0755, unless the volume's options say otherwise.
  std::vector<std::string> args = {
      "rclone",
      "mount",
      remote,
      mountpoint,
      "--config",
      "/dev/null",
      "--gcs-endpoint",
      storage_url + "/storage/v1/",
      "--gcs-token",
      R"({"access_token":"emulator-fuse","token_type":"Bearer","expiry":"2100-01-01T00:00:00Z"})",
      "--gcs-bucket-policy-only",
      "--allow-other",
      "--vfs-cache-mode",
      "writes",
      "--vfs-write-back",
      "0s",
      "--dir-cache-time",
      "1s",
      "--cache-dir",
      cache_dir,
      "--file-perms",
      Octal(vm.file_mode.value_or(0644)),
      "--dir-perms",
      Octal(vm.dir_mode.value_or(0755)),
      "--log-file",
      log_file};
  if (vm.read_only) {
    args.push_back("--read-only");
  }
  if (vm.uid) {
    args.insert(args.end(), {"--uid", std::to_string(*vm.uid)});
  }
  if (vm.gid) {
    args.insert(args.end(), {"--gid", std::to_string(*vm.gid)});
  }
  const pid_t pid = Spawn(args);
  if (pid < 0) {
    return Fail(ErrnoError(errno, "fork rclone"));
  }
  std::unique_ptr<FuseMount> m(new FuseMount(pid, mountpoint));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!Mounted(mountpoint)) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      m->pid_ = -1;
      auto log = ReadSmallFile(log_file, 4096);
      return Fail(ErrorCode::kUnavailable,
                  "rclone mount of " + remote + " exited: " + (log ? *log : std::string("")));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Fail(ErrorCode::kUnavailable, "rclone mount of " + remote + " did not appear in 15 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return m;
}

FuseMount::~FuseMount() {
  if (pid_ <= 0) {
    return;
  }
  // Unmounting ends rclone's serve loop; it then finishes the uploads of files written (and
  // closed) in the mount before it exits.
  const pid_t um = Spawn({"fusermount3", "-u", mountpoint_});
  if (um > 0) {
    ::waitpid(um, nullptr, 0);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (::waitpid(pid_, nullptr, WNOHANG) != pid_) {
    if (std::chrono::steady_clock::now() > deadline) {
      Log(LogLevel::kWarn, "gcpemu.fuse_kill", "mountpoint={}", mountpoint_);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (Mounted(mountpoint_)) {
    const pid_t lazy = Spawn({"fusermount3", "-u", "-z", mountpoint_});
    if (lazy > 0) {
      ::waitpid(lazy, nullptr, 0);
    }
  }
  ::rmdir(mountpoint_.c_str());
}

}  // namespace agentbox::gcpemu
