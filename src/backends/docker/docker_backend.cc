#include "backends/docker/docker_backend.h"

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "backends/docker/sandbox_disk.h"
#include "common/crash_point.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "common/unique_fd.h"

namespace agentbox::docker {
namespace {

using std::chrono::milliseconds;

int PollMs(Clock::time_point deadline, milliseconds cap) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp(left, milliseconds(0), cap).count());
}

// The sandbox state and a sentence for a container's State object.
std::pair<SandboxState, std::string> StateOf(const Json& state) {
  const std::string status = ValueOr(state, "Status", "");
  const int64_t code = ValueOr(state, "ExitCode", int64_t{0});
  const bool oom = ValueOr(state, "OOMKilled", false);
  const std::string error = ValueOr(state, "Error", "");
  if (status == "running" || status == "restarting") {
    return {SandboxState::kRunning, ""};
  }
  if (status == "created") {
    return {SandboxState::kCreating, "the container was created but has not started"};
  }
  if (status == "paused") {
    return {SandboxState::kStopped, "the container is paused"};
  }
  if (status == "dead") {
    return {SandboxState::kFailed,
            "the container is dead" + (error.empty() ? std::string() : ": " + error)};
  }
  std::string detail = "the container exited with code " + std::to_string(code);
  if (oom) {
    detail += " (killed: out of memory)";
  }
  if (!error.empty()) {
    detail += ": " + error;
  }
  if (!ValueOr(state, "FinishedAt", "").empty()) {
    detail += " at " + ValueOr(state, "FinishedAt", "");
  }
  const bool failed = code != 0 || oom || !error.empty();
  return {failed ? SandboxState::kFailed : SandboxState::kStopped, detail};
}

// One GET /api/v1/health on a connected socket: true when the guest answers 200.
Result<bool> HealthOnSocket(int fd, const std::string& token, Clock::time_point deadline) {
  const std::string req = "GET /api/v1/health HTTP/1.1\r\nHost: guest\r\nX-Access-Token: " + token +
                          "\r\nConnection: close\r\n\r\n";
  size_t off = 0;
  while (off < req.size()) {
    struct pollfd p = {fd, POLLOUT, 0};
    if (::poll(&p, 1, PollMs(deadline, milliseconds(1000))) <= 0 && Clock::now() >= deadline) {
      return Fail(ErrorCode::kTimeout, "the guest did not take its health request in time");
    }
    const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError(errno, "send health request"));
    }
    off += static_cast<size_t>(n);
  }
  std::string head;
  char buf[512];
  while (head.find("\r\n") == std::string::npos) {
    struct pollfd p = {fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, PollMs(deadline, milliseconds(1000)));
    if (ready <= 0) {
      if (Clock::now() >= deadline) {
        return Fail(ErrorCode::kTimeout, "the guest did not answer its health check in time");
      }
      continue;
    }
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    head.append(buf, static_cast<size_t>(n));
  }
  return head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200");
}

// Splits the engine's multiplexed log stream (8-byte frame headers) into plain text.
std::string Demux(const std::string& raw) {
  std::string out;
  size_t i = 0;
  while (i + 8 <= raw.size()) {
    const auto b = [&](size_t k) {
      return static_cast<uint32_t>(static_cast<unsigned char>(raw[i + k]));
    };
    const uint32_t len = (b(4) << 24) | (b(5) << 16) | (b(6) << 8) | b(7);
    out.append(raw, i + 8, std::min<size_t>(len, raw.size() - i - 8));
    i += 8 + len;
  }
  return out.empty() ? raw : out;
}

}  // namespace

DockerBackend::DockerBackend(DockerBackendOptions opts)
    : opts_(std::move(opts)),
      engine_(opts_.socket_path),
      why_no_disk_(disk::WhyUnsupported()),
      events_since_(NowUnix()) {
  why_no_egress_ = egress::EgressNetwork(opts_.egress).WhyUnsupported();
  if (why_no_egress_.empty()) {
    egress_ = std::make_unique<egress::EgressNetwork>(opts_.egress);
  }
  if (why_no_disk_.empty()) {
    disks_ = std::make_unique<disk::DiskMaker>(opts_.state_dir + "/.disks",
                                               opts_.default_limits.disk_bytes.value_or(0),
                                               opts_.ready_disks);
  }
}

std::string DockerBackend::SandboxDir(const std::string& id) const {
  return opts_.state_dir + "/" + id;
}

