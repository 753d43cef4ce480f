#include "backends/cloudrun/cloudrun_backend.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "backends/cloudrun/layout.h"
#include "common/fs_util.h"
#include "common/guarded.h"
#include "common/log.h"
#include "common/strings.h"
#include "http/envelope.h"

namespace agentbox::cloudrun {
namespace {

double NowUnix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Result<std::string> Sha256OfFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Fail(ErrnoError(errno, "read " + path));
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  char buf[1 << 16];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    EVP_DigestUpdate(ctx.get(), buf, static_cast<size_t>(in.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &n);
  std::string hex;
  static const char* kHex = "0123456789abcdef";
  for (unsigned int i = 0; i < n; ++i) {
    hex += kHex[md[i] >> 4];
    hex += kHex[md[i] & 15];
  }
  return hex;
}

Json SpecJson(const SandboxSpec& s) {
  return {{"image", s.image},
          {"env", s.env},
          {"limits", LimitsToJson(s.limits)},
          {"network", NetworkModeName(s.network)},
          {"labels", s.labels},
          {"owner", s.owner},
          {"ttl_s", s.ttl_s},
          {"read_only_root", s.read_only_root}};
}

SandboxSpec SpecFromJson(const Json& j) {
  SandboxSpec s;
  s.image = ValueOr(j, "image", "");
  s.env = ValueOr(j, "env", std::map<std::string, std::string>{});
  s.limits = LimitsFromJson(ValueOr(j, "limits", Json()));
  s.network = NetworkModeFromName(ValueOr(j, "network", "none")).value_or(NetworkMode::kNone);
  s.labels = ValueOr(j, "labels", std::map<std::string, std::string>{});
  s.owner = ValueOr(j, "owner", "");
  s.ttl_s = ValueOr(j, "ttl_s", int64_t{3600});
  s.read_only_root = ValueOr(j, "read_only_root", false);
  return s;
}

// One sentence for a Storage failure seen by Probe.
std::string ProbeReason(const Error& e, const CloudRunOptions& o) {
  switch (e.code) {
    case ErrorCode::kNotFound:
      return "bucket gs://" + o.bucket +
             " does not exist (create it: gcloud storage buckets "
             "create gs://" +
             o.bucket + " --project=" + o.project + " --location=" + o.region + ")";
    case ErrorCode::kForbidden:
      return "no access to bucket gs://" + o.bucket + ": " + e.message +
             " (grant roles/storage.objectAdmin on it)";
    case ErrorCode::kUnauthorized:
      return "no usable Google credentials: " + e.message;
    default:
      return "bucket gs://" + o.bucket + " is not reachable: " + e.message;
  }
}

}  // namespace

CloudRunBackend::CloudRunBackend(CloudRunOptions opts, Cloud cloud, TunnelRegistry* tunnels)
    : opts_(std::move(opts)),
      cloud_(std::move(cloud)),
      work_(io_.get_executor()),
      tunnels_(tunnels) {
  sessions_ = std::make_unique<SessionEngine>(opts_, cloud_, io_);
  guest::FileConfig limits;
  limits.base_dir = layout::kWorkspace;
  files_ = std::make_unique<WorkspaceFiles>(cloud_.store, opts_.state_dir + "/scratch", limits);
  guest_ = std::make_unique<GuestServer>(io_, *sessions_, *files_,
                                         [this](const std::string& t) { return Resolve(t); });
  http::ServerOptions so;
  so.max_body_bytes = 80ull << 20;  // file/write carries up to 64 MiB of content
  so.error_body = [](int status, const std::string& m) { return http::ErrorBody(status, m); };
  server_ = std::make_unique<http::Server>(io_, *guest_, so);
  for (int i = 0; i < 2; ++i) {
    threads_.emplace_back([this] { RunGuarded(io_, "cloudrun.io"); });
  }
  if (tunnels_ != nullptr) {
    monitor_ = std::thread([this] { CallGuarded([this] { Monitor(); }, "cloudrun.monitor"); });
  }
}

CloudRunBackend::~CloudRunBackend() {
  std::vector<std::thread> replacers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    replacers.swap(replacers_);
  }
  monitor_cv_.notify_all();
  if (monitor_.joinable()) {
    monitor_.join();
  }
  for (auto& t : replacers) {
    t.join();
  }
  // Session-mode executions keep running: a restarted daemon registers their tunnels again with
  // the token of the record, and the guests redial.
  if (tunnels_ != nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, l] : live_) {
      tunnels_->Unregister(id);
    }
  }
  server_->Stop();
  sessions_.reset();  // stops polling
  work_.reset();
  io_.stop();
  for (auto& t : threads_) {
    t.join();
  }
  server_.reset();
  guest_.reset();
}

