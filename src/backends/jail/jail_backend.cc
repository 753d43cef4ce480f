#include "backends/jail/jail_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <optional>

#include "backends/jail/caps.h"
#include "backends/jail/fs_util.h"
#include "backends/jail/jail_config.h"
#include "backends/jail/jail_image.h"
#include "backends/jail/launch.h"
#include "backends/jail/process.h"
#include "backends/jail/sandbox_disk.h"
#include "backends/jail/sandbox_user.h"
#include "backends/jail/unix_http.h"
#include "common/crash_point.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "common/unique_fd.h"

namespace agentbox::jail {
namespace {

constexpr uint32_t kIdRange = 65536;
constexpr uint64_t kRootTmpfsBytes = 16ull << 20;
constexpr uint64_t kMaxShmBytes = 64ull << 20;
constexpr uint64_t kDefaultTmpBytes = 256ull << 20;
constexpr uint32_t kMinOpenFiles = 1024;
constexpr const char* kGuestInJail = "/.agentbox/guest";
constexpr auto kTarTimeout = std::chrono::minutes(5);

Result<void> MakeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) {
    return Fail(ErrnoError(errno, "mkdir " + path));
  }
  return {};
}

Result<void> Chown(const std::string& path, uint32_t uid, uint32_t gid) {
  if (::chown(path.c_str(), uid, gid) != 0) {
    return Fail(ErrnoError(errno, "chown " + path));
  }
  return {};
}

std::string FindTar() {
  for (const char* p : {"/usr/bin/tar", "/bin/tar"}) {
    if (::access(p, X_OK) == 0) {
      return p;
    }
  }
  return "tar";
}

// Extracts the tarball `image` into the new directory `dest`. Device nodes under dev/ are not
// extracted (the jail provides its own /dev).
Result<void> ExtractTarball(const std::string& image, const std::string& dest,
                            const std::string& log_path) {
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ChildProcess::Options o;
  o.path = FindTar();
  o.argv = {"tar",
            "-x",
            "-f",
            image,
            "-C",
            dest,
            "--numeric-owner",
            "--anchored",
            "--exclude=./dev/*",
            "--exclude=dev/*"};
  o.env = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
  o.stderr_fd = log.Get();
  auto tar = ChildProcess::Spawn(o);
  if (!tar) {
    return Fail(tar.error());
  }
  auto status = tar->Wait(Clock::now() + kTarTimeout);
  if (!status) {
    return Fail(status.error());
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return Fail(ErrorCode::kInvalidArgument,
                "cannot extract image " + image + ": " + LogTail(log_path, 300));
  }
  return {};
}

// The image's directories for the overlay root, bottom first. None of them is ever written
// (the overlay's upper directory takes every write): an OCI image's layers come from the image
// store's cache, shared by every sandbox of the image (and held by its lease); a directory is
// used in place, shared likewise; a tarball is extracted, with its own ids, into
// <disk_root>/image (the sandbox's disk, so it counts against limits.disk_bytes).
Result<std::vector<std::string>> ImageLayers(const JailImage& image, const std::string& disk_root,
                                             const std::string& dir) {
  switch (image.form) {
    case images::ImageForm::kHost:
      return std::vector<std::string>{};
    case images::ImageForm::kRootfsDir:
      return std::vector<std::string>{image.path};
    case images::ImageForm::kLayout:
    case images::ImageForm::kArchive:
    case images::ImageForm::kEngine:
      return image.layer_dirs;
    case images::ImageForm::kRootfsTarball:
      break;
  }
  const std::string extracted = disk_root + "/image";
  if (auto r = MakeDir(extracted, 0755); !r) {
    return Fail(r.error());
  }
  if (auto r = ExtractTarball(image.path, extracted, dir + "/tar.log"); !r) {
    return Fail(r.error());
  }
  return std::vector<std::string>{extracted};
}

// <root>/upper and <root>/work, owned by the sandbox's root (the overlay is mounted by the
// sandbox's user namespace, whose root must be able to write both).
Result<OverlayRootConfig> MakeOverlayDirs(const std::string& root, uint32_t uid, uint32_t gid,
                                          bool privileged) {
  OverlayRootConfig o;
  o.upper_dir = root + "/upper";
  o.work_dir = root + "/work";
  for (const auto& [path, mode] :
       {std::pair{root, 0755}, std::pair{o.upper_dir, 0755}, std::pair{o.work_dir, 0700}}) {
    if (auto r = MakeDir(path, static_cast<mode_t>(mode)); !r) {
      return Fail(r.error());
    }
  }
  if (privileged) {
    for (const auto& path : {o.upper_dir, o.work_dir}) {
      if (auto r = Chown(path, uid, gid); !r) {
        return Fail(r.error());
      }
    }
  }
  return o;
}

}  // namespace