std::string DockerBackend::ResolveImage(const SandboxSpec& spec) const {
  return spec.image.empty() ? opts_.default_image : spec.image;
}

Capabilities DockerBackend::GetCapabilities() const {
  Capabilities c;
  c.claim = true;
  c.read_only_root = true;  // ReadonlyRootfs, with /workspace, /tmp and /run/agentbox writable
  c.root_filesystem = "sandbox";  // the container's writable layer
  c.metrics = true;               // docker_metrics.cc
  std::optional<std::string> why_not;
  {
    std::lock_guard<std::mutex> lock(mu_);
    why_not = why_no_layer_disk_;
  }
  if (!disks_) {
    c.disk_limit_note = "limits.disk_bytes is not enforced: " + why_no_disk_;
  } else if (why_not && why_not->empty()) {
    c.disk_limit = "workspace_and_root";
  } else {
    c.disk_limit = "workspace";
    c.disk_limit_note =
        "limits.disk_bytes bounds /workspace only: " +
        (why_not ? *why_not : "the engine has not been asked yet where its layers are");
  }
  return c;
}

Result<SandboxInfo> DockerBackend::Create(const std::string& id, const SandboxSpec& spec) {
  if (auto valid = ValidateCreate(id, spec); !valid) {
    return Fail(valid.error());
  }
  if (!spec.network_name.empty() && spec.network != NetworkMode::kNone) {
    return Fail(ErrorCode::kInvalidArgument, "network_name '" + spec.network_name +
                                                 "' cannot be combined with network " +
                                                 NetworkModeName(spec.network));
  }
  const std::string image = ResolveImage(spec);
  if (!ValidImageReference(image)) {
    return Fail(ErrorCode::kInvalidArgument, "invalid docker image reference '" + image + "'");
  }
  KeyedLock lock(id_locks_, id);
  auto info = CreateLocked(id, spec);
  if (info && spec.owner.empty()) {
    std::lock_guard<std::mutex> g(mu_);
    unclaimed_[id] = *info;
  }
  return info;
}

