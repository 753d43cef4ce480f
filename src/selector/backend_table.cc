#include "selector/backend_table.h"

#include <unistd.h>

#include "backends/cloudrun/cloudrun_backend.h"
#include "backends/cloudrun/gcp_cloud.h"
#include "backends/docker/docker_backend.h"
#include "backends/jail/jail_backend.h"
#include "backends/pool/warm_pool.h"
#include "common/log.h"
#include "common/strings.h"

namespace agentbox::selector {
namespace {

std::string SelfDir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) {
    return ".";
  }
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

bool Executable(const std::string& p) { return !p.empty() && ::access(p.c_str(), X_OK) == 0; }

// DOCKER_HOST (unix:// only), AGENTBOX_DOCKER_IMAGE (default image), AGENTBOX_DOCKER_RUNTIME.
Result<docker::DockerBackendOptions> DockerOptions(const Config& cfg, const std::string& state_dir,
                                                   const std::string& guest) {
  docker::DockerBackendOptions o;
  auto socket = docker::SocketFromDockerHost(cfg.GetOr("DOCKER_HOST", ""));
  if (!socket) {
    return Fail(socket.error());
  }
  o.socket_path = *socket;
  o.state_dir = state_dir + "/docker";
  o.guest_binary = guest;
  o.default_image = cfg.GetOr("AGENTBOX_DOCKER_IMAGE", o.default_image);
  if (!docker::ValidImageReference(o.default_image)) {
    return Fail(ErrorCode::kInvalidArgument,
                "AGENTBOX_DOCKER_IMAGE='" + o.default_image + "' is not an image reference");
  }
  o.runtime = cfg.GetOr("AGENTBOX_DOCKER_RUNTIME", "");
  if (o.runtime.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._-") != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "AGENTBOX_DOCKER_RUNTIME='" + o.runtime + "' is not a runtime name");
  }
  return o;
}

// Whether the configuration asks for cloudrun at all: without a project and without any switch
// naming it, the backend is simply absent (no Google call, no config error in /v1/info).
bool CloudRunWanted(const Config& cfg) {
  if (!cfg.GetOr("SANDBOX_GCP_PROJECT", "").empty()) {
    return true;
  }
  for (const char* key : {"SANDBOX_BACKEND", "AGENTBOX_ROLLOUT_BACKEND"}) {
    if (AsciiLower(cfg.GetOr(key, "")) == "cloudrun") {
      return true;
    }
  }
  return cfg.GetBool("USE_CLOUDRUN_JOBS_SANDBOX", false).value_or(true);
}

Result<SandboxBackendPtr> MakeCloudRun(const Config& cfg, const std::string& state_dir,
                                       const std::string& guest, TunnelRegistry* tunnels,
                                       std::optional<uint64_t> default_disk) {
  auto o = cloudrun::OptionsFromConfig(cfg, state_dir + "/cloudrun", guest);
  if (!o) {
    return Fail(o.error());
  }
  o->default_limits.disk_bytes = default_disk;  // bounds file writes through the daemon
  auto cloud = cloudrun::MakeGcpCloud(cfg, o->project, o->region, o->bucket);
  if (!cloud) {
    return Fail(cloud.error());
  }
  if (o->mode == "session" && tunnels == nullptr) {
    return Fail(ErrorCode::kInvalidArgument,
                "AGENTBOX_CLOUDRUN_MODE=session needs the daemon's tunnel endpoint (agentboxd)");
  }
  // Session mode hands out started executions from a warm pool (AGENTBOX_WARM_POOL_SIZE_CLOUDRUN);
  // job mode cannot Claim and stays unwrapped.
  return pool::WithWarmPool(std::make_unique<cloudrun::CloudRunBackend>(*o, *cloud, tunnels), cfg);
}

}  // namespace

// A binary that ships with agentboxd: configured path, else next to agentboxd, else in
// ../lib/agentbox beside agentboxd's bin directory (the installed layout: /usr/bin/agentboxd and
// /usr/lib/agentbox/agentbox-guest from the .deb, or the same under /usr/local), else where the
// build tree put it.
std::string FindBinary(const Config& cfg, const std::string& key, const std::string& name,
                       const std::string& build_path) {
  if (auto v = cfg.Get(key); v && !v->empty()) {
    return *v;
  }
  for (const std::string& p :
       {SelfDir() + "/" + name, SelfDir() + "/../lib/agentbox/" + name,
        "/usr/local/lib/agentbox/" + name, build_path}) {
    if (Executable(p)) {
      return p;
    }
  }
  return build_path;
}