JailBackend::JailBackend(JailBackendOptions opts) : opts_(std::move(opts)) {
  privileged_ = ::geteuid() == 0;
  if (auto layout = DiscoverCgroups(); layout && layout->version != CgroupVersion::kNone) {
    auto writable = [](const std::string& dir) {
      return !dir.empty() && ::access(dir.c_str(), W_OK) == 0;
    };
    memory_limit_ok_ = writable(layout->memory_own);
    pids_limit_ok_ = writable(layout->pids_own);
    cpu_limit_ok_ = writable(layout->cpu_own);
  }
  why_no_egress_ = egress::EgressNetwork(opts_.egress).WhyUnsupported();
  if (why_no_egress_.empty()) {
    egress_ = std::make_unique<egress::EgressNetwork>(opts_.egress);
  }
  why_no_disk_ = disk::WhyUnsupported();
  if (why_no_disk_.empty()) {
    disks_ = std::make_unique<disk::DiskMaker>(opts_.state_dir + "/.disks",
                                               opts_.default_limits.disk_bytes.value_or(0),
                                               opts_.ready_disks);
  }
  images_ = opts_.images;
  if (!images_) {
    ::mkdir(opts_.state_dir.c_str(), 0700);  // the store lives inside; EEXIST is fine
    images::ImageStoreOptions io;
    io.dir = opts_.state_dir + "/.images";
    io.max_bytes = opts_.image_cache_bytes;
    if (auto store = images::ImageStore::Open(io)) {
      images_ = *store;
    } else {
      why_no_images_ = store.error().message;
    }
  }
}

Result<void> JailBackend::Prepare(const SandboxSpec& spec, const ProgressFn& progress) {
  auto image = ResolveJailImage(images_.get(), why_no_images_, spec.image, "",
                                [&progress](const std::string& line) {
                                  if (progress) {
                                    progress(line);
                                  }
                                });
  if (!image) {
    return Fail(image.error());
  }
  return {};
}