// Whether the guest of a sandbox that no user code has touched yet still answers on its socket:
// the guest is the container's first process, so an answer means the container runs.
bool DockerBackend::GuestAnswers(const SandboxInfo& info) const {
  const std::string socket = info.guest_endpoint.substr(5);  // "unix:"
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (socket.size() >= sizeof(addr.sun_path)) {
    return false;
  }
  std::memcpy(addr.sun_path, socket.c_str(), socket.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return false;
  }
  if (::connect(fd.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
      errno != EINPROGRESS && errno != EAGAIN) {
    return false;
  }
  auto healthy = HealthOnSocket(fd.Get(), info.guest_token, Clock::now() + milliseconds(1000));
  return healthy && *healthy;
}

Result<SandboxInfo> DockerBackend::CreateLocked(const std::string& id, const SandboxSpec& spec) {
  const auto started = Clock::now();
  const auto deadline = started + opts_.start_timeout;
  const std::string image = ResolveImage(spec);
  const std::string& sock = opts_.socket_path;

  auto img = engine_.Call("GET", "/images/" + image + "/json");
  if (!img) {
    return Fail(img.error());
  }
  if (img->status == 404) {
    return Fail(ErrorCode::kNotFound,
                "image '" + image + "' is not present in the Docker engine at " + sock +
                    " (create never pulls: prepare the image first, or build agentbox/base with "
                    "scripts/build-base-image.sh)");
  }
  if (img->status != 200) {
    return Fail(EngineError(*img, "inspect image '" + image + "'"));
  }
  std::vector<std::string> image_env_keys;
  {
    const Json ij = ParseUntrustedJson(img->body);
    if (ij.is_object() && ij.contains("Config") && ij["Config"].is_object() &&
        ij["Config"].contains("Env") && ij["Config"]["Env"].is_array()) {
      for (const auto& kv : ij["Config"]["Env"]) {
        const std::string s = kv.is_string() ? kv.get<std::string>() : "";
        image_env_keys.push_back(s.substr(0, s.find('=')));
      }
    }
  }

  auto created_dir = CreateSandboxDir(opts_.state_dir, id);
  if (!created_dir) {
    return Fail(created_dir.error());
  }
  const std::string dir = *created_dir;
  CrashPoint("docker.create.dir");
  // Until the guest answers, any failure removes all of the sandbox.
  struct Undo {
    const DockerBackend* backend;
    std::string dir;
    std::string container;
    std::optional<LayerDirs> layer;  // bound on the sandbox's disk
    std::string egress_link;
    bool armed = true;
    ~Undo() {
      if (!armed) {
        return;
      }
      backend->DetachEgress(egress_link);
      if (layer) {
        (void)UnbindLayer(*layer);
      }
      if (!container.empty()) {
        (void)backend->RemoveContainer(container);
      }
      (void)RemoveSandboxDir(dir);
    }
  } undo{this, dir, "", std::nullopt, "", true};

  const std::string run = dir + "/" + kRunDir;
  if (::mkdir(run.c_str(), 0700) != 0) {
    return Fail(ErrnoError(errno, "create " + run));
  }
  SandboxMeta meta;
  meta.token = RandomId(64);  // 256 bits from getrandom(2)
  meta.owner = spec.owner;
  meta.labels = spec.labels;

  ContainerPlan plan;
  plan.id = id;
  plan.spec = spec;
  plan.spec.image = image;
  plan.spec.limits = MergeLimits(spec.limits, opts_.default_limits);
  if (spec.network == NetworkMode::kEgress) {
    plan.spec.egress = spec.egress.value_or(opts_.egress.default_policy);  // as applied
  }
  auto resolv_conf = PrepareEgress(spec, dir);
  if (!resolv_conf) {
    return Fail(resolv_conf.error());
  }
  plan.resolv_conf = *resolv_conf;
  plan.state_dir = opts_.state_dir;
  plan.host_dir = dir;
  plan.guest_binary = opts_.guest_binary;
  plan.runtime = opts_.runtime;
  const SandboxesCgroup cpu_group = SandboxesCpuGroup();
  plan.cgroup_parent = cpu_group.parent;
  plan.created_at = NowUnix();
  plan.expires_at = plan.created_at + static_cast<double>(spec.ttl_s);
  plan.image_env_keys = std::move(image_env_keys);
  meta.expires_at = plan.expires_at;
  auto disk = SetUpDockerDisk(disks_.get(), why_no_disk_, dir, spec.limits, plan.spec.limits);
  if (!disk) {
    return Fail(disk.error());
  }
  plan.workspace_dir = disk->workspace;
  // The writable layer goes on the same disk (bound between create and start, below).
  const bool layer_on_disk = !disk->workspace.empty() && WhyNoLayerDisk().empty();
  CrashPoint("docker.create.disk");

  if (auto r = WriteFileAtomic(run + "/" + kTokenFile, meta.token + "\n", 0600); !r) {
    return Fail(r.error());
  }
  if (auto r = SaveMeta(dir, meta); !r) {
    return Fail(r.error());
  }

  CrashPoint("docker.create.meta");
  const std::string name = ContainerName(id);
  auto created = engine_.Call("POST", "/containers/create?name=" + UrlEncode(name),
                              BuildCreateBody(plan).dump(), std::chrono::seconds(60));
  if (!created) {
    return Fail(created.error());
  }
  if (created->status == 409) {
    return Fail(ErrorCode::kConflict, "a container named " + name + " already exists");
  }
  if (created->status == 404) {
    return Fail(ErrorCode::kNotFound, "cannot create sandbox '" + id + "' from image '" + image +
                                          "': " + EngineMessage(created->body));
  }
  if (created->status != 201) {
    return Fail(EngineError(*created, "create container for image '" + image + "'"));
  }
  const Json cj = ParseUntrustedJson(created->body);
  const std::string container_id = cj.is_object() ? ValueOr(cj, "Id", "") : "";
  if (container_id.empty()) {
    return Fail(ErrorCode::kUnavailable, "the engine created a container without an Id");
  }
  undo.container = container_id;
  if (layer_on_disk) {
    auto c = engine_.Call("GET", "/containers/" + container_id + "/json");
    if (!c || c->status != 200) {
      return Fail(c ? EngineError(*c, "inspect container " + name) : c.error());
    }
    auto layer = LayerDirsOf(ParseUntrustedJson(c->body));
    if (!layer) {
      return Fail(ErrorCode::kUnavailable, "cannot put the writable layer of sandbox '" + id +
                                               "' on its disk: " + layer.error().message);
    }
    if (auto r = BindLayerOnDisk(*layer, dir + "/disk"); !r) {
      return Fail(r.error());
    }
    undo.layer = *layer;
  }
  const auto created_at = Clock::now();
  CrashPoint("docker.create.container");

  const double start_begin = NowUnix();
  auto start =
      engine_.Call("POST", "/containers/" + container_id + "/start", {}, std::chrono::seconds(60));
  OwnStart(id, start_begin, NowUnix());
  if (!start) {
    return Fail(start.error());
  }
  if (start->status != 204 && start->status != 304) {
    return Fail(EngineError(*start, "start container " + name));
  }
  const auto started_at = Clock::now();
  WeighSandboxesCpuGroup(cpu_group);
  CrashPoint("docker.create.started");
  if (plan.spec.network == NetworkMode::kEgress) {
    auto link = AttachEgress(container_id, *plan.spec.egress);
    if (!link) {
      return Fail(link.error());
    }
    undo.egress_link = *link;
    meta.egress_link = *link;
    if (auto r = SaveMeta(dir, meta); !r) {
      return Fail(r.error());
    }
  }
  if (auto r = WaitForGuest(id, container_id, meta.token, deadline); !r) {
    return Fail(r.error());
  }
  undo.armed = false;
  CrashPoint("docker.create.ready");
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  Log(LogLevel::kInfo, "docker.created",
      "id={} container={} image={} ms={:.1f} create_ms={:.1f} start_ms={:.1f} guest_ms={:.1f}", id,
      container_id.substr(0, 12), image, ms(Clock::now() - started), ms(created_at - started),
      ms(started_at - created_at), ms(Clock::now() - started_at));

  SandboxInfo info;
  info.id = id;
  info.backend = "docker";
  info.state = SandboxState::kRunning;
  info.spec = plan.spec;
  info.created_at = plan.created_at;
  info.expires_at = plan.expires_at;
  info.guest_endpoint = "unix:" + run + "/" + kGuestSocket;
  info.guest_token = meta.token;
  info.detail = disk->note;
  info.disk_used_bytes = DockerDiskUsed(dir);
  return info;
}

// Waits until the guest answers GET /api/v1/health on its socket. Wakes when the socket appears
// (inotify on run/); checks every 100 ms that the container still runs, so a guest that cannot
// start fails Create at once with the container's last log lines. The health request goes over
// a socket connected before any user code ran in the sandbox, so it cannot be a planted link.
Result<void> DockerBackend::WaitForGuest(const std::string& id, const std::string& container_id,
                                         const std::string& token,
                                         Clock::time_point deadline) const {
  const std::string run = SandboxDir(id) + "/" + kRunDir;
  const std::string socket = run + "/" + kGuestSocket;
  UniqueFd ino(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!ino || ::inotify_add_watch(ino.Get(), run.c_str(), IN_CREATE) < 0) {
    return Fail(ErrnoError(errno, "inotify on " + run));
  }
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (socket.size() >= sizeof(addr.sun_path)) {
    return Fail(ErrorCode::kInvalidArgument,
                "the guest socket path " + socket + " is too long for a unix socket");
  }
  std::memcpy(addr.sun_path, socket.c_str(), socket.size() + 1);
  auto next_check = Clock::now() + milliseconds(100);
  for (;;) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
      return Fail(ErrnoError(errno, "socket"));
    }
    int err = 0;
    if (::connect(fd.Get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      err = errno;
    }
    if (err == 0 || err == EINPROGRESS || err == EAGAIN) {
      auto healthy = HealthOnSocket(fd.Get(), token, deadline);
      if (healthy && *healthy) {
        return {};
      }
      if (!healthy && healthy.error().code == ErrorCode::kTimeout) {
        return Fail(healthy.error());
      }
      err = ECONNREFUSED;  // closed early: the guest is still starting
    } else if (err != ENOENT && err != ECONNREFUSED) {
      return Fail(ErrnoError(err, "connect " + socket));
    }
    if (Clock::now() >= next_check) {
      next_check = Clock::now() + milliseconds(100);
      auto c = engine_.Call("GET", "/containers/" + container_id + "/json");
      if (!c) {
        return Fail(c.error());
      }
      const Json j = ParseUntrustedJson(c->body);
      if (c->status == 200 && j.is_object() && j.contains("State") &&
          ValueOr(j["State"], "Status", "") != "running") {
        return Fail(ErrorCode::kUnavailable, "the sandbox's container stopped while starting (" +
                                                 StateOf(j["State"]).second +
                                                 "); its log: " + ContainerLogTail(container_id));
      }
    }
    if (Clock::now() >= deadline) {
      return Fail(ErrorCode::kTimeout, "the guest did not answer its health check within " +
                                           std::to_string(opts_.start_timeout.count()) +
                                           " ms; its log: " + ContainerLogTail(container_id));
    }
    // ENOENT: wait for the socket to appear. ECONNREFUSED: bound but not listening yet, which
    // lasts microseconds: look again within a millisecond.
    struct pollfd p = {ino.Get(), POLLIN, 0};
    const milliseconds cap = err == ECONNREFUSED ? milliseconds(1) : milliseconds(100);
    if (::poll(&p, 1, PollMs(std::min(deadline, next_check), cap)) < 0 && errno != EINTR) {
      return Fail(ErrnoError(errno, "poll"));
    }
    char drain[4096];
    while (::read(ino.Get(), drain, sizeof(drain)) > 0) {
    }
  }
}

