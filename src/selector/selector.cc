#include "selector/selector.h"

#include <algorithm>
#include <exception>

#include "common/log.h"
#include "common/strings.h"
#include "selector/rollout.h"

namespace agentbox::selector {
namespace {

using Clock = std::chrono::steady_clock;

// FNV-1a, 64 bit: stable across processes and builds, enough to tell two configurations apart.
std::string StableHash(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

bool IsKnown(const std::vector<std::string>& known, const std::string& name) {
  return name == "cloudrun" || std::find(known.begin(), known.end(), name) != known.end();
}

const std::vector<double>& SelectionBuckets() {
  static const std::vector<double> b = {0.0001, 0.0005, 0.001, 0.0025, 0.005,
                                        0.01,   0.025,  0.05,  0.1,    0.5};
  return b;
}

// The rollout settings (rollout.md). A value that does not parse is recorded in `s.errors` and
// replaced by the safe choice: no subject enrolled (percentage 0), kill switch off.
void ParseRollout(const Config& cfg, const std::vector<std::string>& known, Settings& s) {
  Rollout& r = s.rollout;
  std::string pct_key;
  if (s.use_cloudrun) {
    r.backend = "cloudrun";
    r.group = "USE_CLOUDRUN_JOBS_SANDBOX";
    pct_key = "CLOUDRUN_JOBS_ROLLOUT_PERCENTAGE";
    if (cfg.Get("AGENTBOX_ROLLOUT_BACKEND")) {
      s.errors["AGENTBOX_ROLLOUT_BACKEND"] =
          "AGENTBOX_ROLLOUT_BACKEND is ignored while USE_CLOUDRUN_JOBS_SANDBOX is on";
    }
  } else if (auto name = cfg.Get("AGENTBOX_ROLLOUT_BACKEND"); name && !name->empty()) {
    r.backend = AsciiLower(*name);
    r.group = "AGENTBOX_ROLLOUT_BACKEND";
    pct_key = "AGENTBOX_ROLLOUT_PERCENTAGE";
    if (!IsKnown(known, r.backend)) {
      s.errors["AGENTBOX_ROLLOUT_BACKEND"] =
          "AGENTBOX_ROLLOUT_BACKEND names '" + *name + "', which is not a backend; no rollout";
      r.backend.clear();
    }
  }
  if (r.backend.empty()) {
    return;
  }
  r.percentage_source = pct_key;
  if (auto pct = cfg.GetInt(pct_key, 100, 0, 100)) {
    r.percentage = static_cast<int>(*pct);
  } else {
    r.percentage = 0;
    s.errors[pct_key] = pct.error().message + "; enrolling nobody (0%)";
  }
  r.group = cfg.GetOr("AGENTBOX_ROLLOUT_GROUP", r.group);
  const std::string unkeyed = AsciiLower(cfg.GetOr("AGENTBOX_ROLLOUT_UNKEYED", "not_enrolled"));
  if (unkeyed == "random") {
    r.unkeyed_random = true;
  } else if (unkeyed != "not_enrolled") {
    s.errors["AGENTBOX_ROLLOUT_UNKEYED"] = "AGENTBOX_ROLLOUT_UNKEYED=" + unkeyed +
                                           " is not random or not_enrolled; using not_enrolled";
  }
  if (auto kill = cfg.GetBool("AGENTBOX_ROLLOUT_KILL_SWITCH", false)) {
    r.kill_switch = *kill;
  } else {
    // An unreadable kill switch is taken as on: the safe reading of an operator's intent.
    r.kill_switch = true;
    s.errors["AGENTBOX_ROLLOUT_KILL_SWITCH"] =
        "AGENTBOX_ROLLOUT_KILL_SWITCH=" + cfg.GetOr("AGENTBOX_ROLLOUT_KILL_SWITCH", "") +
        " is not a boolean; treated as on";
  }
}

void ParseBreaker(const Config& cfg, Settings& s) {
  BreakerSettings& b = s.breaker;
  auto num = [&](const char* key, int64_t def, int64_t min, int64_t max) -> int64_t {
    auto v = cfg.GetInt(key, def, min, max);
    if (!v) {
      s.errors[key] = v.error().message + "; using " + std::to_string(def);
      return def;
    }
    return *v;
  };
  auto rate = [&](const char* key, double def) -> double {
    const std::string text = cfg.GetOr(key, "");
    if (text.empty()) {
      return def;
    }
    try {
      size_t used = 0;
      const double v = std::stod(text, &used);
      if (used == text.size() && v >= 0 && v <= 1) {
        return v;
      }
    } catch (const std::exception&) {
    }
    s.errors[key] = std::string(key) + "=" + text + " is not a fraction between 0 and 1; using " +
                    fmt::format("{}", def);
    return def;
  };
  if (auto on = cfg.GetBool("AGENTBOX_BREAKER", true)) {
    b.enabled = *on;
  } else {
    s.errors["AGENTBOX_BREAKER"] = "AGENTBOX_BREAKER=" + cfg.GetOr("AGENTBOX_BREAKER", "") +
                                   " is not a boolean; the breaker stays on";
  }
  b.window = std::chrono::milliseconds(num("AGENTBOX_BREAKER_WINDOW_MS", 30000, 10, 86400000));
  b.min_samples = static_cast<int>(num("AGENTBOX_BREAKER_MIN_SAMPLES", 20, 1, 1000000));
  b.max_error_rate = rate("AGENTBOX_BREAKER_ERROR_RATE", 0.25);
  b.max_over_baseline = rate("AGENTBOX_BREAKER_OVER_BASELINE", 0.10);
  b.windows = static_cast<int>(num("AGENTBOX_BREAKER_WINDOWS", 2, 1, 1000));
  b.cooldown = std::chrono::milliseconds(num("AGENTBOX_BREAKER_COOLDOWN_MS", 60000, 0, 86400000));
  b.half_open_sandboxes = static_cast<int>(num("AGENTBOX_BREAKER_HALF_OPEN", 3, 1, 1000));
  b.max_p99 = std::chrono::milliseconds(num("AGENTBOX_BREAKER_P99_MS", 0, 0, 86400000));
  if (auto text = cfg.Get("AGENTBOX_BREAKER_P99_OVER_BASELINE")) {
    try {
      size_t used = 0;
      const double v = std::stod(*text, &used);
      if (used != text->size() || !(v == 0 || (v >= 1 && v <= 1000))) {
        throw std::invalid_argument("range");
      }
      b.max_p99_over_baseline = v;
    } catch (const std::exception&) {
      s.errors["AGENTBOX_BREAKER_P99_OVER_BASELINE"] =
          "AGENTBOX_BREAKER_P99_OVER_BASELINE=" + *text +
          " is not 0 (off) or a factor between 1 and 1000; the latency check against the "
          "baseline stays off";
    }
  }
  b.latency_op = cfg.GetOr("AGENTBOX_BREAKER_LATENCY_OP", "shell/exec");
}

}  // namespace

std::string ImplementationName(const std::string& backend) {
  if (backend == "docker") {
    return "DockerSandbox";
  }
  if (backend == "cloudrun") {
    return "CloudRunJobsSandbox";
  }
  if (backend == "jail") {
    return "JailSandbox";
  }
  return backend;
}

const std::vector<std::string>& Settings::Keys() {
  static const std::vector<std::string> keys = {"SANDBOX_BACKEND",
                                                "USE_CLOUDRUN_JOBS_SANDBOX",
                                                "SANDBOX_GCP_PROJECT",
                                                "SANDBOX_GCP_REGION",
                                                "SANDBOX_GCS_BUCKET",
                                                "CLOUDRUN_JOBS_ROLLOUT_PERCENTAGE",
                                                "AGENTBOX_FALLBACK_CHAIN",
                                                "AGENTBOX_PROBE_TTL_MS",
                                                "AGENTBOX_ROLLOUT_BACKEND",
                                                "AGENTBOX_ROLLOUT_PERCENTAGE",
                                                "AGENTBOX_ROLLOUT_GROUP",
                                                "AGENTBOX_ROLLOUT_UNKEYED",
                                                "AGENTBOX_ROLLOUT_KILL_SWITCH",
                                                "AGENTBOX_BREAKER",
                                                "AGENTBOX_BREAKER_WINDOW_MS",
                                                "AGENTBOX_BREAKER_MIN_SAMPLES",
                                                "AGENTBOX_BREAKER_ERROR_RATE",
                                                "AGENTBOX_BREAKER_OVER_BASELINE",
                                                "AGENTBOX_BREAKER_WINDOWS",
                                                "AGENTBOX_BREAKER_COOLDOWN_MS",
                                                "AGENTBOX_BREAKER_HALF_OPEN",
                                                "AGENTBOX_BREAKER_P99_MS",
                                                "AGENTBOX_BREAKER_P99_OVER_BASELINE",
                                                "AGENTBOX_BREAKER_LATENCY_OP"};
  return keys;
}

Settings Settings::FromConfig(const Config& cfg, const std::vector<std::string>& known) {
  Settings s;
  s.known_backends = known;
  s.requested_backend = AsciiLower(cfg.GetOr("SANDBOX_BACKEND", "docker"));
  s.requested_backend.erase(0, s.requested_backend.find_first_not_of(" \t"));
  s.requested_backend.erase(s.requested_backend.find_last_not_of(" \t") + 1);
  if (s.requested_backend.empty()) {
    s.requested_backend = "docker";
  }
  s.requested_source = cfg.SourceOf("SANDBOX_BACKEND");
  if (s.requested_source.empty()) {
    s.requested_source = "default";
  }
  if (auto flag = cfg.GetBool("USE_CLOUDRUN_JOBS_SANDBOX", false)) {
    s.use_cloudrun = *flag;
  } else {
    s.errors["USE_CLOUDRUN_JOBS_SANDBOX"] =
        "USE_CLOUDRUN_JOBS_SANDBOX=" + cfg.GetOr("USE_CLOUDRUN_JOBS_SANDBOX", "") +
        " is not a boolean; treated as false";
  }
  s.gcp_project = cfg.GetOr("SANDBOX_GCP_PROJECT", "");
  s.gcp_region = cfg.GetOr("SANDBOX_GCP_REGION", "us-central1");
  if (s.gcp_region.empty()) {
    s.gcp_region = "us-central1";
  }
  s.gcs_bucket = cfg.GetOr("SANDBOX_GCS_BUCKET", "");
  if (s.gcs_bucket.empty() && !s.gcp_project.empty()) {
    s.gcs_bucket = s.gcp_project + "-sandbox-state";
  }
  s.fallback_chain = s.known_backends;
  if (cfg.Get("AGENTBOX_FALLBACK_CHAIN")) {
    std::vector<std::string> chain;
    for (const auto& name : cfg.GetList("AGENTBOX_FALLBACK_CHAIN")) {
      if (!IsKnown(known, AsciiLower(name))) {
        s.errors["AGENTBOX_FALLBACK_CHAIN"] = "AGENTBOX_FALLBACK_CHAIN names '" + name +
                                              "', which is not a backend; using " +
                                              Join(s.known_backends, ",");
        chain.clear();
        break;
      }
      chain.push_back(AsciiLower(name));
    }
    if (!s.errors.count("AGENTBOX_FALLBACK_CHAIN")) {
      s.fallback_chain = chain;  // may be empty: no fallback at all
    }
  }
  if (auto ttl = cfg.GetInt("AGENTBOX_PROBE_TTL_MS", 2000, 0, 600000)) {
    s.probe_ttl = std::chrono::milliseconds(*ttl);
  } else {
    s.errors["AGENTBOX_PROBE_TTL_MS"] = ttl.error().message + "; using 2000";
  }
  ParseRollout(cfg, known, s);
  ParseBreaker(cfg, s);
  const Rollout& r = s.rollout;
  const BreakerSettings& b = s.breaker;
  std::string all = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", s.requested_backend,
                                s.use_cloudrun, s.gcp_project, s.gcp_region, s.gcs_bucket,
                                Join(s.fallback_chain, ","), s.probe_ttl.count(), r.backend,
                                r.percentage, r.group, r.unkeyed_random, r.kill_switch);
  all += fmt::format("|{}|{}|{}|{}|{}|{}|{}|{}", b.enabled, b.window.count(), b.min_samples,
                     b.max_error_rate, b.max_over_baseline, b.windows, b.cooldown.count(),
                     b.half_open_sandboxes);
  for (const auto& [k, v] : s.errors) {
    all += "|" + k + "=" + v;
  }
  s.hash = StableHash(all);
  return s;
}

Selector::Selector(std::map<std::string, SandboxBackend*> backends,
                   std::map<std::string, std::string> config_errors, Settings settings,
                   Metrics* metrics)
    : backends_(std::move(backends)),
      config_errors_(std::move(config_errors)),
      settings_(std::make_shared<const Settings>(std::move(settings))),
      metrics_(metrics) {
  if (metrics_) {
    metrics_->Describe("agentbox_selection_total", "counter",
                       "Backend decisions for new sandboxes, by chosen backend and reason.");
    metrics_->Describe("agentbox_selection_duration_seconds", "histogram",
                       "Time to decide the backend of a new sandbox.");
    metrics_->Describe("agentbox_fallback_total", "counter",
                       "Decisions that fell back from the requested backend, with why.");
    metrics_->Describe("agentbox_config_info", "gauge",
                       "The selection settings in force (version label), always 1.");
    metrics_->Set("agentbox_config_info", {{"version", ConfigVersion()}}, 1);
    metrics_->Describe("agentbox_breaker_state", "gauge",
                       "The rollout candidate's breaker: 0 closed, 1 open, 2 half-open.");
  }
  breaker_.SetOnChange([this](const std::string& candidate, BreakerState state,
                              const std::string& why) {
    if (metrics_) {
      metrics_->Set("agentbox_breaker_state", {{"backend", candidate}}, static_cast<double>(state));
    }
    Log(state == BreakerState::kOpen ? LogLevel::kError : LogLevel::kWarn, "breaker.state",
        "backend={} state={} why=\"{}\"", candidate, BreakerStateName(state), why);
  });
  ConfigureBreaker(*settings_);
}

void Selector::ConfigureBreaker(const Settings& s) {
  breaker_.Configure(s.breaker, s.rollout.backend, s.requested_backend);
  if (metrics_) {
    const Breaker::Status st = breaker_.GetStatus();
    metrics_->ResetGauge("agentbox_breaker_state");
    if (st.enabled) {
      metrics_->Set("agentbox_breaker_state", {{"backend", st.candidate}},
                    static_cast<double>(st.state));
    }
  }
}

void Selector::Record(const std::string& backend, bool ok, const std::string& op, double seconds) {
  breaker_.Record(backend, ok, op, seconds);
}

std::shared_ptr<const Settings> Selector::settings() const {
  std::lock_guard<std::mutex> lock(settings_mu_);
  return settings_;
}

std::string Selector::ConfigVersion() const {
  std::lock_guard<std::mutex> lock(settings_mu_);
  return "v" + std::to_string(version_) + "-" + settings_->hash.substr(0, 12);
}

void Selector::Reload(Settings settings) {
  auto next = std::make_shared<const Settings>(std::move(settings));
  std::string old_version;
  std::string new_version;
  {
    std::lock_guard<std::mutex> lock(settings_mu_);
    old_version = "v" + std::to_string(version_) + "-" + settings_->hash.substr(0, 12);
    settings_ = next;
    ++version_;
    new_version = "v" + std::to_string(version_) + "-" + settings_->hash.substr(0, 12);
  }
  ForgetProbes();
  ConfigureBreaker(*next);
  if (metrics_) {
    metrics_->ResetGauge("agentbox_config_info");
    metrics_->Set("agentbox_config_info", {{"version", new_version}}, 1);
  }
  Log(LogLevel::kInfo, "selection.reloaded", "from={} to={} requested={}", old_version, new_version,
      next->requested_backend);
}

void Selector::ForgetProbes() {
  std::lock_guard<std::mutex> lock(probe_mu_);
  probe_cache_.clear();
}

ProbeView Selector::ProbeCached(const std::string& name, SandboxBackend* b,
                                std::string* error_code) {
  const auto ttl = settings()->probe_ttl;
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> lock(probe_mu_);
    auto it = probe_cache_.find(name);
    if (it != probe_cache_.end() && now - it->second.at < ttl) {
      const ProbeResult& r = it->second.result;
      *error_code = r.usable ? "" : kProviderNotReady;
      return {r.usable, r.reason, r.limitations,
              std::chrono::duration<double>(now - it->second.at).count()};
    }
  }
  ProbeResult r;
  try {
    r = b->Probe();
    *error_code = r.usable ? "" : kProviderNotReady;
  } catch (const std::exception& e) {
    r = ProbeResult{false, std::string("probe failed unexpectedly: ") + e.what(), {}};
    *error_code = kGeneral;
  } catch (...) {
    r = ProbeResult{false, "probe failed unexpectedly", {}};
    *error_code = kGeneral;
  }
  if (!r.usable && r.reason.empty()) {
    r.reason = "the backend reports itself unusable without saying why";
  }
  if (*error_code != kGeneral) {  // an exception is not a result worth caching
    std::lock_guard<std::mutex> lock(probe_mu_);
    probe_cache_[name] = CachedProbe{r, now};
  }
  return {r.usable, r.reason, r.limitations, 0};
}