std::vector<std::string> JailBackend::GuessCgroups(const std::string& id) const {
  const std::string& parent = opts_.cgroup_parent;
  std::vector<std::string> out;
  auto layout = DiscoverCgroups();
  if (!layout) {
    return out;
  }
  const std::string rel = parent.empty() ? "" : parent;
  for (const auto& [root, own] : {std::pair{layout->memory_root, layout->memory_own},
                                  std::pair{layout->pids_root, layout->pids_own},
                                  std::pair{layout->cpu_root, layout->cpu_own}}) {
    if (!own.empty()) {
      out.push_back((rel.empty() ? own : root + "/" + rel) + "/agentbox/" + id);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string JailBackend::SandboxDir(const std::string& id) const {
  return opts_.state_dir + "/" + id;
}

Capabilities JailBackend::GetCapabilities() const {
  Capabilities c;
  c.claim = true;
  // The sandbox's own filesystem holds /workspace and, for an image, the writable root.
  c.disk_limit = disks_ ? "workspace_and_root" : "none";
  c.disk_limit_note = disks_ ? "" : "limits.disk_bytes is not enforced: " + why_no_disk_;
  c.read_only_root = true;
  c.root_filesystem = "sandbox";
  c.metrics = true;  // jail_metrics.cc
  return c;
}

ProbeResult JailBackend::Probe() {
  ProbeResult p;
  if (::access(opts_.guest_binary.c_str(), X_OK) != 0) {
    p.reason = "The guest binary " + opts_.guest_binary + " is missing or not executable.";
    return p;
  }
  if (::access(opts_.helper_binary.c_str(), X_OK) != 0) {
    p.reason = "The jail helper " + opts_.helper_binary + " is missing or not executable.";
    return p;
  }
  if (::mkdir(opts_.state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    p.reason = "The state directory " + opts_.state_dir +
               " cannot be created: " + ErrnoError(errno, "mkdir").message + ".";
    return p;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    p.reason = "Cannot create a pipe to probe the kernel.";
    return p;
  }
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  ChildProcess::Options o;
  o.path = opts_.helper_binary;
  o.argv = {"agentbox-jail", "probe", opts_.state_dir};
  o.stdout_fd = write_end.Get();
  auto helper = ChildProcess::Spawn(o);
  write_end.Reset();
  if (!helper) {
    p.reason = "The jail helper cannot be started: " + helper.error().message + ".";
    return p;
  }
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  auto line = ReadLine(read_end.Get(), deadline);
  (void)helper->Wait(deadline);
  auto j = line ? ParseJsonObject(*line) : Result<Json>(Fail(line.error()));
  if (!j) {
    p.reason = "The jail helper's probe failed: " + j.error().message + ".";
    return p;
  }
  p.usable = j->value("usable", false);
  p.reason = j->value("reason", std::string());
  p.limitations = j->value("limitations", std::vector<std::string>());
  if (p.usable) {
    const Json overlay = j->value("overlay_root", Json::object());
    if (overlay.value("ok", false)) {
      // Once per process: /readyz probes on every call.
      static std::atomic<bool> logged{false};
      if (!logged.exchange(true)) {
        Log(LogLevel::kInfo, "jail.overlay_root", "how=\"{}\"", overlay.value("how", ""));
      }
    } else {
      p.limitations.push_back("sandboxes with an image cannot be created: the overlay root (" +
                              overlay.value("how", std::string("overlayfs")) +
                              ") fails here: " + overlay.value("error", std::string("?")));
    }
  }
  if (!disks_) {
    p.limitations.push_back("limits.disk_bytes is not enforced (" + why_no_disk_ +
                            "): a create that asks for it is refused");
  }
  if (!egress_) {
    p.limitations.push_back("network \"egress\" is refused: " + why_no_egress_);
  }
  return p;
}

Result<SandboxInfo> JailBackend::Create(const std::string& id, const SandboxSpec& spec) {
  if (auto valid = ValidateCreate(id, spec); !valid) {
    return Fail(valid.error());
  }
  if (auto name = images::CheckImageName(spec.image); !name) {
    return Fail(name.error());
  }
  // The guest moves descriptors above 1000 before it starts a shell (guest/core/spawn.cc).
  if (spec.limits.open_files && *spec.limits.open_files < kMinOpenFiles) {
    return Fail(ErrorCode::kInvalidArgument,
                "limits.open_files must be at least " + std::to_string(kMinOpenFiles));
  }
  KeyedLock lock(id_locks_, id);
  auto info = CreateLocked(id, spec);
  if (!info) {
    Log(LogLevel::kWarn, "jail.create_failed", "id={} code={} error=\"{}\"", id,
        ErrorCodeName(info.error().code), info.error().message);
  }
  return info;
}

Result<SandboxInfo> JailBackend::CreateLocked(const std::string& id, const SandboxSpec& spec) {
  const auto started = Clock::now();
  const auto deadline = started + opts_.start_timeout;
  auto created_dir = CreateSandboxDir(opts_.state_dir, id);
  if (!created_dir) {
    return Fail(created_dir.error());
  }
  const std::string dir = *created_dir;
  // The directory without spec.json is the create's journal: a daemon that dies before the
  // record is written has the sandbox rolled back by the next one (Recover).
  CrashPoint("jail.create.dir");

  // Undoes everything below unless the sandbox starts.
  struct Undo {
    Undo(JailBackend* b, std::string i, std::string d)
        : backend(b), id(std::move(i)), dir(std::move(d)) {}
    JailBackend* backend;
    std::string id, dir;
    int64_t slot = -1;
    std::optional<ChildProcess> helper;
    std::optional<ProcessIdentity> init;
    std::vector<std::string> cgroups;
    bool armed = true;
    std::string egress_link;
    ~Undo() {
      if (!armed) {
        return;
      }
      const auto until = Clock::now() + std::chrono::seconds(5);
      if (init) {
        if (auto h = ProcessHandle::Open(*init)) {
          (void)h->Signal(SIGKILL);
          h->WaitExit(until);
        }
      }
      helper.reset();  // SIGKILL and reap; the jail dies with it (PR_SET_PDEATHSIG)
      if (cgroups.empty()) {
        cgroups = backend->GuessCgroups(id);
      }
      (void)RemoveCgroups(cgroups, std::chrono::seconds(5));
      (void)UnmountBelow(dir);
      (void)RemoveTree(dir);
      backend->ReleaseSlot(slot, id);
      if (backend->images_) {
        backend->images_->Release(ImageLease(id));
      }
      backend->DetachEgress(egress_link);
    }
  } undo{this, id, dir};

  SandboxRecord rec;
  rec.id = id;
  rec.spec = spec;
  rec.spec.limits = MergeLimits(spec.limits, opts_.default_limits);
  if (spec.network == NetworkMode::kEgress) {
    rec.spec.egress = spec.egress.value_or(opts_.egress.default_policy);  // as applied
  }
  rec.created_at = NowUnix();
  rec.expires_at = rec.created_at + static_cast<double>(spec.ttl_s);
  const ResourceLimits& limits = rec.spec.limits;

  if (privileged_) {
    auto slot = AllocateSlot(id);
    if (!slot) {
      return Fail(slot.error());
    }
    undo.slot = *slot;
    rec.uid_slot = *slot;
    rec.host_uid = opts_.uid_base + static_cast<uint32_t>(*slot) * kIdRange;
    rec.host_gid = rec.host_uid;
    rec.id_count = kIdRange;
    CrashPoint("jail.create.slot");
  } else {
    rec.host_uid = ::getuid();
    rec.host_gid = ::getgid();
    rec.id_count = 1;
  }

  auto disk = SetUpSandboxDisk(disks_.get(), why_no_disk_, dir, spec.limits, limits, rec.host_uid,
                               rec.host_gid);
  if (!disk) {
    return Fail(disk.error());
  }
  rec.detail = disk->note;
  CrashPoint("jail.create.disk");
  const std::string workspace = disk->root + "/workspace";
  const std::string run = dir + "/run";
  const std::string token_path = run + "/token";
  for (const auto& [path, mode] :
       {std::pair{workspace, 0755}, std::pair{run, 0700}, std::pair{dir + "/root", 0700}}) {
    if (auto r = MakeDir(path, static_cast<mode_t>(mode)); !r) {
      return Fail(r.error());
    }
  }
  rec.token = RandomId(64);  // 256 bits from getrandom(2)
  if (auto r = WriteFileAtomic(token_path, rec.token + "\n", 0600); !r) {
    return Fail(r.error());
  }
  if (privileged_) {
    for (const auto& path : {workspace, run, token_path}) {
      if (auto r = Chown(path, rec.host_uid, rec.host_gid); !r) {
        return Fail(r.error());
      }
    }
  }

  JailConfig cfg;
  cfg.id = id;
  cfg.hostname = id;
  cfg.log_cap_bytes = opts_.log_cap_bytes;
  cfg.user = {rec.host_uid, rec.host_gid, rec.id_count, !privileged_};
  cfg.mount.root_dir = dir + "/root";
  cfg.mount.root_bytes = kRootTmpfsBytes;
  cfg.mount.workspace_dir = workspace;
  cfg.mount.run_dir = run;
  cfg.mount.guest_binary = opts_.guest_binary;
  cfg.mount.tmp_bytes = limits.tmp_bytes.value_or(kDefaultTmpBytes);
  cfg.mount.shm_bytes = std::min(kMaxShmBytes, cfg.mount.tmp_bytes);
  auto image = ResolveJailImage(images_.get(), why_no_images_, spec.image, id);
  if (!image) {
    return Fail(image.error());
  }
  CrashPoint("jail.create.image");
  if (image->form == images::ImageForm::kHost) {
    cfg.mount.system_source = "/";
    cfg.mount.system_entries = DefaultSystemEntries();
  } else {
    // Every image form becomes the lower directories of one overlay root (rootfs.h).
    auto layers = ImageLayers(*image, disk->root, dir);
    if (!layers) {
      return Fail(layers.error());
    }
    // The root's writes go to the sandbox's disk, next to /workspace: limits.disk_bytes bounds
    // them, and they survive a restart of the guest (the overlay is mounted again over them).
    auto overlay = MakeOverlayDirs(disk->root + "/rootfs", rec.host_uid, rec.host_gid, privileged_);
    if (!overlay) {
      return Fail(overlay.error());
    }
    cfg.mount.overlay = std::move(*overlay);
    cfg.mount.overlay.lower_dirs = std::move(*layers);
  }
  cfg.mount.read_only_root = spec.read_only_root;
  if (!cfg.mount.overlay.enabled() && !cfg.mount.system_writable && privileged_) {
    // A shared read-only /etc (the host's): the daemon adds the `user` account (sandbox_user.h).
    // An image's /etc is writable (the overlay root): the account is made inside, as on docker.
    const std::string etc =
        (cfg.mount.system_source == "/" ? std::string() : cfg.mount.system_source) + "/etc";
    auto user = PrepareSandboxUser(etc, dir, disk->root, rec.host_uid, rec.host_gid, rec.id_count);
    if (user) {
      cfg.mount.extra = std::move(user->mounts);
    } else if (user.error().code == ErrorCode::kNotFound ||
               user.error().code == ErrorCode::kUnavailable) {
      // An image without passwd/group files, or ids that do not fit: no account, as before.
      Log(LogLevel::kInfo, "jail.no_user_account", "id={} why=\"{}\"", id, user.error().message);
    } else {
      return Fail(user.error());
    }
  }
  cfg.net.share_host = spec.network == NetworkMode::kHost;
  auto resolv_conf = PrepareEgress(spec, dir);
  if (!resolv_conf) {
    return Fail(resolv_conf.error());
  }
  cfg.mount.resolv_conf = *resolv_conf;
  cfg.cgroup.name = "agentbox/" + id;
  cfg.cgroup.parent = opts_.cgroup_parent;
  std::vector<std::string> unenforced;
  auto limit = [&](auto& dst, const auto& value, bool ok, const char* what) {
    if (!value) {
      return;
    }
    if (ok) {
      dst = value;
    } else {
      unenforced.push_back(what);
    }
  };
  limit(cfg.cgroup.memory_bytes, limits.memory_bytes, memory_limit_ok_, "memory");
  limit(cfg.cgroup.pids, limits.pids, pids_limit_ok_, "pids");
  limit(cfg.cgroup.cpus, limits.cpus, cpu_limit_ok_, "cpus");
  if (cpu_limit_ok_) {
    // One scheduling entity per sandbox (its fair share however many processes it runs), and
    // every sandbox together weighs half of one of agentboxd's threads (docs/reliability.md §4).
    cfg.cgroup.cpu_weight = kSandboxCpuWeight;
    cfg.cgroup.parent_cpu_weight = kSandboxesCpuWeight;
  }
  if (!unenforced.empty()) {
    std::string what;
    for (const auto& u : unenforced) {
      what += (what.empty() ? "" : ", ") + u;
    }
    rec.detail +=
        (rec.detail.empty() ? "" : "; ") + ("limits not enforced (no writable cgroup): " + what);
  }
  cfg.rlimits.open_files = limits.open_files;
  cfg.rlimits.file_size_bytes = limits.file_size_bytes;
  cfg.caps.keep = DefaultKeptCapabilities();
  std::map<std::string, std::string> env = {
      {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
      {"HOME", "/root"},
      {"USER", "root"},
      {"LOGNAME", "root"},
      {"HOSTNAME", cfg.hostname},
      {"LANG", "C.UTF-8"}};
  std::string workdir = "/workspace";
  if (const std::string note = ApplyImageConfig(*image, env, workdir); !note.empty()) {
    rec.detail += (rec.detail.empty() ? "" : "; ") + note;
  }
  for (const auto& [k, v] : spec.env) {
    env[k] = v;
  }
  for (const auto& [k, v] : env) {
    cfg.exec.env.push_back(k + "=" + v);
  }
  cfg.exec.path = kGuestInJail;
  cfg.exec.argv = {kGuestInJail, "serve",   "--listen",     "unix:/run/agentbox/guest.sock",
                   "--workdir",  workdir,   "--token-file", "/run/agentbox/token"};
  cfg.exec.cwd = workdir;

  const std::string config_path = dir + "/jail.json";
  if (auto r = WriteFileAtomic(config_path, DumpJson(JailConfigToJson(cfg)), 0600); !r) {
    return Fail(r.error());
  }
  CrashPoint("jail.create.config");
  auto launched = LaunchJail(opts_.helper_binary, dir, rec.token, deadline);
  if (!launched) {
    return Fail(launched.error());
  }
  const pid_t init_pid = launched->init_id.pid;
  const pid_t helper_pid = launched->helper.pid();
  const auto spawning = launched->spawning;
  const auto jailed = launched->jailed;
  rec.cgroups = launched->cgroups;
  undo.cgroups = rec.cgroups;
  undo.init = launched->init_id;
  rec.helper = launched->helper_id;
  rec.init = launched->init_id;
  undo.helper.emplace(std::move(launched->helper));
  CrashPoint("jail.create.launched");
  if (auto r = AttachEgress(rec, init_pid); !r) {
    return Fail(r.error());
  }
  undo.egress_link = rec.egress_link;

  if (auto r = SaveSandboxRecord(dir + "/spec.json", rec); !r) {
    return Fail(r.error());
  }
  CrashPoint("jail.create.recorded");
  undo.helper->Detach();  // the helper now lives as long as the sandbox
  undo.armed = false;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  Log(LogLevel::kInfo, "jail.created",
      "id={} init_pid={} helper_pid={} uid={} ms={:.1f} prepare_ms={:.1f} jail_ms={:.1f} "
      "guest_ms={:.1f}",
      id, init_pid, helper_pid, rec.host_uid, ms(Clock::now() - started), ms(spawning - started),
      ms(jailed - spawning), ms(Clock::now() - jailed));
  return InfoFromRecord(rec);
}

SandboxInfo JailBackend::InfoFromRecord(const SandboxRecord& r) const {
  SandboxInfo info;
  info.id = r.id;
  info.backend = "jail";
  info.spec = r.spec;
  info.created_at = r.created_at;
  info.expires_at = r.expires_at;
  info.guest_endpoint = "unix:" + SandboxDir(r.id) + "/run/guest.sock";
  info.guest_token = r.token;
  info.detail = r.detail;
  info.disk_used_bytes = SandboxDiskUsed(SandboxDir(r.id));
  if (GetProcessStatus(r.init) == ProcessStatus::kRunning) {
    info.state = SandboxState::kRunning;
  } else {
    info.state = SandboxState::kStopped;
    info.detail = "the sandbox's processes have exited";
    // A helper this process started is reaped here, so it does not linger as a zombie.
    if (auto h = ProcessHandle::Open(r.helper);
        h && GetProcessStatus(r.helper) == ProcessStatus::kZombie) {
      h->ReapIfChild();
    }
  }
  return info;
}

Result<SandboxInfo> JailBackend::Get(const std::string& id) {
  auto rec = LoadRecord(id);
  if (!rec) {
    return Fail(rec.error());
  }
  return InfoFromRecord(*rec);
}

Result<SandboxRecord> JailBackend::LoadRecord(const std::string& id) const {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));  // and no path is ever built from it
  }
  auto rec = LoadSandboxRecord(SandboxDir(id) + "/spec.json");
  if (!rec && rec.error().code == ErrorCode::kNotFound) {
    return Fail(SandboxNotFound(id));
  }
  return rec;
}

Result<std::vector<SandboxInfo>> JailBackend::List() {
  std::vector<SandboxInfo> out;
  DIR* d = ::opendir(opts_.state_dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) {
      return out;
    }
    return Fail(ErrnoError(errno, "list " + opts_.state_dir));
  }
  std::vector<std::string> ids;
  while (const dirent* e = ::readdir(d)) {
    if (ValidSandboxId(e->d_name)) {
      ids.emplace_back(e->d_name);
    }
  }
  ::closedir(d);
  for (const auto& id : ids) {
    // Sandboxes being created (no record yet) or destroyed meanwhile are skipped.
    if (auto rec = LoadSandboxRecord(SandboxDir(id) + "/spec.json")) {
      out.push_back(InfoFromRecord(*rec));
    }
  }
  std::sort(out.begin(), out.end(), CreatedBefore);
  return out;
}

Result<void> JailBackend::Destroy(const std::string& id) {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));
  }
  KeyedLock lock(id_locks_, id);
  return DestroyLocked(id);
}