std::string DockerBackend::ContainerLogTail(const std::string& container_id) const {
  auto r = engine_.Call("GET", "/containers/" + container_id + "/logs?stdout=1&stderr=1&tail=20",
                        {}, std::chrono::seconds(5));
  if (!r || r->status != 200) {
    return "(unavailable)";
  }
  std::string text = Demux(r->body);
  if (text.size() > 1000) {
    text = text.substr(text.size() - 1000);
  }
  while (!text.empty() && text.back() == '\n') {
    text.pop_back();
  }
  return text.empty() ? "(empty)" : text;
}

Result<Json> DockerBackend::InspectOurs(const std::string& id) const {
  auto r = engine_.Call("GET", "/containers/" + ContainerName(id) + "/json");
  if (!r) {
    return Fail(r.error());
  }
  if (r->status == 404) {
    return Fail(SandboxNotFound(id));
  }
  if (r->status != 200) {
    return Fail(EngineError(*r, "inspect container " + ContainerName(id)));
  }
  Json j = ParseUntrustedJson(r->body);
  if (!j.is_object() || LabelOf(j, label::kManaged) != "true" ||
      LabelOf(j, label::kStateDir) != opts_.state_dir || LabelOf(j, label::kId) != id) {
    // Another agentboxd's (another state directory) or not agentbox's at all.
    return Fail(SandboxNotFound(id));
  }
  return j;
}

