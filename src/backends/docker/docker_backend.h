#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/root_changes.h"
#include "api/sandbox_backend.h"
#include "backends/disk/disk.h"
#include "backends/egress/egress_network.h"
#include "backends/docker/container_request.h"
#include "backends/docker/engine_client.h"
#include "backends/docker/host_dir.h"
#include "backends/docker/layer_disk.h"
#include "common/keyed_mutex.h"

namespace agentbox::docker {

using Clock = std::chrono::steady_clock;

struct DockerBackendOptions {
  // Where sandboxes' host directories live: <state_dir>/<id>/{meta.json, run/}. Created (0700)
  // if missing. Must be a path the engine sees as well (the same machine): run/ is bind-mounted.
  std::string state_dir;
  std::string socket_path = std::string(kDefaultSocket);   // the engine's unix socket
  std::string guest_binary;                                // host path of the static guest
  std::string default_image = "agentbox/base:latest";      // when spec.image is empty
  std::string runtime;                                     // HostConfig.Runtime; empty = default
  ResourceLimits default_limits = DefaultSandboxLimits();  // where a spec leaves a field unset
  // How long Create waits for the guest's health endpoint.
  std::chrono::milliseconds start_timeout{30000};
  // Bound of each engine call made by Probe.
  std::chrono::milliseconds probe_timeout{2000};
  // Disks of default_limits.disk_bytes kept ready (backends/disk); 0: made during Create.
  size_t ready_disks = 2;
  // Network "egress": address pool, resolvers and the default policy (backends/egress).
  egress::EgressOptions egress;
};

// Sandboxes as Docker containers, driven through the Engine API (v1.41) on its unix socket.
// Any image works: the static guest is bind-mounted read-only and is the container's
// entrypoint; it listens on a unix socket in a bind-mounted host directory, so the daemon
// reaches it at unix:<state_dir>/<id>/run/guest.sock even with network none.
//
// Nothing is kept in memory: a container is found by its name (agentbox-<id>) and labels, its
// mutable metadata in <state_dir>/<id>/meta.json, so a new DockerBackend over the same state
// directory (after a daemon restart) finds every sandbox again. The first List() also removes
// orphans (see CleanupOrphans). Thread-safe: operations on distinct ids run in parallel;
// operations on one id are serialised.
class DockerBackend final : public SandboxBackend, public RootChangeSource {
 public:
  explicit DockerBackend(DockerBackendOptions opts);

  std::string_view Name() const override { return "docker"; }
  // Guest binary present and static, engine reachable and speaking API 1.41 (GET /v1.41/_ping
  // within probe_timeout), default image present, configured runtime known to the engine.
  ProbeResult Probe() override;
  Capabilities GetCapabilities() const override;
  // `id`: 1-64 characters of [A-Za-z0-9_.-], not starting with '.'. kConflict if it exists.
  // The image must be present (kNotFound naming it otherwise: Create never pulls, Prepare does).
  Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) override;
  Result<SandboxInfo> Get(const std::string& id) override;
  Result<std::vector<SandboxInfo>> List() override;
  // Force-removes the container with its anonymous volumes, then the host directory.
  Result<void> Destroy(const std::string& id) override;
  Result<void> SetExpiry(const std::string& id, double expires_at) override;
  // Pulls spec.image (or the default image) when the engine does not have it, one progress
  // line per engine status line. kNotFound when no registry knows the image, kUnavailable when
  // none is reachable; both name the image.
  Result<void> Prepare(const SandboxSpec& spec, const ProgressFn& progress) override;
  // Restarts the container (SIGKILL to its processes, then the same entrypoint) and waits for
  // the new guest's health: the container's filesystem and its /workspace volume are kept;
  // sessions, processes and /tmp start empty.
  Result<SandboxInfo> RestartGuest(const std::string& id) override;
  // docker_root_changes.cc: GET /containers/{id}/changes.
  Result<RootChanges> ListRootChanges(const std::string& id, size_t limit) override;
  // GET /_ping within the probe timeout (docker_restart.cc): only whether the engine answers,
  // unlike Probe (which also wants the default image, so a missing image is not an outage).
  std::optional<std::string> EngineDown() override;
  // Containers of this state directory that the engine started since the last call and this
  // object did not (a restart policy after the guest died): GET /events for that window,
  // filtered to `start` of our containers (docker_restart.cc).
  std::vector<std::string> GuestsRestarted() override;
  // docker_metrics.cc: the engine's one-shot container stats (CPU over the engine's ~1 s window,
  // memory from its cgroup) and the sandbox's own disk (statvfs), else its writable layer.
  Result<SandboxMetrics> Metrics(const std::string& id) override;
  // Records owner, labels and expiry in meta.json. kConflict when the sandbox was claimed
  // already or is not running.
  Result<SandboxInfo> Claim(const std::string& id, const SandboxSpec& spec,
                            double expires_at) override;