Result<void> JailBackend::DestroyLocked(const std::string& id) {
  const std::string dir = SandboxDir(id);
  if (!PathExists(dir)) {
    return Fail(SandboxNotFound(id));
  }
  const auto deadline = Clock::now() + opts_.stop_timeout;
  // The destroy's journal: once spec.json is renamed the sandbox is no longer listed, and a
  // daemon that dies from here on has the destroy finished by the next one (Recover). A destroy
  // that failed half-way (a timeout) left destroying.json: this one goes on from it.
  const std::string dying = dir + "/destroying.json";
  if (::rename((dir + "/spec.json").c_str(), dying.c_str()) != 0 && errno != ENOENT) {
    return Fail(ErrnoError(errno, "rename " + dir + "/spec.json"));
  }
  (void)SyncParentDir(dying);  // best effort: a lost rename is a destroy that starts again
  CrashPoint("jail.destroy.journaled");
  auto rec = LoadSandboxRecord(dying);
  if (auto r = RemoveEverything(id, rec ? &*rec : nullptr, deadline, nullptr); !r) {
    return Fail(r.error());
  }
  Log(LogLevel::kInfo, "jail.destroyed", "id={}", id);
  return {};
}

Result<void> JailBackend::SetExpiry(const std::string& id, double expires_at) {
  KeyedLock lock(id_locks_, id);
  auto rec = LoadRecord(id);
  if (!rec) {
    return Fail(rec.error());
  }
  rec->expires_at = expires_at;
  return SaveSandboxRecord(SandboxDir(id) + "/spec.json", *rec);
}

