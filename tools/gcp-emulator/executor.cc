#include "executor.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>

#include "backends/docker/container_request.h"
#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "fuse_mount.h"

namespace agentbox::gcpemu {
namespace {

using Clock = std::chrono::steady_clock;

void WalkApply(const std::string& path, const VolumeMount& m, int depth) {
  struct stat st {};
  if (depth > 64 || ::lstat(path.c_str(), &st) != 0 || S_ISLNK(st.st_mode)) {
    return;
  }
  if (m.uid || m.gid) {
    if (::lchown(path.c_str(), m.uid ? *m.uid : static_cast<uid_t>(-1),
                 m.gid ? *m.gid : static_cast<gid_t>(-1)) != 0) {
      Log(LogLevel::kWarn, "gcpemu.chown_failed", "path={} errno={}", path, errno);
    }
  }
  if (S_ISREG(st.st_mode) && m.file_mode) {
    ::chmod(path.c_str(), *m.file_mode);
  }
  if (!S_ISDIR(st.st_mode)) {
    return;
  }
  if (m.dir_mode && depth > 0) {
    ::chmod(path.c_str(), *m.dir_mode);
  }
  DIR* dp = ::opendir(path.c_str());
  if (dp == nullptr) {
    return;
  }
  std::vector<std::string> children;
  while (auto* e = ::readdir(dp)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") {
      children.push_back(path + "/" + n);
    }
  }
  ::closedir(dp);
  for (const auto& c : children) {
    WalkApply(c, m, depth + 1);
  }
}

// Demultiplexes the engine's log stream (8-byte frame headers) into plain text.
std::string Demux(const std::string& raw) {
  std::string out;
  size_t pos = 0;
  while (pos + 8 <= raw.size()) {
    const uint32_t n = (uint32_t(uint8_t(raw[pos + 4])) << 24) |
                       (uint32_t(uint8_t(raw[pos + 5])) << 16) |
                       (uint32_t(uint8_t(raw[pos + 6])) << 8) | uint32_t(uint8_t(raw[pos + 7]));
    out.append(raw, pos + 8, std::min<size_t>(n, raw.size() - pos - 8));
    pos += 8 + n;
  }
  return out;
}

Json CreateBody(const TaskSpec& s) {
  Json env = Json::array();
  for (const auto& [k, v] : s.env) {
    env.push_back(k + "=" + v);
  }
  Json binds = Json::array();
  for (const auto& m : s.mounts) {
    binds.push_back(m.source + ":" + m.target + (m.read_only ? ":ro" : ":rw"));
  }
  Json tmpfs = Json::object();
  for (const auto& t : s.tmpfs) {
    tmpfs[t] = "";
  }
  // CAP_SYS_ADMIN as in Cloud Run's second-generation environment (the only one jobs use), whose
  // containers may use namespaces and mount file systems (the guest's read-only root needs it).
  Json host{{"NetworkMode", "host"},
            {"Binds", binds},
            {"Tmpfs", tmpfs},
            {"CapAdd", Json::array({"SYS_ADMIN"})}};
  if (s.memory_bytes > 0) {
    host["Memory"] = s.memory_bytes;
  }
  if (s.nano_cpus > 0) {
    host["NanoCpus"] = s.nano_cpus;
  }
  Json body{{"Image", s.image},      {"Env", env},
            {"Labels", s.labels},    {"HostConfig", host},
            {"AttachStdout", false}, {"AttachStderr", false},
            {"Tty", false}};
  if (!s.command.empty()) {
    body["Entrypoint"] = s.command;
    // Kubernetes semantics (which Cloud Run follows): a command without args runs alone.
    body["Cmd"] = s.args;
  } else if (!s.args.empty()) {
    body["Cmd"] = s.args;
  }
  if (!s.working_dir.empty()) {
    body["WorkingDir"] = s.working_dir;
  }
  return body;
}

}  // namespace

void CancelToken::Cancel(const docker::EngineClient& engine) {
  std::string id;
  {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    id = container_;
  }
  if (!id.empty()) {
    engine.Call("POST", "/containers/" + id + "/kill?signal=SIGKILL");
  }
}

bool CancelToken::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

bool CancelToken::SetContainer(const std::string& id) {
  std::lock_guard lock(mu_);
  container_ = id;
  return !cancelled_;
}