Result<SandboxInfo> DockerBackend::InfoFromInspect(const Json& c) const {
  std::vector<std::string> env;
  if (c.contains("Config") && c["Config"].contains("Env") && c["Config"]["Env"].is_array()) {
    for (const auto& kv : c["Config"]["Env"]) {
      if (kv.is_string()) {
        env.push_back(kv.get<std::string>());
      }
    }
  }
  auto rec = ParseLabels(LabelsOf(c), env);
  if (!rec) {
    return Fail(rec.error());
  }
  const std::string dir = SandboxDir(rec->id);
  if (PathExists(dir + "/" + kDestroyingFile)) {
    return Fail(SandboxNotFound(rec->id));  // being destroyed, or a crash interrupted that
  }
  auto meta = LoadMeta(dir);
  if (!meta) {
    if (meta.error().code == ErrorCode::kNotFound) {
      return Fail(ErrorCode::kNotFound,
                  "no sandbox '" + rec->id + "' (its host directory is gone)");
    }
    return Fail(meta.error());
  }
  SandboxInfo info;
  info.id = rec->id;
  info.backend = "docker";
  info.spec = rec->spec;
  info.spec.owner = meta->owner;
  info.spec.labels = meta->labels;
  info.created_at = rec->created_at;
  info.expires_at = meta->expires_at;
  info.guest_endpoint = "unix:" + dir + "/" + kRunDir + "/" + kGuestSocket;
  info.guest_token = meta->token;
  std::tie(info.state, info.detail) =
      StateOf(c.contains("State") && c["State"].is_object() ? c["State"] : Json::object());
  info.disk_used_bytes = DockerDiskUsed(dir);
  return info;
}

Result<SandboxInfo> DockerBackend::Get(const std::string& id) {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));
  }
  auto c = InspectOurs(id);
  if (!c) {
    return Fail(c.error());
  }
  return InfoFromInspect(*c);
}