std::map<std::string, ProbeView> Selector::ProbeAll() {
  std::map<std::string, ProbeView> out;
  for (const auto& [name, b] : backends_) {
    std::string error_code;
    out[name] = ProbeCached(name, b, &error_code);
  }
  return out;
}

Decision Selector::Decide(const SelectRequest& req, bool consume, const Exclusion& exclude) {
  const auto start = Clock::now();
  std::shared_ptr<const Settings> s = settings();
  Decision d;
  d.config_version = ConfigVersion();
  bool strict = false;
  const char* rollout_reason = nullptr;  // what decided, when a rollout applied
  std::string rollout_detail;
  const Rollout& ro = s->rollout;
  if (!req.pinned_backend.empty()) {
    d.requested_backend = req.pinned_backend;
    d.rule_id = "pin";
    strict = true;  // an explicit pin never silently lands elsewhere
  } else if (!ro.backend.empty() && ro.backend != s->requested_backend) {
    d.requested_backend = s->requested_backend;
    if (ro.kill_switch) {
      rollout_reason = kDisabled;
      rollout_detail = "the rollout of " + ro.backend + " is off (AGENTBOX_ROLLOUT_KILL_SWITCH)";
    } else if (ro.percentage >= 100 || ro.percentage <= 0) {
      // Everyone or no one: no bucket decides.
      d.requested_backend = ro.percentage >= 100 ? ro.backend : s->requested_backend;
      rollout_detail = ro.percentage >= 100 ? ro.percentage_source + "=100: " + ro.backend
                                            : ro.percentage_source + "=0: " + s->requested_backend;
    } else if (req.subject.empty() && !ro.unkeyed_random) {
      rollout_reason = kDefault;
      d.error_code = kTargetingKeyMissing;
      rollout_detail = "no subject to place in the " + std::to_string(ro.percentage) +
                       "% rollout of " + ro.backend + "; not enrolled";
    } else {
      const std::string subject = req.subject.empty() ? RandomId(16) : req.subject;
      d.bucket = NormalizedBucket(ro.group, subject);
      const bool in = Enrolled(ro.percentage, *d.bucket);
      d.requested_backend = in ? ro.backend : s->requested_backend;
      d.rule_id = "rollout:" + ro.group;
      rollout_reason = kSplit;
      rollout_detail =
          fmt::format("{} in bucket {} of the {}% rollout of {} ({}): {}",
                      req.subject.empty() ? "a random subject" : "the subject", *d.bucket,
                      ro.percentage, ro.backend, ro.group, in ? "enrolled" : "not enrolled");
    }
  } else {
    d.requested_backend = s->requested_backend;
  }
  if (!strict && !ro.backend.empty() && d.requested_backend == ro.backend) {
    // An enrolled subject: the candidate's breaker may roll it back to the baseline.
    const Breaker::Verdict v = breaker_.Admit(consume);
    if (!v.allow) {
      d.requested_backend = s->requested_backend;
      rollout_reason = kAutoRollback;
      rollout_detail = v.why;
    }
  }
  d.fallback_chain.push_back(d.requested_backend);
  if (!strict) {
    // A rollout candidate that cannot take the sandbox falls back to the baseline first.
    if (!ro.backend.empty() && d.requested_backend != s->requested_backend) {
      d.fallback_chain.push_back(s->requested_backend);
    }
    for (const auto& name : s->fallback_chain) {
      if (std::find(d.fallback_chain.begin(), d.fallback_chain.end(), name) ==
          d.fallback_chain.end()) {
        d.fallback_chain.push_back(name);
      }
    }
  }
  for (const auto& name : d.fallback_chain) {
    Skip skip{name, "", ""};
    if (std::find(exclude.backends.begin(), exclude.backends.end(), name) !=
        exclude.backends.end()) {
      skip.error_code = kExcluded;
      skip.message = name + " is excluded" + (exclude.why.empty() ? "" : ": " + exclude.why);
    } else if (name == "cloudrun" && s->gcp_project.empty()) {
      skip.error_code = kInvalidConfig;
      skip.message = "SANDBOX_GCP_PROJECT is empty; the cloudrun backend needs a project";
    } else if (auto ce = config_errors_.find(name); ce != config_errors_.end()) {
      skip.error_code = kInvalidConfig;
      skip.message = ce->second;
    } else if (auto it = backends_.find(name); it == backends_.end()) {
      if (IsKnown(s->known_backends, name)) {
        skip.error_code = kProviderNotReady;
        skip.message = "the " + name + " backend is not available in this agentboxd";
      } else {
        skip.error_code = kInvalidConfig;
        skip.message = "'" + name + "' is not a backend (SANDBOX_BACKEND from " +
                       s->requested_source + "); known: " + Join(s->known_backends, ", ");
      }
    } else {
      std::string code;
      ProbeView p = ProbeCached(name, it->second, &code);
      d.probes[name] = p;
      if (p.usable) {
        d.backend = name;
        break;
      }
      skip.error_code = code;
      skip.message = name + ": " + p.reason;
    }
    d.skipped.push_back(std::move(skip));
  }
  // The first skipped candidate is the requested one whenever we did not get it.
  if (d.backend.empty()) {
    d.reason = kError;
    d.error_code = d.skipped.empty() ? std::string(kGeneral) : d.skipped.front().error_code;
    std::vector<std::string> why;
    for (const auto& sk : d.skipped) {
      why.push_back(sk.message);
    }
    d.detail = "no usable backend: " + Join(why, "; ");
  } else if (d.backend != d.requested_backend) {
    d.reason = kFallback;
    d.error_code = d.skipped.front().error_code;
    d.detail = d.skipped.front().message + "; using " + d.backend;
  } else if (strict) {
    d.reason = kTargetingMatch;
    d.detail = "the caller pinned " + d.backend;
  } else if (!s->errors.empty()) {
    // We got the configured backend, but only by ignoring a setting that did not parse.
    d.reason = kFallback;
    d.error_code = kParseError;
    d.detail = s->errors.begin()->second;
  } else if (rollout_reason != nullptr) {
    d.reason = rollout_reason;
    d.detail = rollout_detail;
  } else if (!rollout_detail.empty()) {
    d.reason = kDefault;
    d.detail = rollout_detail;
  } else if (backends_.size() == 1 && config_errors_.empty()) {
    d.reason = kStatic;
    d.detail = "only " + d.backend + " is available";
  } else {
    d.reason = kDefault;
    d.detail = "SANDBOX_BACKEND=" + d.backend + " (" + s->requested_source + ")";
  }
  d.duration_s = std::chrono::duration<double>(Clock::now() - start).count();
  return d;
}