  // Removes what crashes and lost state directories leave behind, and returns how many
  // sandboxes it removed:
  //  * any agentbox container (whatever its state directory) whose host directory is gone;
  //  * containers of this state directory that are dead, or were created but never started
  //    (a Create that crashed), or have exited and are past their expiry;
  //  * containers of this state directory whose destroy was interrupted (kDestroyingFile);
  //  * host directories of this state directory without a container.
  // Exited containers still within their TTL are kept: Get shows them stopped/failed with the
  // reason, and the daemon destroys them at expiry. Ids with an operation in flight are skipped.
  // Counts what it removed into `report` when given (see SandboxBackend::Recover).
  Result<int> CleanupOrphans(RecoveryReport* report = nullptr);
  // CleanupOrphans, which also finishes destroys that a crash interrupted (their directory holds
  // kDestroyingFile) and rolls back creates (a container never started, a directory without a
  // container).
  Result<RecoveryReport> Recover() override;

  const DockerBackendOptions& options() const { return opts_; }
  const EngineClient& engine() const { return engine_; }
  // <state_dir>/<id>
  std::string SandboxDir(const std::string& id) const;

 private:
  std::string ResolveImage(const SandboxSpec& spec) const;
  Result<SandboxInfo> CreateLocked(const std::string& id, const SandboxSpec& spec);
  // GET /containers/agentbox-<id>/json; kNotFound unless it is this state directory's.
  Result<Json> InspectOurs(const std::string& id) const;
  Result<SandboxInfo> InfoFromInspect(const Json& container) const;
  // GET /containers/json?all=1: every container, running or not, that carries all `labels`
  // ("key=value"). Always an array (empty if the engine's answer is not one).
  Result<Json> ListContainers(const std::vector<std::string>& labels) const;
  Result<void> RemoveContainer(const std::string& name_or_id) const;
  bool GuestAnswers(const SandboxInfo& info) const;
  static constexpr std::chrono::seconds kImageFreshness{30};
  Result<void> WaitForGuest(const std::string& id, const std::string& container_id,
                            const std::string& token, Clock::time_point deadline) const;
  std::string ContainerLogTail(const std::string& container_id) const;
  // docker_egress.cc. For network egress: checks it can be enforced and writes <dir>/resolv.conf
  // (its path, for the container's mounts; empty for other networks).
  Result<std::string> PrepareEgress(const SandboxSpec& spec, const std::string& dir) const;
  // Gives the started container's network namespace its link and rules; returns the link.
  Result<std::string> AttachEgress(const std::string& container_id, const EgressPolicy& policy);
  void DetachEgress(const std::string& link) const;
  // Removes links and rules of the pool that no sandbox directory names; returns how many.
  size_t SweepEgress();

  DockerBackendOptions opts_;
  EngineClient engine_;
  std::atomic<bool> cleaned_{false};
  // Sandbox disks (limits.disk_bytes); null when this process cannot make them (why_no_disk_).
  std::unique_ptr<disk::DiskMaker> disks_;
  std::string why_no_disk_;
  std::unique_ptr<egress::EgressNetwork> egress_;
  std::string why_no_egress_;
  // Whether the engine's writable layers can go on sandbox disks (layer_disk.h): its storage
  // driver is overlay2 and its data-root is visible here. Empty: yes; else why not. Asked
  // (GET /info) once the engine answers.
  std::string WhyNoLayerDisk();
  std::optional<std::string> why_no_layer_disk_;  // guarded by mu_
  // Where sandboxes go in the engine's cgroup tree (SandboxesCgroupFor), asked (GET /info) once
  // the engine answers; and the weight of that group, written after each start (best effort).
  SandboxesCgroup SandboxesCpuGroup();
  void WeighSandboxesCpuGroup(const SandboxesCgroup& g);
  std::optional<SandboxesCgroup> cpu_group_;  // guarded by mu_
  bool cpu_group_logged_ = false;              // guarded by mu_

  KeyedMutex id_locks_;  // held by every operation on one id
  mutable std::mutex mu_;
  // Sandboxes this object started without an owner (the warm pool's), as Create returned them:
  // Claim hands one out after a health check on its socket instead of an engine round trip.
  std::map<std::string, SandboxInfo> unclaimed_;  // guarded by mu_
  // Images found present, and when: Prepare skips the engine for kImageFreshness after that.
  std::map<std::string, Clock::time_point> images_present_;  // guarded by mu_

  // Starts this object made (Create, RestartGuest): [begin, end] in unix seconds, by sandbox
  // id, so that GuestsRestarted does not report them. Guarded by mu_.
  void OwnStart(const std::string& id, double begin, double end);
  std::map<std::string, std::pair<double, double>> own_starts_;
  // Unix seconds: where the next events window begins (at first, when this object was made).
  double events_since_;  // guarded by mu_
};

}  // namespace agentbox::docker