const std::vector<std::string>& BackendTable::KnownNames() {
  static const std::vector<std::string> names = {"docker", "jail"};
  return names;
}

SandboxBackend* BackendTable::Find(const std::string& name) const {
  auto it = backends.find(name);
  return it == backends.end() ? nullptr : it->second.get();
}

void BackendTable::Add(const std::string& name, Result<SandboxBackendPtr> backend) {
  if (backend) {
    backends[name] = std::move(*backend);
  } else {
    config_errors[name] = backend.error().message;
  }
}

std::map<std::string, SandboxBackend*> BackendTable::Pointers() const {
  std::map<std::string, SandboxBackend*> out;
  for (const auto& [name, b] : backends) {
    out[name] = b.get();
  }
  return out;
}

BackendTable BuildBackends(const Config& cfg, const std::string& state_dir,
                           TunnelRegistry* tunnels) {
  BackendTable t;
  // The disk every sandbox gets unless it asks otherwise; 0: no disk of its own by default.
  auto disk = cfg.GetInt("AGENTBOX_DEFAULT_DISK_BYTES", 10ll << 30, 0, 16ll << 40);
  if (!disk || (*disk != 0 && *disk < (16ll << 20))) {
    const std::string why =
        disk ? "AGENTBOX_DEFAULT_DISK_BYTES must be 0 or at least 16 MiB" : disk.error().message;
    t.config_errors["jail"] = why;
    t.config_errors["docker"] = why;
    return t;
  }
  auto default_limits = [&] {
    ResourceLimits l = DefaultSandboxLimits();
    l.disk_bytes = *disk ? std::optional<uint64_t>(static_cast<uint64_t>(*disk)) : std::nullopt;
    return l;
  };
  // Network "egress": the jail takes the first half of AGENTBOX_EGRESS_POOL, docker the second.
  auto jail_egress = egress::EgressOptionsFromConfig(cfg, 0);
  auto docker_egress = egress::EgressOptionsFromConfig(cfg, 1);
  if (!jail_egress || !docker_egress) {
    t.config_errors["jail"] = jail_egress ? docker_egress.error().message
                                          : jail_egress.error().message;
    t.config_errors["docker"] = t.config_errors["jail"];
    return t;
  }
  jail::JailBackendOptions jo;
  jo.default_limits = default_limits();
  jo.egress = *jail_egress;
  jo.state_dir = state_dir + "/jail";
  jo.guest_binary = FindBinary(cfg, "AGENTBOX_GUEST_BIN", "agentbox-guest", AGENTBOX_BUILD_GUEST);
  jo.helper_binary = FindBinary(cfg, "AGENTBOX_JAIL_HELPER", "agentbox-jail", AGENTBOX_BUILD_JAIL);
  // OCI images on the jail (docs/images.md): unpacked layers under <state>/images, bounded by
  // AGENTBOX_IMAGE_CACHE_BYTES (0: unbounded); engine images come from DOCKER_HOST's engine.
  auto cache_bytes = cfg.GetInt("AGENTBOX_IMAGE_CACHE_BYTES", 10ll << 30, 0, 1ll << 50);
  if (!cache_bytes) {
    t.config_errors["jail"] = cache_bytes.error().message;
    return t;
  }
  images::ImageStoreOptions io;
  io.dir = state_dir + "/images";
  io.max_bytes = static_cast<uint64_t>(*cache_bytes);
  if (auto socket = docker::SocketFromDockerHost(cfg.GetOr("DOCKER_HOST", ""))) {
    io.docker_socket = *socket;
  }
  if (auto store = images::ImageStore::Open(io)) {
    t.images = *store;
    jo.images = *store;
  } else {
    Log(LogLevel::kWarn, "images.unavailable", "dir={} error=\"{}\"", io.dir,
        store.error().message);
  }
  t.Add("jail", pool::WithWarmPool(std::make_unique<jail::JailBackend>(jo), cfg));
  if (auto o = DockerOptions(cfg, state_dir, jo.guest_binary)) {
    o->default_limits = default_limits();
    o->egress = *docker_egress;
    t.Add("docker", pool::WithWarmPool(std::make_unique<docker::DockerBackend>(*o), cfg));
  } else {
    t.config_errors["docker"] = o.error().message;
  }
  if (CloudRunWanted(cfg)) {
    t.Add("cloudrun", MakeCloudRun(cfg, state_dir, jo.guest_binary, tunnels,
                                   jo.default_limits.disk_bytes));
  }
  return t;
}

}  // namespace agentbox::selector