Decision Selector::Select(const SelectRequest& req, const Exclusion& exclude) {
  Decision d;
  try {
    d = Decide(req, /*consume=*/true, exclude);
  } catch (const std::exception& e) {
    // Selection itself must never take the daemon down: fall back to the last backend that
    // exists, the most conservative choice, and say so.
    d = Decision{};
    std::shared_ptr<const Settings> s = settings();
    d.requested_backend = req.pinned_backend.empty() ? s->requested_backend : req.pinned_backend;
    d.config_version = ConfigVersion();
    d.error_code = kGeneral;
    for (const auto& name : s->fallback_chain) {
      if (req.pinned_backend.empty() && backends_.count(name)) {
        d.backend = name;
        break;
      }
    }
    d.reason = d.backend.empty() ? kError : kFallback;
    d.detail = std::string("selection failed: ") + e.what() +
               (d.backend.empty() ? "" : "; using " + d.backend + " without a probe");
  }
  const std::string chosen = d.backend.empty() ? "none" : d.backend;
  if (metrics_) {
    metrics_->Increment("agentbox_selection_total", {{"backend", chosen}, {"reason", d.reason}});
    metrics_->Observe("agentbox_selection_duration_seconds", {}, d.duration_s, SelectionBuckets());
    if (d.reason == kFallback || d.reason == kError) {
      metrics_->Increment("agentbox_fallback_total",
                          {{"from", d.requested_backend},
                           {"to", chosen},
                           {"error_code", d.error_code.value_or(kGeneral)}});
    }
  }
  const LogLevel level = d.reason == kError      ? LogLevel::kError
                         : d.reason == kFallback ? LogLevel::kWarn
                                                 : LogLevel::kInfo;
  Log(level, "selection.decision",
      "backend={} reason={} error_code={} requested={} chain={} config_version={} subject={} "
      "us={:.0f} detail=\"{}\"",
      chosen, d.reason, d.error_code.value_or("-"), d.requested_backend,
      Join(d.fallback_chain, ","), d.config_version, req.subject.empty() ? "-" : req.subject,
      d.duration_s * 1e6, d.detail);
  return d;
}