void CancelToken::ClearContainer() {
  std::lock_guard lock(mu_);
  container_.clear();
}

void ApplyMountModes(const VolumeMount& m) {
  if (m.file_mode || m.dir_mode || m.uid || m.gid) {
    WalkApply(m.source, m, 0);
  }
}

std::optional<int64_t> ParseMemory(const std::string& q) {
  size_t i = 0;
  while (i < q.size() && (std::isdigit(static_cast<unsigned char>(q[i])) || q[i] == '.')) {
    ++i;
  }
  if (i == 0) {
    return std::nullopt;
  }
  double v = 0;
  try {
    v = std::stod(q.substr(0, i));
  } catch (...) {
    return std::nullopt;
  }
  static const std::map<std::string, double> kUnits = {
      {"", 1},           {"k", 1e3},           {"M", 1e6},
      {"G", 1e9},        {"T", 1e12},          {"Ki", 1024.0},
      {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0}};
  auto it = kUnits.find(q.substr(i));
  if (it == kUnits.end()) {
    return std::nullopt;
  }
  return static_cast<int64_t>(std::llround(v * it->second));
}

std::optional<int64_t> ParseNanoCpus(const std::string& q) {
  if (q.empty()) {
    return std::nullopt;
  }
  const bool milli = q.back() == 'm';
  double v = 0;
  try {
    size_t used = 0;
    v = std::stod(milli ? q.substr(0, q.size() - 1) : q, &used);
    if (used != q.size() - (milli ? 1 : 0) || v <= 0) {
      return std::nullopt;
    }
  } catch (...) {
    return std::nullopt;
  }
  return static_cast<int64_t>(std::llround(v * (milli ? 1e6 : 1e9)));
}

Result<void> Executor::EnsureImage(const std::string& image) {
  if (!docker::ValidImageReference(image)) {
    return Fail(ErrorCode::kInvalidArgument, "Image '" + image + "' is not a valid reference");
  }
  auto present = engine_.Call("GET", "/images/" + image + "/json");
  if (!present) {
    return Fail(present.error());
  }
  if (present->status == 200) {
    return {};
  }
  const auto [repo, tag] = docker::SplitImageReference(image);
  std::string error;
  auto status = engine_.Stream(
      "POST",
      "/images/create?fromImage=" + docker::UrlEncode(repo) + "&tag=" + docker::UrlEncode(tag),
      [&](std::string_view line) {
        const Json j = Json::parse(line, nullptr, false);
        if (j.is_object() && (j.contains("error") || (j.contains("message") && j.size() == 1))) {
          error = j.value("error", j.value("message", std::string()));
        }
      },
      std::chrono::seconds(30));
  if (!status || *status != 200 || !error.empty()) {
    return Fail(ErrorCode::kNotFound, "Image '" + image + "' not found: " +
                                          (!status          ? status.error().message
                                           : !error.empty() ? error
                                                            : docker::EngineMessage("")));
  }
  return {};
}

