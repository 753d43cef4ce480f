#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/egress_policy.h"
#include "common/error.h"
#include "common/json_util.h"

namespace agentbox {

// Resource limits of one sandbox. Unset fields take the backend's defaults.
struct ResourceLimits {
  std::optional<uint64_t> memory_bytes;
  std::optional<double> cpus;               // CPU time share, e.g. 0.5 = half a core
  std::optional<uint32_t> pids;             // processes + threads
  std::optional<uint64_t> tmp_bytes;        // size of the sandbox's /tmp
  std::optional<uint32_t> open_files;       // RLIMIT_NOFILE
  std::optional<uint64_t> file_size_bytes;  // RLIMIT_FSIZE
  // What the sandbox may write to /workspace and its writable root together (the kernel answers
  // ENOSPC past it); jail and docker: its own filesystem of this size (backends/disk).
  std::optional<uint64_t> disk_bytes;

  friend bool operator==(const ResourceLimits&, const ResourceLimits&) = default;
};

// The limits the jail and docker backends apply where a spec leaves a field unset (unless
// configured otherwise): 1 GiB of memory, 1024 pids, a 256 MiB /tmp, 4096 open files, a 10 GiB
// disk; no CPU or file size cap.
ResourceLimits DefaultSandboxLimits();

// `spec` with every unset field taken from `defaults` (a backend's configured limits).
ResourceLimits MergeLimits(const ResourceLimits& spec, const ResourceLimits& defaults);

// The one JSON shape of ResourceLimits that backends store (records, labels, pool keys): every
// field by name, null when unset. LimitsFromJson treats a missing field or a non-object as unset
// and throws Json::exception for a field of the wrong type.
Json LimitsToJson(const ResourceLimits& l);
ResourceLimits LimitsFromJson(const Json& j);

enum class NetworkMode {
  kNone,    // loopback only (default)
  kHost,    // share the host's network: trusted use only
  kEgress,  // a network of its own with outbound traffic under an EgressPolicy (docs/network.md)
};
// "none", "host", "egress"; NetworkModeFromName is nullopt for anything else.
const char* NetworkModeName(NetworkMode m);
std::optional<NetworkMode> NetworkModeFromName(std::string_view name);

// What a client asks for when creating a sandbox.
struct SandboxSpec {
  // jail: empty = the host's system directories read-only; otherwise a directory or a tarball
  // used as the root filesystem, or an OCI image (a local Docker engine image, an OCI layout or
  // a docker save / OCI archive: docs/images.md): the lower layers of the sandbox's writable
  // copy-on-write root. docker: an image reference.
  std::string image;
  std::map<std::string, std::string> env;
  ResourceLimits limits;
  NetworkMode network = NetworkMode::kNone;
  // docker: attach to this named network instead of none/host. Backends without named networks
  // reject a non-empty value with kInvalidArgument.
  std::string network_name;
  // network kEgress: what the sandbox may reach; unset = the backend's configured default.
  std::optional<EgressPolicy> egress;
  // Root filesystem read-only: writes outside /workspace, /tmp, /dev/shm and /run/agentbox fail
  // with EROFS. Backends that cannot (Capabilities::read_only_root false) refuse it.
  bool read_only_root = false;
  std::map<std::string, std::string> labels;
  std::string owner;  // identity of the API key that created it (never the key itself)
  int64_t ttl_s = 3600;
  // How the backend runs the sandbox, where it has a choice (create field `cloudrun_mode`):
  // cloudrun "job" (one execution per command) or "session" (one long execution whose guest
  // dials back). Empty: the backend's configured default. Backends without modes ignore it.
  std::string run_mode;
  // The sandbox must get exactly the id passed to Create (a migration keeps its id): a warm pool
  // creates it instead of handing out one of its pooled sandboxes.
  bool exact_id = false;
};

// A sandbox id every backend accepts (it names directories and containers): 1-64 characters of
// [A-Za-z0-9_.-], not starting with '.'.
bool ValidSandboxId(const std::string& id);
// What every backend's Create checks first: the id, and environment variable names (non-empty,
// no '=') and values without NUL bytes. kInvalidArgument saying which.
Result<void> ValidateCreate(const std::string& id, const SandboxSpec& spec);

// kUnresponsive: running, but its guest did not answer a call within the call's deadline (the
// daemon's view; backends report kRunning). Back to kRunning once the guest answers again.
// kUnreachable: what runs the sandbox (the Docker engine) is not answering, so nothing about
// the sandbox can be known or done (the daemon's view); back to kRunning by itself once the
// engine and the guest answer again (daemon/backend_watch.h).
enum class SandboxState { kCreating, kRunning, kStopped, kFailed, kUnresponsive, kUnreachable };
const char* SandboxStateName(SandboxState s);

struct SandboxInfo {
  std::string id;
  std::string backend;
  SandboxState state = SandboxState::kCreating;
  SandboxSpec spec;
  double created_at = 0;  // unix seconds
  double expires_at = 0;  // unix seconds; the daemon destroys the sandbox after this
  // Where the sandbox's guest API listens, e.g. "unix:/var/lib/agentbox/sb/ID/guest.sock".
  std::string guest_endpoint;
  std::string guest_token;  // X-Access-Token for the guest (never shown to clients)
  std::string detail;       // human-readable state detail (e.g. why it failed)
  // Bytes in use on the sandbox's own disk (limits.disk_bytes); unset when it has none.
  std::optional<uint64_t> disk_used_bytes;
};

// One reading of what a sandbox uses (GET /v1/sandboxes/{id}/metrics, E2B's getMetrics).
struct SandboxMetrics {
  double timestamp = 0;     // unix seconds, when the reading ended
  double cpu_count = 0;     // cores the sandbox may use (its CPU limit, else the host's)
  double cpu_used_pct = 0;  // CPU time used over the reading's window, % of cpu_count cores
  double window_s = 0;      // how long that window was
  uint64_t mem_used_bytes = 0;   // memory in use, without reclaimable file cache
  uint64_t mem_cache_bytes = 0;  // file (page) cache charged to the sandbox
  uint64_t mem_total_bytes = 0;  // its memory limit, else the host's memory
  uint64_t disk_used_bytes = 0;
  uint64_t disk_total_bytes = 0;
  // Where the disk figures come from: "sandbox_disk" (the sandbox's own filesystem),
  // "writable_layer" (docker without one: the container's writable layer, against the size of
  // the engine's filesystem) or "host_filesystem" (jail without one: the filesystem holding its
  // directory, shared with the host).
  std::string disk_source;
};

// kNotFound "no sandbox '<id>'": what every backend answers for an id it does not hold.
Error SandboxNotFound(const std::string& id);

// The order of List(): oldest first, ties broken by id.
bool CreatedBefore(const SandboxInfo& a, const SandboxInfo& b);

// What a backend can do; the conformance suite skips nothing: a backend that lacks a capability
// must say so here and answer the corresponding calls with a clear error.
struct Capabilities {
  bool background_processes = true;
  bool stdin = true;
  bool pty = true;
  bool streaming = true;
  bool persistent_sessions = true;
  bool custom_image = true;
  bool claim = false;  // implements Claim(): the warm pool can hand out pre-started sandboxes
  // Sandboxes live outside this daemon (cloudrun: records in a bucket), so other daemons may
  // create and destroy them: the daemon looks up ids it does not know and lists them live.
  bool shared_state = false;
  // The guest is a long-lived process inside the sandbox (it could be traced, frozen, restarted:
  // restart-guest). False for cloudrun job mode, whose guest API is served by the daemon.
  bool guest_process = true;
  // How long a command may wait to start before it runs (cloudrun job mode: an execution's start,
  // 10-60 s on the real service). The daemon adds it to the deadline of calls that wait for a
  // whole command (shell/run), so a slow start is not taken for a stuck guest.
  double command_start_allowance_s = 0;
  // What limits.disk_bytes bounds on this backend, as it is configured right now:
  //  "workspace_and_root": the kernel bounds /workspace and the writable root together;
  //  "workspace": the kernel bounds /workspace only, the writable root is not bounded;
  //  "daemon_writes": only writes that pass through the daemon (uploads, file writes) are checked;
  //  "none": nothing is bounded (a create that asks for disk_bytes is refused).
  std::string disk_limit = "none";
  std::string disk_limit_note;  // one sentence: why not "workspace_and_root"; empty when it is
  // Whether SandboxSpec::read_only_root is honoured (writes outside /workspace, /tmp, /dev/shm and
  // /run/agentbox fail with EROFS). A backend that cannot refuses it at create (kInvalidArgument).
  bool read_only_root = false;
  // What a sandbox's writable root filesystem (its image's files) is:
  //  "sandbox": private to the sandbox, copy-on-write over the image, kept across restart-guest;
  //  "execution": private, but lost when the guest's execution is replaced (cloudrun session);
  //  "command": every command starts from the image again (cloudrun job mode);
  //  "": not declared (e.g. test backends whose guests run on the host).
  std::string root_filesystem;
  // Implements Metrics() (cloudrun does not: its sandboxes run on machines the daemon cannot see).
  bool metrics = false;
};

// What a backend tells the daemon about guests it replaces on its own (cloudrun session mode
// replaces a lost execution). Set once by the daemon before any sandbox is created; callbacks
// come from the backend's own threads and may block briefly.
struct GuestEvents {
  // The guest of sandbox `id` is gone and a new one is being started; `detail` says why (the
  // daemon shows the sandbox unreachable with it and fails calls fast meanwhile).
  std::function<void(const std::string& id, const std::string& detail)> lost;
  // The new guest answers at info.guest_endpoint (the daemon restores its sessions); `why` is
  // told to the sessions ("the Cloud Run execution ... ended: ...").
  std::function<void(const SandboxInfo& info, const std::string& why)> replaced;
  // Starting a new guest failed for good: the sandbox is `info` (failed, with the reason).
  std::function<void(const SandboxInfo& info)> failed;
};

// Progress of preparing a sandbox's image (e.g. pulling it), one human-readable line at a time.
using ProgressFn = std::function<void(std::string_view line)>;

// Whether the backend is usable right now, and if not, why (one sentence).
struct ProbeResult {
  bool usable = false;
  std::string reason;                    // one sentence; empty when fully usable
  std::vector<std::string> limitations;  // what works only partially (e.g. no cgroup limits)
};

// What a start-up sweep repaired, by kind: "create_rolled_back" and "destroy_finished" count
// sandboxes; "process", "cgroup", "mount", "id_slot", "directory", "container" count the
// leftovers removed (whether or not they belonged to one of those sandboxes).
using RecoveryReport = std::map<std::string, int>;

// One backend: a way to run sandboxes. Implementations are listed in the selector's table.
// Thread-safety: every method may be called from any thread concurrently.
class SandboxBackend {
 public:
  virtual ~SandboxBackend() = default;