Result<std::vector<SandboxInfo>> DockerBackend::List() {
  if (!cleaned_.exchange(true)) {
    if (auto n = CleanupOrphans(); !n) {
      Log(LogLevel::kWarn, "docker.cleanup_failed", "error=\"{}\"", n.error().message);
    }
  }
  auto list = ListContainers({std::string(label::kManaged) + "=true",
                              std::string(label::kStateDir) + "=" + opts_.state_dir});
  if (!list) {
    return Fail(list.error());
  }
  std::vector<SandboxInfo> out;
  for (const auto& entry : *list) {
    const std::string id = LabelOf(entry, label::kId);
    if (!ValidSandboxId(id)) {
      continue;
    }
    // Sandboxes being created (no guest yet) or destroyed meanwhile are skipped.
    auto info = Get(id);
    if (info) {
      out.push_back(std::move(*info));
    }
  }
  std::sort(out.begin(), out.end(), CreatedBefore);
  return out;
}

Result<Json> DockerBackend::ListContainers(const std::vector<std::string>& labels) const {
  const Json filters = {{"label", labels}};
  auto r = engine_.Call("GET", "/containers/json?all=1&filters=" + UrlEncode(filters.dump()));
  if (!r) {
    return Fail(r.error());
  }
  if (r->status != 200) {
    return Fail(EngineError(*r, "list containers"));
  }
  Json list = ParseUntrustedJson(r->body);
  return list.is_array() ? list : Json::array();
}

Result<void> DockerBackend::RemoveContainer(const std::string& name_or_id) const {
  auto r = engine_.Call("DELETE", "/containers/" + name_or_id + "?force=1&v=1", {},
                        std::chrono::seconds(60));
  if (!r) {
    return Fail(r.error());
  }
  if (r->status == 204 || r->status == 404) {
    return {};
  }
  // 409 "removal already in progress": another Destroy got there first.
  if (r->status == 409 && EngineMessage(r->body).find("in progress") != std::string::npos) {
    return {};
  }
  return Fail(EngineError(*r, "remove container " + name_or_id));
}

Result<void> DockerBackend::Destroy(const std::string& id) {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));
  }
  KeyedLock lock(id_locks_, id);
  {
    std::lock_guard<std::mutex> g(mu_);
    unclaimed_.erase(id);
  }
  const std::string dir = SandboxDir(id);
  auto c = InspectOurs(id);
  if (!c && c.error().code != ErrorCode::kNotFound) {
    return Fail(c.error());
  }
  if (!c && !PathExists(dir)) {
    return Fail(SandboxNotFound(id));
  }
  if (PathExists(dir)) {
    if (auto r = WriteFileDurable(dir + "/" + kDestroyingFile, "", 0600); !r) {
      return Fail(r.error());
    }
  }
  CrashPoint("docker.destroy.journaled");
  if (c) {
    // The layer's binds go first (detached: the running overlay keeps them until the container
    // stops), so the engine removes its own directories as usual.
    if (auto layer = LayerDirsOf(*c); layer) {
      if (auto r = UnbindLayer(*layer); !r) {
        return Fail(r.error());
      }
    }
    if (auto r = RemoveContainer(ValueOr((*c), "Id", ContainerName(id))); !r) {
      return Fail(r.error());
    }
  }
  CrashPoint("docker.destroy.container_removed");
  if (auto meta = LoadMeta(dir); meta && !meta->egress_link.empty()) {
    DetachEgress(meta->egress_link);  // the namespace went with the container: its rules remain
  }
  if (auto r = RemoveSandboxDir(dir); !r) {
    return Fail(r.error());
  }
  Log(LogLevel::kInfo, "docker.destroyed", "id={}", id);
  return {};
}

Result<void> DockerBackend::SetExpiry(const std::string& id, double expires_at) {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));
  }
  KeyedLock lock(id_locks_, id);
  if (auto c = InspectOurs(id); !c) {
    return Fail(c.error());
  }
  const std::string dir = SandboxDir(id);
  auto meta = LoadMeta(dir);
  if (!meta) {
    return Fail(meta.error().code == ErrorCode::kNotFound ? SandboxNotFound(id) : meta.error());
  }
  meta->expires_at = expires_at;
  return SaveMeta(dir, *meta);
}