AttemptResult Executor::Run(const TaskSpec& spec, CancelToken& cancel) {
  AttemptResult r;
  if (cancel.cancelled()) {
    r.cancelled = true;
    r.rpc_code = 1;
    r.message = "The execution was cancelled before the task started.";
    return r;
  }
  // Declared before anything that uses the mounts: destroyed (unmounted, uploads flushed) only
  // after the container is gone.
  std::vector<std::unique_ptr<FuseMount>> fuse;
  TaskSpec effective = spec;
  for (size_t i = 0; i < effective.mounts.size(); ++i) {
    VolumeMount& m = effective.mounts[i];
    if (spec.fuse_storage_url.empty()) {
      ApplyMountModes(m);
      continue;
    }
    const std::string base = spec.fuse_dir + "/" + spec.container_name + "-" + std::to_string(i);
    EnsureDir(spec.fuse_dir, 0755);
    auto mounted =
        FuseMount::Mount(spec.fuse_storage_url, m, base, base + ".cache", base + ".rclone.log");
    if (!mounted) {
      r.rpc_code = 14;
      r.message = "Cloud Storage volume for " + m.target +
                  " could not be mounted: " + mounted.error().message;
      return r;
    }
    m.source = (*mounted)->path();
    fuse.push_back(std::move(*mounted));
  }
  engine_.Call("DELETE", "/containers/" + spec.container_name + "?force=1");
  auto created = engine_.Call("POST", "/containers/create?name=" + spec.container_name,
                              DumpJson(CreateBody(effective)));
  if (!created || created->status != 201) {
    r.rpc_code = 3;
    r.message = "Container could not be created: " +
                (created ? docker::EngineMessage(created->body) : created.error().message);
    return r;
  }
  const std::string id = Json::parse(created->body, nullptr, false).value("Id", "");
  auto remove = [&] { engine_.Call("DELETE", "/containers/" + id + "?force=1"); };
  if (!cancel.SetContainer(id)) {
    remove();
    r.cancelled = true;
    r.rpc_code = 1;
    r.message = "The execution was cancelled before the task started.";
    return r;
  }
  auto started = engine_.Call("POST", "/containers/" + id + "/start");
  if (!started || (started->status != 204 && started->status != 304)) {
    r.rpc_code = 3;
    r.message = "The container failed to start: " +
                (started ? docker::EngineMessage(started->body) : started.error().message);
    cancel.ClearContainer();
    remove();
    return r;
  }
  r.started = true;
  if (cancel.cancelled()) {
    // Cancelled between SetContainer and the start: the kill then found nothing running.
    engine_.Call("POST", "/containers/" + id + "/kill?signal=SIGKILL");
  }
  const auto t0 = Clock::now();
  auto waited = engine_.Call("POST", "/containers/" + id + "/wait", "",
                             std::chrono::duration_cast<std::chrono::milliseconds>(spec.timeout) +
                                 std::chrono::milliseconds(200));
  if (!waited && Clock::now() - t0 >= spec.timeout) {
    engine_.Call("POST", "/containers/" + id + "/kill?signal=SIGKILL");
    waited = engine_.Call("POST", "/containers/" + id + "/wait", "", std::chrono::seconds(30));
    r.timed_out = true;
  }
  cancel.ClearContainer();
  if (!spec.log_path.empty()) {
    if (auto logs = engine_.Call("GET", "/containers/" + id + "/logs?stdout=1&stderr=1")) {
      const std::string text = Demux(logs->body);
      UniqueFd fd(::open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (fd && ::write(fd.Get(), text.data(), text.size()) < 0) {
        Log(LogLevel::kWarn, "gcpemu.log_write_failed", "path={}", spec.log_path);
      }
    }
  }
  // OOMKilled tells a memory kill apart from other SIGKILLs.
  bool oom = false;
  if (auto info = engine_.Call("GET", "/containers/" + id + "/json"); info && info->status == 200) {
    const Json j = Json::parse(info->body, nullptr, false);
    if (j.is_object() && j.contains("State") && j["State"].is_object()) {
      oom = j["State"].value("OOMKilled", false);
    }
  }
  remove();
  if (!waited || waited->status != 200) {
    r.rpc_code = 13;
    r.message = "Lost the container while waiting for it: " +
                (waited ? docker::EngineMessage(waited->body) : waited.error().message);
    return r;
  }
  r.exit_code = Json::parse(waited->body, nullptr, false).value("StatusCode", -1);
  if (r.exit_code > 128) {
    r.term_signal = r.exit_code - 128;
  }
  if (r.timed_out) {
    r.rpc_code = 4;
    r.message = "The configured timeout was reached.";
  } else if (cancel.cancelled()) {
    r.cancelled = true;
    r.rpc_code = 1;
    r.message = "The execution was cancelled.";
  } else if (oom) {
    r.rpc_code = 8;
    r.message = "Memory limit exceeded: the container was killed (out of memory).";
  } else if (r.exit_code != 0) {
    r.rpc_code = 2;
    r.message = "Application exit code: " + std::to_string(r.exit_code);
  }
  return r;
}

void Executor::RemoveLabelled(const std::string& label, const std::string& value) {
  const std::string filter = DumpJson(Json{{"label", Json::array({label + "=" + value})}});
  auto list = engine_.Call("GET", "/containers/json?all=1&filters=" + docker::UrlEncode(filter));
  if (!list || list->status != 200) {
    return;
  }
  const Json arr = Json::parse(list->body, nullptr, false);
  if (!arr.is_array()) {
    return;
  }
  for (const auto& c : arr) {
    if (c.is_object() && c.contains("Id")) {
      engine_.Call("DELETE", "/containers/" + c["Id"].get<std::string>() + "?force=1");
    }
  }
}

}  // namespace agentbox::gcpemu
