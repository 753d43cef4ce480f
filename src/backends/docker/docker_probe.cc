// The docker backend's checks of its engine: whether it can run sandboxes (Probe), what it
// cannot enforce (the writable layer's disk), and where its sandboxes go in the engine's cgroup
// tree (SandboxesCpuGroup).
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "backends/docker/docker_backend.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace agentbox::docker {
namespace {

// True when the ELF file at `path` asks for a dynamic loader (has a PT_INTERP header): such a
// guest cannot run in an arbitrary image.
bool IsDynamicElf(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  Elf64_Ehdr eh{};
  if (!fd || ::pread(fd.Get(), &eh, sizeof(eh), 0) != static_cast<ssize_t>(sizeof(eh)) ||
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return false;
  }
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    const off_t at = static_cast<off_t>(eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize);
    if (::pread(fd.Get(), &ph, sizeof(ph), at) != static_cast<ssize_t>(sizeof(ph))) {
      return false;
    }
    if (ph.p_type == PT_INTERP) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string DockerBackend::WhyNoLayerDisk() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (why_no_layer_disk_) {
      return *why_no_layer_disk_;
    }
  }
  auto info = engine_.Call("GET", "/info", {}, opts_.probe_timeout);
  if (!info || info->status != 200) {
    return "the Docker engine at " + opts_.socket_path + " did not answer GET /info";
  }
  const Json i = ParseUntrustedJson(info->body);
  const std::string driver = i.is_object() ? ValueOr(i, "Driver", "") : "";
  const std::string root = i.is_object() ? ValueOr(i, "DockerRootDir", "") : "";
  std::string why;
  struct stat st {};
  if (driver != "overlay2") {
    why = "the writable root is not bounded: the engine's storage driver is " +
          (driver.empty() ? std::string("unknown") : driver) + ", not overlay2";
  } else if (root.empty() || ::stat((root + "/overlay2").c_str(), &st) != 0) {
    why = "the writable root is not bounded: the engine's data-root '" + root +
          "' is not visible to agentboxd (an engine on another machine, in another mount "
          "namespace, or rootless)";
  }
  std::lock_guard<std::mutex> lock(mu_);
  why_no_layer_disk_ = why;
  Log(LogLevel::kInfo, "docker.layer_disk", "supported={} why_not=\"{}\"", why.empty(), why);
  return why;
}

ProbeResult DockerBackend::Probe() {
  ProbeResult p;
  const std::string& sock = opts_.socket_path;
  // The engine first (reachable, speaks our version), then what we bring to it (the guest), then
  // what it must hold (image, runtime): each reason names the first thing an operator must fix.
  // GET /v1.41/_ping: the engine refuses a versioned request outside the API versions it
  // speaks (400 "client version 1.41 is too new ..."), so one cheap call checks both that the
  // engine answers and that it speaks our version (GET /version costs ~40 ms on dockerd 20.10).
  auto ping = engine_.Call("GET", "/_ping", {}, opts_.probe_timeout);
  if (!ping) {
    p.reason = "The Docker engine at " + sock + " is not reachable: " +
               ping.error().message.substr(ping.error().message.find(": ") + 2) + ".";
    return p;
  }
  if (ping->status == 400) {
    p.reason = "The Docker engine at " + sock + " does not speak API " + std::string(kApiVersion) +
               ": " + EngineMessage(ping->body) + ".";
    return p;
  }
  if (ping->status != 200) {
    p.reason = "The Docker engine at " + sock + " answered GET /_ping with " +
               std::to_string(ping->status) + ".";
    return p;
  }
  if (::access(opts_.guest_binary.c_str(), X_OK) != 0) {
    p.reason = "The guest binary " + opts_.guest_binary + " is missing or not executable.";
    return p;
  }
  if (IsDynamicElf(opts_.guest_binary)) {
    p.reason = "The guest binary " + opts_.guest_binary +
               " is dynamically linked; containers need a static one (AGENTBOX_GUEST_BIN).";
    return p;
  }
  auto image =
      engine_.Call("GET", "/images/" + opts_.default_image + "/json", {}, opts_.probe_timeout);
  if (!image || image->status != 200) {
    p.reason = "The default image " + opts_.default_image +
               " is not present in the Docker engine at " + sock +
               " (pull it: POST /v1/images/pull with backend docker; or build agentbox/base:latest "
               "with scripts/build-base-image.sh).";
    return p;
  }
  if (!opts_.runtime.empty()) {
    auto info = engine_.Call("GET", "/info", {}, opts_.probe_timeout);
    const Json i = info && info->status == 200 ? ParseUntrustedJson(info->body) : Json();
    if (!i.is_object() || !i.contains("Runtimes") || !i["Runtimes"].contains(opts_.runtime)) {
      p.reason = "The Docker engine at " + sock + " has no runtime '" + opts_.runtime +
                 "' (AGENTBOX_DOCKER_RUNTIME).";
      return p;
    }
  }
  if (::mkdir(opts_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    p.reason = "The state directory " + opts_.state_dir +
               " cannot be created: " + ErrnoError(errno, "mkdir").message + ".";
    return p;
  }
  p.usable = true;
  if (!disks_) {
    p.limitations.push_back("limits.disk_bytes is not enforced (" + why_no_disk_ +
                            "): a create that asks for it is refused");
  } else if (std::string why = WhyNoLayerDisk(); !why.empty()) {
    p.limitations.push_back("limits.disk_bytes bounds /workspace only: " + why);
  }
  if (!egress_) {
    p.limitations.push_back("network \"egress\" is refused: " + why_no_egress_);
  }
  return p;
}

SandboxesCgroup DockerBackend::SandboxesCpuGroup() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cpu_group_) {
      return *cpu_group_;
    }
  }
  auto info = engine_.Call("GET", "/info", {}, opts_.probe_timeout);
  if (!info || info->status != 200) {
    return {};  // asked again at the next create
  }
  const Json i = ParseUntrustedJson(info->body);
  const SandboxesCgroup g = i.is_object() ? SandboxesCgroupFor(ValueOr(i, "CgroupDriver", ""),
                                                               ValueOr(i, "CgroupVersion", ""))
                                          : SandboxesCgroup{};
  std::lock_guard<std::mutex> lock(mu_);
  cpu_group_ = g;
  return g;
}

void DockerBackend::WeighSandboxesCpuGroup(const SandboxesCgroup& g) {
  std::string written;
  for (const auto& [path, value] : g.weight_files) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd && ::write(fd.Get(), value.data(), value.size()) == static_cast<ssize_t>(value.size())) {
      written += (written.empty() ? "" : ",") + path;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!cpu_group_logged_) {
    cpu_group_logged_ = true;
    // Not written: the engine is elsewhere (another machine, mount namespace, rootless) or its
    // driver is neither cgroupfs nor systemd; sandboxes then weigh what the engine gives them.
    Log(LogLevel::kInfo, "docker.cpu_group", "parent=\"{}\" weight_written=\"{}\"", g.parent,
        written);
  }
}

}  // namespace agentbox::docker