Decision Selector::Preview() {
  try {
    return Decide({}, /*consume=*/false);
  } catch (const std::exception& e) {
    Decision d;
    d.reason = kError;
    d.error_code = kGeneral;
    d.detail = std::string("selection failed: ") + e.what();
    return d;
  }
}

Json Selector::DecisionJson(const Decision& d) {
  Json probes = Json::object();
  for (const auto& [name, p] : d.probes) {
    probes[name] = {{"usable", p.usable},
                    {"reason", p.reason},
                    {"limitations", p.limitations},
                    {"age_s", p.age_s}};
  }
  Json skipped = Json::array();
  for (const auto& s : d.skipped) {
    skipped.push_back(
        {{"backend", s.backend}, {"error_code", s.error_code}, {"message", s.message}});
  }
  Json j = {{"backend", d.backend.empty() ? Json(nullptr) : Json(d.backend)},
            {"reason", d.reason},
            {"error_code", d.error_code ? Json(*d.error_code) : Json(nullptr)},
            {"requested_backend", d.requested_backend},
            {"fallback_chain", d.fallback_chain},
            {"skipped", skipped},
            {"probes", probes},
            {"config_version", d.config_version},
            {"detail", d.detail}};
  if (!d.rule_id.empty()) {
    j["rule_id"] = d.rule_id;
  }
  if (d.bucket) {
    j["bucket"] = *d.bucket;
  }
  return j;
}