uint64_t CloudRunBackend::GoogleCalls() const {
  return cloud_.store->calls() + cloud_.jobs->calls();
}

Result<void> CloudRunBackend::EnsureServer() {
  std::lock_guard<std::mutex> lock(mu_);
  if (serving_) {
    return {};
  }
  // Scratch space left by a daemon that died mid-request is garbage.
  (void)RemoveTree(opts_.state_dir + "/scratch");
  for (const std::string& d : {opts_.state_dir, opts_.state_dir + "/scratch"}) {
    if (::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) {
      return Fail(ErrnoError(errno, "create " + d));
    }
  }
  auto bound = server_->Listen("unix:" + SocketPath());
  if (!bound) {
    return Fail(bound.error());
  }
  serving_ = true;
  return {};
}

Result<std::string> CloudRunBackend::EnsureGuest() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!guest_dir_.empty()) {
      return guest_dir_;
    }
  }
  auto sha = Sha256OfFile(opts_.guest_binary);
  if (!sha) {
    return Fail(sha.error());
  }
  const std::string dir = layout::GuestDir(*sha);
  const std::string object = dir + "/agentbox-guest";
  auto st = cloud_.store->Stat(object);
  if (!st) {
    if (st.error().code != ErrorCode::kNotFound) {
      return Fail(st.error());
    }
    auto up = cloud_.store->UploadFile(object, opts_.guest_binary, 0);
    if (!up && up.error().code != ErrorCode::kConflict) {  // conflict: someone else uploaded it
      return Fail(up.error());
    }
    Log(LogLevel::kInfo, "cloudrun.guest_uploaded", "object=gs://{}/{}", opts_.bucket, object);
  }
  std::lock_guard<std::mutex> lock(mu_);
  guest_dir_ = dir;
  return dir;
}

ProbeResult CloudRunBackend::Probe() {
  ProbeResult p;
  if (::access(opts_.guest_binary.c_str(), R_OK) != 0) {
    p.reason = "the guest binary " + opts_.guest_binary + " is missing (AGENTBOX_GUEST_BIN)";
    return p;
  }
  if (auto b = cloud_.store->CheckBucket(); !b) {
    p.reason = ProbeReason(b.error(), opts_);
    return p;
  }
  p.usable = true;
  if (opts_.mode == "session") {
    p.limitations = {
        "session mode: one Cloud Run execution per sandbox (a real execution starts in 10-60 s; "
        "the warm pool hides it); processes running when an execution is lost are lost",
        "network 'none' is not enforced: executions have the job's egress"};
  } else {
    p.limitations = {
        "job mode: one Cloud Run execution per command (a real execution starts in "
        "10-60 s)",
        "no background processes, stdin, PTY or live output streaming",
        "network 'none' is not enforced: executions have the job's egress"};
  }
  return p;
}

Capabilities CloudRunBackend::GetCapabilities() const {
  Capabilities c;
  // Made by the guest in each execution (BuildJob; guest/core/read_only_root.h).
  c.read_only_root = true;
  if (opts_.mode == "session") {
    // A long-lived guest reached through the tunnel: everything a local guest does. (Sandboxes
    // created with cloudrun_mode "job" keep job mode's limits, which their calls state.)
    c.claim = true;
    c.shared_state = true;
    // The execution's writable layer is in memory: a replaced execution starts from the image.
    c.root_filesystem = "execution";
    return c;
  }
  c.background_processes = false;
  c.stdin = false;
  c.pty = false;
  c.streaming = false;
  c.persistent_sessions = true;
  c.custom_image = true;
  c.claim = false;
  c.shared_state = true;
  c.guest_process = false;
  c.root_filesystem = "command";  // one execution per command
  c.command_start_allowance_s = std::chrono::duration<double>(opts_.start_timeout)
                                    .count();  // AGENTBOX_CLOUDRUN_START_TIMEOUT_S
  c.disk_limit = "daemon_writes";
  c.disk_limit_note =
      "limits.disk_bytes bounds uploads and file writes made through the API; what commands "
      "write in /workspace during an execution is not bounded (docs/cloudrun.md)";
  return c;
}

Json CloudRunBackend::RecordJson(const Record& r) const {
  return {{"id", r.info.id},
          {"backend", "cloudrun"},
          {"spec", SpecJson(r.info.spec)},
          {"created_at", r.info.created_at},
          {"expires_at", r.info.expires_at},
          {"job_id", r.job_id},
          {"job", cloud_.jobs->parent() + "/jobs/" + r.job_id},
          {"job_guest", r.job_guest},
          {"secret", r.secret},
          {"mode", r.mode},
          {"execution", r.execution},
          {"tunnel_url", r.tunnel_url}};
}