  virtual std::string_view Name() const = 0;
  // Cheap, side-effect free check of the kernel/engine/cloud this backend needs.
  virtual ProbeResult Probe() = 0;
  virtual Capabilities GetCapabilities() const = 0;

  // Creates and starts sandbox `id` (chosen by the caller, unique). On success the guest answers
  // at the returned guest_endpoint. On failure nothing of the sandbox is left behind.
  virtual Result<SandboxInfo> Create(const std::string& id, const SandboxSpec& spec) = 0;
  // kNotFound for an unknown id.
  virtual Result<SandboxInfo> Get(const std::string& id) = 0;
  // Every sandbox this backend holds, including ones found again after a daemon restart.
  virtual Result<std::vector<SandboxInfo>> List() = 0;
  // Kills every process of the sandbox and removes all it used (cgroups, mounts, state).
  // Destroying an unknown id is kNotFound; destroying twice is not an error the second time's
  // caller can rely on.
  virtual Result<void> Destroy(const std::string& id) = 0;
  // Records a new expiry (unix seconds) so that it survives a daemon restart.
  virtual Result<void> SetExpiry(const std::string& id, double expires_at) = 0;

  // Makes sure `spec` can be created without further downloads (docker pulls a missing image),
  // reporting progress. kNotFound names an image that cannot be found anywhere. Default: nothing
  // to prepare.
  virtual Result<void> Prepare(const SandboxSpec& spec, const ProgressFn& progress) {
    (void)spec;
    (void)progress;
    return {};
  }