Result<SandboxInfo> DockerBackend::Claim(const std::string& id, const SandboxSpec& spec,
                                         double expires_at) {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));
  }
  KeyedLock lock(id_locks_, id);
  std::optional<SandboxInfo> known;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (auto it = unclaimed_.find(id); it != unclaimed_.end()) {
      known = std::move(it->second);
      unclaimed_.erase(it);
    }
  }
  Result<SandboxInfo> info = Fail(SandboxNotFound(id));
  if (known && GuestAnswers(*known)) {
    info = std::move(*known);  // the fast path: no engine round trip
  } else {
    auto c = InspectOurs(id);
    if (!c) {
      return Fail(c.error());
    }
    info = InfoFromInspect(*c);
  }
  if (!info) {
    return Fail(info.error());
  }
  if (info->state != SandboxState::kRunning) {
    return Fail(ErrorCode::kConflict, "sandbox '" + id + "' is not running: " + info->detail);
  }
  const std::string dir = SandboxDir(id);
  auto meta = LoadMeta(dir);
  if (!meta) {
    return Fail(meta.error());
  }
  if (meta->claimed) {
    return Fail(ErrorCode::kConflict, "sandbox '" + id + "' was claimed already");
  }
  meta->owner = spec.owner;
  meta->labels = spec.labels;
  meta->expires_at = expires_at;
  meta->claimed = true;
  if (auto r = SaveMeta(dir, *meta); !r) {
    return Fail(r.error());
  }
  CrashPoint("docker.claim.recorded");
  info->spec.owner = meta->owner;
  info->spec.labels = meta->labels;
  info->expires_at = expires_at;
  Log(LogLevel::kInfo, "docker.claimed", "id={} owner={}", id, spec.owner);
  return info;
}

Result<void> DockerBackend::Prepare(const SandboxSpec& spec, const ProgressFn& progress) {
  const std::string image = ResolveImage(spec);
  if (!ValidImageReference(image)) {
    return Fail(ErrorCode::kInvalidArgument, "invalid docker image reference '" + image + "'");
  }
  auto say = [&](std::string_view line) {
    if (progress) {
      progress(line);
    }
  };
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = images_present_.find(image);
    if (it != images_present_.end() && Clock::now() - it->second < kImageFreshness) {
      say("image " + image + " is present");
      return {};
    }
  }
  auto present = engine_.Call("GET", "/images/" + image + "/json");
  if (!present) {
    return Fail(present.error());
  }
  if (present->status == 200) {
    std::lock_guard<std::mutex> g(mu_);
    images_present_[image] = Clock::now();
    say("image " + image + " is present");
    return {};
  }
  const auto [repo, tag] = SplitImageReference(image);
  // Nothing is reported before the engine's first progress line, so that a pull refused at
  // once (unknown image, no registry) stays an ordinary error for the caller.
  bool started = false;
  std::string error;
  auto status = engine_.Stream(
      "POST", "/images/create?fromImage=" + UrlEncode(repo) + "&tag=" + UrlEncode(tag),
      [&](std::string_view line) {
        const Json j = ParseUntrustedJson(line);
        if (!j.is_object()) {
          return;
        }
        if (j.contains("error") || (j.contains("message") && j.size() == 1)) {
          error = ValueOr(j, "error", ValueOr(j, "message", std::string()));
          return;
        }
        if (!started) {
          started = true;
          say("pulling image " + image);
        }
        std::string text = ValueOr(j, "id", "");
        text += (text.empty() ? "" : ": ") + ValueOr(j, "status", "");
        if (j.contains("progress") && j["progress"].is_string()) {
          text += " " + j["progress"].get<std::string>();
        }
        say(text);
      });
  if (!status) {
    return Fail(ErrorCode::kUnavailable,
                "cannot pull image '" + image + "': " + status.error().message);
  }
  if (*status != 200 || !error.empty()) {
    const std::string why = error.empty() ? "engine answered " + std::to_string(*status) : error;
    const bool unknown = *status == 404 || why.find("not found") != std::string::npos ||
                         why.find("manifest unknown") != std::string::npos ||
                         why.find("pull access denied") != std::string::npos ||
                         why.find("does not exist") != std::string::npos;
    if (unknown) {
      return Fail(ErrorCode::kNotFound, "image '" + image + "' was not found: " + why);
    }
    return Fail(ErrorCode::kUnavailable,
                "cannot pull image '" + image + "': no registry is reachable (" + why + ")");
  }
  auto after = engine_.Call("GET", "/images/" + image + "/json");
  if (!after || after->status != 200) {
    return Fail(ErrorCode::kUnavailable, "image '" + image + "' is still missing after its pull");
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    images_present_[image] = Clock::now();
  }
  say("pulled image " + image);
  return {};
}

}  // namespace agentbox::docker