Result<CloudRunBackend::Record> CloudRunBackend::RecordFromJson(const Json& j) const {
  try {
    Record r;
    r.info.id = j.at("id").get<std::string>();
    r.info.backend = "cloudrun";
    r.info.spec = SpecFromJson(j.at("spec"));
    r.info.created_at = ValueOr(j, "created_at", 0.0);
    r.info.expires_at = ValueOr(j, "expires_at", 0.0);
    r.job_id = j.at("job_id").get<std::string>();
    r.job_guest = ValueOr(j, "job_guest", "");
    r.secret = j.at("secret").get<std::string>();
    r.mode = ValueOr(j, "mode", "job");
    r.execution = ValueOr(j, "execution", "");
    r.tunnel_url = ValueOr(j, "tunnel_url", "");
    r.info.spec.run_mode = r.mode;
    r.info.state = SandboxState::kRunning;
    r.info.guest_endpoint = "unix:" + SocketPath();
    r.info.guest_token = r.info.id + ":" + r.secret;
    r.info.detail = "Cloud Run job " + ValueOr(j, "job", r.job_id) + " (one execution per command)";
    return r;
  } catch (const Json::exception& e) {
    return Fail(ErrorCode::kInternal, std::string("sandbox record is malformed: ") + e.what());
  }
}

Result<CloudRunBackend::Record> CloudRunBackend::ReadRecord(const std::string& id) {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));
  }
  auto obj = cloud_.store->Read(layout::RecordObject(id));
  if (!obj) {
    if (obj.error().code == ErrorCode::kNotFound) {
      return Fail(SandboxNotFound(id));
    }
    return Fail(obj.error());
  }
  auto j = ParseJsonObject(obj->data);
  if (!j) {
    return Fail(ErrorCode::kInternal, "sandbox '" + id + "': record gs://" + opts_.bucket + "/" +
                                          layout::RecordObject(id) + " is not JSON");
  }
  auto r = RecordFromJson(*j);
  if (r) {
    r->generation = obj->meta.generation;
  }
  return r;
}

Result<SandboxInfo> CloudRunBackend::Create(const std::string& id, const SandboxSpec& spec) {
  if (auto v = ValidateCreate(id, spec); !v) {
    return Fail(v.error());
  }
  if (auto s = EnsureServer(); !s) {
    return Fail(s.error());
  }
  auto guest_dir = EnsureGuest();
  if (!guest_dir) {
    return Fail(guest_dir.error());
  }
  auto job = BuildJob(opts_, id, spec, *guest_dir);
  if (!job) {
    return Fail(job.error());
  }
  Record r;
  r.info.id = id;
  r.info.backend = "cloudrun";
  r.info.spec = spec;
  if (r.info.spec.image.empty()) {
    r.info.spec.image = opts_.default_image;
  }
  r.info.created_at = NowUnix();
  r.info.expires_at = r.info.created_at + static_cast<double>(spec.ttl_s);
  r.job_id = layout::JobId(id);
  r.job_guest = *guest_dir;
  r.secret = RandomId(48);
  r.mode = spec.run_mode.empty() ? opts_.mode : spec.run_mode;
  r.tunnel_url = r.mode == "session" ? TunnelUrl(opts_.public_url) : "";
  r.info.spec.run_mode = r.mode;
  if (r.mode == "session") {
    return CreateSession(std::move(r), *job);
  }
  auto written = cloud_.store->Insert(layout::RecordObject(id), DumpJson(RecordJson(r)), 0);
  if (!written) {
    if (written.error().code == ErrorCode::kConflict) {
      return Fail(ErrorCode::kConflict, "sandbox '" + id + "' already exists");
    }
    return Fail(written.error());
  }
  auto created = cloud_.jobs->CreateJob(r.job_id, *job);
  if (!created && created.error().code == ErrorCode::kConflict) {
    // A retried create (deterministic id) or a job left by a crash: adopt it only if it is
    // this sandbox's.
    auto existing = cloud_.jobs->GetJob(r.job_id);
    const bool ours =
        existing && existing->is_object() && existing->contains("labels") &&
        ValueOr((*existing)["labels"], "agentbox-sandbox", "") == layout::LabelValue(id);
    if (ours) {
      created = {};
    }
  }
  if (!created) {
    (void)cloud_.store->Delete(layout::RecordObject(id));
    return Fail(created.error().code,
                "cloudrun: creating job " + r.job_id + " failed: " + created.error().message);
  }
  Log(LogLevel::kInfo, "cloudrun.created", "id={} job={} image={}", id, r.job_id,
      r.info.spec.image);
  auto out = RecordFromJson(RecordJson(r));
  return out ? Result<SandboxInfo>(out->info) : Fail(out.error());
}

