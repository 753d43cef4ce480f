#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/root_changes.h"
#include "api/sandbox_backend.h"
#include "backends/disk/disk.h"
#include "backends/egress/egress_network.h"
#include "backends/jail/cgroup.h"
#include "backends/jail/sandbox_record.h"
#include "common/keyed_mutex.h"
#include "images/image_store.h"

namespace agentbox::jail {

struct JailBackendOptions {
  // Where sandboxes live: <state_dir>/<id>/{spec.json, jail.json, jail.log, workspace/, run/,
  // root/, rootfs/{upper,work}, image/} (workspace, rootfs and image on disk/ with a disk limit). Created (mode 0700) if missing. Must be on a local filesystem.
  std::string state_dir;
  std::string guest_binary;                                // host path of the static agentbox-guest
  std::string helper_binary;                               // host path of agentbox-jail
  ResourceLimits default_limits = DefaultSandboxLimits();  // where a spec leaves a field unset
  // Host ids when running as root: sandbox n gets its own range
  // [uid_base + n * 65536, uid_base + (n + 1) * 65536). The default sits above the ranges that
  // useradd (/etc/subuid, from 100000) and systemd-nspawn (up to 0x6FFFFFFF) hand out, so
  // sandbox ids collide with neither. Ignored when unprivileged (the caller's own id is used).
  uint32_t uid_base = 2'000'000'000;
  uint32_t max_slots = 4096;
  // See CgroupConfig::parent. Empty: under the daemon's own cgroup.
  std::string cgroup_parent;
  // How long Create waits for the guest's health endpoint.
  std::chrono::milliseconds start_timeout{10000};
  // Cap of <state_dir>/<id>/jail.log, where the guest's stdout and stderr go.
  uint64_t log_cap_bytes = 8ull << 20;
  // How long Destroy waits for the jail's processes to exit.
  std::chrono::milliseconds stop_timeout{10000};
  // Disks of default_limits.disk_bytes kept ready (made in the background, handed out in
  // microseconds): see backends/disk. 0: every disk is made during Create.
  size_t ready_disks = 2;
  // Where OCI images (docs/images.md) are unpacked: shared with the daemon's /metrics. Null: the
  // backend opens its own store in <state_dir>/.images bounded by image_cache_bytes.
  std::shared_ptr<images::ImageStore> images;
  uint64_t image_cache_bytes = 10ull << 30;
  // Network "egress": address pool, resolvers and the default policy (backends/egress).
  egress::EgressOptions egress;
};

// Sandboxes as Linux namespaces (see ARCHITECTURE.md). The sandbox's first process is the guest;
// the daemon reaches it at unix:<state_dir>/<id>/run/guest.sock.
//
// All state is on disk: Get and List read <state_dir>, so a new JailBackend over the same
// state directory (after a daemon restart) finds every running sandbox again. Each sandbox is
// supervised by its own agentbox-jail helper, which outlives the daemon; when the daemon started
// the helper, the daemon also reaps it (so the embedding process must not reap children with
// waitpid(-1)). Thread-safe: operations on distinct ids run in parallel; operations on one id
// are serialised.
class JailBackend final : public SandboxBackend, public RootChangeSource {
 public:
  explicit JailBackend(JailBackendOptions opts);

  std::string_view Name() const override { return "jail"; }
  // Runs `agentbox-jail probe` (a throw-away namespace set) to learn what the kernel allows.
  ProbeResult Probe() override;
  Capabilities GetCapabilities() const override;
  // `id`: 1-64 characters of [A-Za-z0-9_.-], not starting with '.'. kConflict if it exists.
  // spec.image (docs/images.md): empty (host system directories, read-only), an absolute
  // directory, an absolute path of a tarball (extracted onto the sandbox's disk), or an OCI
  // image: a local Docker engine image, an OCI layout directory or an image archive, whose
  // unpacked layers (the image store's cache) are used in place and whose Env and WorkingDir
  // apply. Every form becomes the lower directories of a writable overlay root whose upper
  // directory is on the sandbox's disk (rootfs.h). An unknown image is kNotFound; a corrupt one
  // kInvalidArgument.
  // spec.read_only_root: the root's mount is read-only (EROFS outside /workspace, /tmp, /dev/shm,
  // /run/agentbox), with or without an image.
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override;
  Result<SandboxInfo> Get(const std::string& id) override;
  Result<std::vector<SandboxInfo>> List() override;
  Result<void> Destroy(const std::string& id) override;
  Result<void> SetExpiry(const std::string& id, double expires_at) override;
  // Unpacks an OCI image's missing layers (nothing to do for the other image forms).
  Result<void> Prepare(const SandboxSpec& spec, const ProgressFn& progress) override;
  // Kills every process of the sandbox (SIGKILL to the init, then the old helper exits) and
  // starts a new jail over the same directory, the same uid range and token: /workspace and an
  // image's root changes (the overlay's upper directory) are kept; /tmp, sessions and processes
  // start empty.
  Result<SandboxInfo> RestartGuest(const std::string& id) override;
  // jail_root_changes.cc: the overlay root's upper directory, walked from the host.
  Result<RootChanges> ListRootChanges(const std::string& id, size_t limit) override;
  // Rewrites the sandbox's record (atomically: temporary file + rename) with spec.owner,
  // spec.labels and expires_at. kUnavailable if the sandbox's processes have exited.
  Result<SandboxInfo> Claim(const std::string& id, const SandboxSpec& spec,
                            double expires_at) override;
  // jail_recovery.cc. A directory without spec.json is a create that never finished: rolled
  // back; one with destroying.json is a destroy that never finished: finished. Helpers started
  // for a directory that has no spec.json, id slots of such ids and their cgroups and mounts go
  // with them. Each id is held while it is looked at, so creates in flight are left alone.
  Result<RecoveryReport> Recover() override;

