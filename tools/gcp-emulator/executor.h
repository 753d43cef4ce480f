#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backends/docker/engine_client.h"
#include "common/error.h"

// Runs one attempt of one Cloud Run task as a container on the local Docker engine.
namespace agentbox::gcpemu {

struct VolumeMount {
  std::string source;    // host directory (a bucket's directory or its only-dir= subdirectory)
  std::string bucket;    // for FUSE mounts (--volumes fuse)
  std::string only_dir;  // the only-dir= option, or empty
  std::string target;    // mountPath in the container
  bool read_only = false;
  // gcsfuse's file-mode=, dir-mode=, uid=, gid= options, applied to the tree before the start
  // (a bind mount cannot remap modes): file-mode=555 makes a binary in a read-only volume
  // executable, as on Cloud Run.
  std::optional<mode_t> file_mode;
  std::optional<mode_t> dir_mode;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
};

struct TaskSpec {
  std::string image;
  std::vector<std::string> command;  // replaces the image's ENTRYPOINT (and CMD) when set
  std::vector<std::string> args;     // replaces the image's CMD when set
  std::vector<std::pair<std::string, std::string>> env;
  std::string working_dir;
  int64_t memory_bytes = 0;
  int64_t nano_cpus = 0;
  std::vector<VolumeMount> mounts;
  std::vector<std::string> tmpfs;  // emptyDir volumes' mount paths
  std::chrono::seconds timeout{600};
  std::string container_name;
  std::map<std::string, std::string> labels;
  std::string log_path;  // where the container's output is saved (empty: not saved)
  // --volumes fuse: the emulator's base URL; GCS volumes are then rclone FUSE mounts (made
  // under fuse_dir) instead of bind mounts of the bucket's directory.
  std::string fuse_storage_url;
  std::string fuse_dir;
};

struct AttemptResult {
  bool started = false;
  int exit_code = 0;
  int term_signal = 0;
  bool timed_out = false;
  bool cancelled = false;
  int rpc_code = 0;  // google.rpc.Code for lastAttemptResult.status (0 = OK)
  std::string message;
};

// Lets another thread stop an attempt: Cancel() kills the container if it runs, or keeps it
// from starting. Thread-safe.
class CancelToken {
 public:
  void Cancel(const docker::EngineClient& engine);
  bool cancelled() const;
  // Called by the executor: false when already cancelled (then nothing may start).
  bool SetContainer(const std::string& id);
  void ClearContainer();

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::string container_;
};

class Executor {
 public:
  explicit Executor(std::string docker_socket) : engine_(std::move(docker_socket)) {}

  // The image is present locally or can be pulled. kNotFound names the image otherwise.
  Result<void> EnsureImage(const std::string& image);
  // Creates, starts and waits for the container, enforcing the timeout; always removes it.
  AttemptResult Run(const TaskSpec& spec, CancelToken& cancel);
  // Removes leftover containers carrying `label`=`value` (an emulator that stopped mid-run).
  void RemoveLabelled(const std::string& label, const std::string& value);

  const docker::EngineClient& engine() const { return engine_; }

 private:
  docker::EngineClient engine_;
};

// Applies the gcsfuse-style ownership and mode options of a mount to its tree.
void ApplyMountModes(const VolumeMount& m);

// Kubernetes quantities as Cloud Run takes them: memory "512Mi", "1Gi", "2G", "1000000";
// cpu "1", "2", "0.5", "1000m". nullopt when malformed.
std::optional<int64_t> ParseMemory(const std::string& q);
std::optional<int64_t> ParseNanoCpus(const std::string& q);

}  // namespace agentbox::gcpemu