Result<SandboxInfo> JailBackend::Claim(const std::string& id, const SandboxSpec& spec,
                                       double expires_at) {
  KeyedLock lock(id_locks_, id);
  auto rec = LoadRecord(id);
  if (!rec) {
    return Fail(rec.error());
  }
  if (GetProcessStatus(rec->init) != ProcessStatus::kRunning) {
    return Fail(ErrorCode::kUnavailable, "sandbox '" + id + "' is not running");
  }
  rec->spec.owner = spec.owner;
  rec->spec.labels = spec.labels;
  rec->expires_at = expires_at;
  // The record is replaced whole (temporary file + rename): a crash leaves it claimed or not.
  if (auto r = SaveSandboxRecord(SandboxDir(id) + "/spec.json", *rec); !r) {
    return Fail(r.error());
  }
  CrashPoint("jail.claim.recorded");
  return InfoFromRecord(*rec);
}

// Slots are symlinks <state_dir>/.slots/<n> -> <id>, created atomically; a flock on
// .slots/.lock serialises allocation with other processes using the same state directory.
Result<int64_t> JailBackend::AllocateSlot(const std::string& id) {
  const std::string slots = opts_.state_dir + "/.slots";
  if (auto r = EnsureDir(slots, 0700); !r) {
    return Fail(r.error());
  }
  std::lock_guard guard(slot_mu_);
  UniqueFd lock(::open((slots + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock || ::flock(lock.Get(), LOCK_EX) != 0) {
    return Fail(ErrnoError(errno, "lock " + slots));
  }
  for (uint32_t i = 0; i < opts_.max_slots; ++i) {
    const int64_t n = (slot_hint_ + i) % opts_.max_slots;
    const std::string path = slots + "/" + std::to_string(n);
    if (::symlink(id.c_str(), path.c_str()) == 0) {
      slot_hint_ = n + 1;
      return n;
    }
    if (errno != EEXIST) {
      return Fail(ErrnoError(errno, "create " + path));
    }
    // Reclaim the slot of a sandbox whose state is gone (a crash between create and record).
    char owner[256];
    const ssize_t len = ::readlink(path.c_str(), owner, sizeof(owner) - 1);
    if (len > 0 && !PathExists(SandboxDir(std::string(owner, static_cast<size_t>(len))))) {
      ::unlink(path.c_str());
      if (::symlink(id.c_str(), path.c_str()) == 0) {
        slot_hint_ = n + 1;
        return n;
      }
    }
  }
  return Fail(ErrorCode::kUnavailable,
              "all " + std::to_string(opts_.max_slots) + " sandbox id ranges are in use");
}

void JailBackend::ReleaseSlot(int64_t slot, const std::string& id) {
  if (slot < 0) {
    return;
  }
  const std::string slots = opts_.state_dir + "/.slots";
  const std::string path = slots + "/" + std::to_string(slot);
  std::lock_guard guard(slot_mu_);
  UniqueFd lock(::open((slots + "/.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock || ::flock(lock.Get(), LOCK_EX) != 0) {
    return;
  }
  char owner[256];
  const ssize_t len = ::readlink(path.c_str(), owner, sizeof(owner) - 1);
  if (len > 0 && std::string(owner, static_cast<size_t>(len)) == id) {
    ::unlink(path.c_str());
  }
}

}  // namespace agentbox::jail