  // jail_metrics.cc: CPU from the sandbox's cgroup over 250 ms (v2 cpu.stat, v1 cpuacct.usage,
  // else the CPU times of the group's processes), memory from its memory cgroup, disk from its
  // own filesystem (statvfs) or, without one, the filesystem holding its directory.
  Result<SandboxMetrics> Metrics(const std::string& id) override;

  const JailBackendOptions& options() const { return opts_; }
  images::ImageStore* image_store() const { return images_.get(); }
  // <state_dir>/<id>
  std::string SandboxDir(const std::string& id) const;

 private:
  Result<SandboxInfo> CreateLocked(const std::string& id, const SandboxSpec& spec);
  Result<void> DestroyLocked(const std::string& id);
  // Kills, unmounts and removes everything of `id` that exists: its helper processes (found by
  // their command line when `rec` is null), cgroups, mounts, directory and id slots. Counts what
  // it removed into `report` when given. The caller holds the id.
  Result<void> RemoveEverything(const std::string& id, const SandboxRecord* rec,
                                std::chrono::steady_clock::time_point deadline,
                                RecoveryReport* report);
  SandboxInfo InfoFromRecord(const SandboxRecord& r) const;
  // The record in <state_dir>/<id>/spec.json; kNotFound "no sandbox '<id>'" when there is none
  // or `id` is not a valid sandbox id.
  Result<SandboxRecord> LoadRecord(const std::string& id) const;
  // Cgroup directories a jail named `id` would have, for cleaning up after a create that died
  // before it recorded them.
  std::vector<std::string> GuessCgroups(const std::string& id) const;
  // Removes every id slot that names `id`; returns how many.
  int ReleaseSlotsOf(const std::string& id);
  Result<int64_t> AllocateSlot(const std::string& id);
  // jail_egress.cc. For network egress: checks the policy can be enforced here and writes
  // <dir>/resolv.conf, whose path goes to the jail's mounts (empty for other networks).
  Result<std::string> PrepareEgress(const SandboxSpec& spec, const std::string& dir) const;
  // Gives the jail whose init is `init_pid` its link and rules; sets rec.egress_link.
  Result<void> AttachEgress(SandboxRecord& rec, pid_t init_pid);
  void DetachEgress(const std::string& link);
  // Removes links and rules of the pool that no record names; returns how many.
  size_t SweepEgress();
  void ReleaseSlot(int64_t slot, const std::string& id);

  JailBackendOptions opts_;
  bool privileged_ = false;
  // Which cgroup limits this process can enforce (writable controller found at construction).
  bool memory_limit_ok_ = false;
  bool pids_limit_ok_ = false;
  bool cpu_limit_ok_ = false;
  // Sandbox disks (limits.disk_bytes); null when this process cannot make them (why_no_disk_).
  std::unique_ptr<disk::DiskMaker> disks_;
  std::string why_no_disk_;
  // OCI images; null when the store could not be opened (why_no_images_).
  std::shared_ptr<images::ImageStore> images_;
  std::string why_no_images_;
  std::unique_ptr<egress::EgressNetwork> egress_;
  std::string why_no_egress_;

  KeyedMutex id_locks_;  // held by every operation on one id

  std::mutex slot_mu_;
  int64_t slot_hint_ = 0;  // guarded by slot_mu_
};

}  // namespace agentbox::jail