Json Selector::InfoJson(const Decision& d) const {
  std::shared_ptr<const Settings> s = settings();
  Json j = DecisionJson(d);
  // The original get_sandbox_info() keys, kept as a subset.
  j["implementation"] = d.backend.empty() ? Json(nullptr) : Json(ImplementationName(d.backend));
  j["feature_flag_enabled"] = s->use_cloudrun;
  j["config"] = {
      {"project_id", s->gcp_project}, {"region", s->gcp_region}, {"bucket", s->gcs_bucket}};
  Json settings = {
      {"SANDBOX_BACKEND", {{"value", s->requested_backend}, {"source", s->requested_source}}},
      {"USE_CLOUDRUN_JOBS_SANDBOX", s->use_cloudrun},
      {"AGENTBOX_FALLBACK_CHAIN", s->fallback_chain},
      {"AGENTBOX_PROBE_TTL_MS", s->probe_ttl.count()}};
  if (!s->rollout.backend.empty()) {
    settings["rollout"] = {{"backend", s->rollout.backend},
                           {"percentage", s->rollout.percentage},
                           {"percentage_key", s->rollout.percentage_source},
                           {"group", s->rollout.group},
                           {"unkeyed", s->rollout.unkeyed_random ? "random" : "not_enrolled"},
                           {"kill_switch", s->rollout.kill_switch}};
  }
  j["settings"] = settings;
  if (const Breaker::Status b = breaker_.GetStatus(); b.enabled) {
    j["breaker"] = {{"candidate", b.candidate},
                    {"baseline", b.baseline},
                    {"state", BreakerStateName(b.state)},
                    {"why", b.why},
                    {"since_s", b.since_s},
                    {"breaching_windows", b.breaching_windows},
                    {"window",
                     {{"candidate_ops", b.candidate_ops},
                      {"candidate_errors", b.candidate_errors},
                      {"baseline_ops", b.baseline_ops},
                      {"baseline_errors", b.baseline_errors},
                      {"latency_op", s->breaker.latency_op},
                      {"candidate_latency_samples", b.candidate_latency_samples},
                      {"baseline_latency_samples", b.baseline_latency_samples},
                      {"candidate_p99_ms", b.candidate_p99_s < 0 ? Json(nullptr)
                                                                 : Json(b.candidate_p99_s * 1000)},
                      {"baseline_p99_ms", b.baseline_p99_s < 0 ? Json(nullptr)
                                                               : Json(b.baseline_p99_s * 1000)}}}};
  }
  Json errors = Json::object();
  for (const auto& [k, v] : s->errors) {
    errors[k] = v;
  }
  j["settings_errors"] = errors;
  Json backends = Json::object();
  for (const auto& [name, b] : backends_) {
    Capabilities c = b->GetCapabilities();
    backends[name] = {{"available", true},
                      {"capabilities",
                       {{"background_processes", c.background_processes},
                        {"stdin", c.stdin},
                        {"pty", c.pty},
                        {"streaming", c.streaming},
                        {"persistent_sessions", c.persistent_sessions},
                        {"custom_image", c.custom_image},
                        {"warm_pool", c.claim},
                        {"guest_process", c.guest_process},
                        {"disk_limit", c.disk_limit},
                        {"disk_limit_note", c.disk_limit_note},
                        {"read_only_root", c.read_only_root},
                        {"root_filesystem", c.root_filesystem}}}};
  }
  for (const auto& [name, err] : config_errors_) {
    backends[name] = {{"available", false}, {"config_error", err}};
  }
  j["backends"] = backends;
  return j;
}

}  // namespace agentbox::selector