Result<SandboxInfo> CloudRunBackend::Get(const std::string& id) {
  if (auto s = EnsureServer(); !s) {
    return Fail(s.error());
  }
  auto r = ReadRecord(id);
  if (!r) {
    return Fail(r.error());
  }
  if (r->mode == "session") {
    if (auto a = AttachSession(*r); !a) {
      return Fail(a.error());
    }
  }
  return r->info;
}

Result<std::vector<SandboxInfo>> CloudRunBackend::List() {
  if (auto s = EnsureServer(); !s) {
    return Fail(s.error());
  }
  auto all = ListAll(*cloud_.store, "sandboxes/", "/");
  if (!all) {
    return Fail(all.error());
  }
  std::vector<SandboxInfo> out;
  for (const auto& p : all->prefixes) {
    std::string id = p.substr(std::string("sandboxes/").size());
    if (!id.empty() && id.back() == '/') {
      id.pop_back();
    }
    auto r = ReadRecord(id);
    if (r && r->mode == "session") {
      if (auto a = AttachSession(*r); !a) {
        Log(LogLevel::kWarn, "cloudrun.attach_failed", "id={} error=\"{}\"", id, a.error().message);
      }
    }
    if (r) {
      out.push_back(r->info);
    } else if (r.error().code != ErrorCode::kNotFound) {
      return Fail(r.error());
    }
  }
  std::sort(out.begin(), out.end(), CreatedBefore);
  return out;
}

Result<void> CloudRunBackend::Destroy(const std::string& id) {
  auto r = ReadRecord(id);
  if (!r) {
    return Fail(r.error());
  }
  sessions_->CancelAll(SandboxRef{id, r->job_id, r->job_guest, {}, std::nullopt});
  if (r->mode == "session") {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = live_.find(id); it != live_.end()) {
        it->second.destroying = true;
      }
    }
    CancelExecutions(r->job_id);
    if (tunnels_ != nullptr) {
      tunnels_->Unregister(id);
    }
  }
  if (auto d = cloud_.jobs->DeleteJob(r->job_id); !d && d.error().code != ErrorCode::kNotFound) {
    return Fail(d.error());
  }
  for (const std::string& prefix : {layout::WorkspacePrefix(id), layout::SessionsPrefix(id)}) {
    if (auto d = cloud_.store->DeletePrefix(prefix); !d) {
      return Fail(d.error());
    }
  }
  // The record goes last: a destroy that failed midway is retried from it.
  if (auto d = cloud_.store->DeletePrefix(layout::SandboxPrefix(id)); !d) {
    return Fail(d.error());
  }
  std::lock_guard<std::mutex> lock(mu_);
  tokens_.erase(id);
  live_.erase(id);
  Log(LogLevel::kInfo, "cloudrun.destroyed", "id={} job={}", id, r->job_id);
  return {};
}

Result<void> CloudRunBackend::SetExpiry(const std::string& id, double expires_at) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto r = ReadRecord(id);
    if (!r) {
      return Fail(r.error());
    }
    r->info.expires_at = expires_at;
    auto w =
        cloud_.store->Insert(layout::RecordObject(id), DumpJson(RecordJson(*r)), r->generation);
    if (w) {
      return {};
    }
    if (w.error().code != ErrorCode::kConflict) {
      return Fail(w.error());
    }
  }
  return Fail(ErrorCode::kConflict, "sandbox '" + id + "': its record kept changing; try again");
}

Result<SandboxRef> CloudRunBackend::Resolve(const std::string& token) {
  const size_t colon = token.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Fail(ErrorCode::kUnauthorized, "missing or wrong X-Access-Token");
  }
  const std::string id = token.substr(0, colon);
  const std::string secret = token.substr(colon + 1);
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tokens_.find(id);
    // Re-read after a while: another replica may have destroyed the sandbox.
    if (it != tokens_.end() && now - it->second.at < std::chrono::seconds(10)) {
      if (!SecretEquals(it->second.secret, secret)) {
        return Fail(ErrorCode::kUnauthorized, "missing or wrong X-Access-Token");
      }
      return it->second.ref;
    }
  }
  auto r = ReadRecord(id);
  if (!r) {
    return Fail(r.error());
  }
  if (!SecretEquals(r->secret, secret)) {
    return Fail(ErrorCode::kUnauthorized, "missing or wrong X-Access-Token");
  }
  auto guest = EnsureGuest();  // uploaded once; later calls answer from memory
  if (!guest) {
    return Fail(guest.error());
  }
  SandboxRef ref{id, r->job_id, r->job_guest, *guest,
                 r->info.spec.limits.disk_bytes ? r->info.spec.limits.disk_bytes
                                                : opts_.default_limits.disk_bytes};
  std::lock_guard<std::mutex> lock(mu_);
  tokens_[id] = Cached{ref, r->secret, now};
  return ref;
}

}  // namespace agentbox::cloudrun