  // Replaces the sandbox's guest (a stuck, stopped or crashed one) with a fresh one: every
  // process of the sandbox is killed and the guest started again over the same filesystem, so
  // /workspace (and files the sandbox wrote elsewhere that the backend keeps) survive while
  // sessions, background processes and /tmp start empty. Same id, endpoint and token; returns
  // the info of the running sandbox. Default: kInvalidArgument saying this backend cannot.
  virtual Result<SandboxInfo> RestartGuest(const std::string& id) {
    return Fail(ErrorCode::kInvalidArgument, std::string(Name()) +
                                                 " cannot restart the guest of sandbox '" + id +
                                                 "' in place; DELETE it and create a new one");
  }

  // Whether the engine this backend's sandboxes live in (the Docker engine) is NOT answering:
  // the one-sentence reason ("The Docker engine at ... is not answering: ..."), or nothing. One
  // cheap round trip at most; the daemon asks every 2 s while the backend holds sandboxes, shows
  // them unreachable while it is down, and brings them back (RestartGuest where they stopped)
  // when it answers again. Default: nothing (no engine that can go away).
  virtual std::optional<std::string> EngineDown() { return std::nullopt; }

  // Where the daemon's callbacks about replaced guests go (GuestEvents). Default: ignored (the
  // backend never replaces a guest on its own).
  virtual void SetGuestEvents(GuestEvents events) { (void)events; }

  // Durable copies of the daemon's session snapshots (daemon/session_keeper.h), for backends
  // whose guests can be lost with the machine they run on (cloudrun session mode keeps them in
  // the bucket). KeepSessionState stores `kept` (an opaque JSON object) for `session` of sandbox
  // `id`, asynchronously, and must not block; a null `kept` removes it. KeptSessionStates returns
  // every kept session of the sandbox by session id (an empty object when there are none).
  // Default: nothing is kept.
  virtual void KeepSessionState(const std::string& id, const std::string& session,
                                const Json& kept) {
    (void)id;
    (void)session;
    (void)kept;
  }
  virtual Result<Json> KeptSessionStates(const std::string& id) {
    (void)id;
    return Json::object();
  }

  // Sandboxes whose guest the engine started again on its own since the last call (the guest
  // died and a restart policy brought the container back), by id; starts the backend made itself
  // (Create, RestartGuest) are not reported. One cheap round trip at most; the daemon asks every
  // 2 s while the engine answers and the backend holds sandboxes, and restores the sessions of
  // each into the new guest. Default: none (nothing restarts guests behind the daemon's back).
  virtual std::vector<std::string> GuestsRestarted() { return {}; }

  // Hands a running sandbox that was started for the warm pool (empty owner) to its real owner:
  // records spec.owner, spec.labels and expires_at durably (they survive a daemon restart) and
  // returns the updated info. Only the owner, labels and expiry of `spec` are used; the caller
  // has already matched the rest. Backends that cannot do this leave Capabilities::claim false.
  virtual Result<SandboxInfo> Claim(const std::string& id, const SandboxSpec& spec,
                                    double expires_at) {
    (void)spec;
    (void)expires_at;
    return Fail(ErrorCode::kInvalidArgument,
                std::string(Name()) + " cannot hand out pre-started sandboxes (" + id + ")");
  }

  // What sandbox `id` uses right now: CPU over a short window (the call blocks for it, a second
  // at most), memory and disk. kNotFound for an unknown id, kUnavailable when the sandbox is not
  // running. Default: kInvalidArgument saying this backend reports no metrics
  // (Capabilities::metrics false).
  virtual Result<SandboxMetrics> Metrics(const std::string& id) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string(Name()) + " does not report metrics for its sandboxes ('" + id + "')");
  }

  // The start-up sweep (docs/reliability.md). The daemon calls it once when it starts, before
  // its first List. It finishes or rolls back what operations interrupted by a crash of an
  // earlier daemon left half done (a create is rolled back, a destroy is finished), and removes
  // what belongs to no sandbox of this backend's state (processes, cgroups, mounts, id slots,
  // containers, directories). Afterwards each sandbox is either complete and listed or entirely
  // gone. Operations this process has in flight (a warm pool's refill) are never touched.
  // Returns what it repaired, counted by kind (RecoveryReport). Default: nothing to repair.
  virtual Result<RecoveryReport> Recover() { return RecoveryReport{}; }
};

using SandboxBackendPtr = std::unique_ptr<SandboxBackend>;

}  // namespace agentbox
