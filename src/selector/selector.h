#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/sandbox_backend.h"
#include "common/config.h"
#include "common/json_util.h"
#include "common/metrics.h"
#include "selector/breaker.h"

namespace agentbox::selector {

// Reasons, after OpenFeature/flagd (rollout.md); the vocabulary is fixed so that dashboards never
// change.
inline constexpr const char* kStatic = "STATIC";                   // only one backend possible
inline constexpr const char* kDefault = "DEFAULT";                 // the configured backend
inline constexpr const char* kTargetingMatch = "TARGETING_MATCH";  // the caller pinned a backend
inline constexpr const char* kSplit = "SPLIT";        // the subject's percentage bucket decided
inline constexpr const char* kDisabled = "DISABLED";  // the rollout's kill switch is on
inline constexpr const char* kAutoRollback = "AUTO_ROLLBACK";  // the candidate's breaker is open
inline constexpr const char* kFallback = "FALLBACK";           // configured one unusable
inline constexpr const char* kError = "ERROR";                 // nothing usable
// Not a decision's reason but a sandbox's: it was moved to its backend by a migration or a drain
// (the decision that chose the target is in the migration's answer).
inline constexpr const char* kMigrated = "MIGRATED";

// Error codes carried by FALLBACK and ERROR decisions.
inline constexpr const char* kProviderNotReady = "PROVIDER_NOT_READY";  // probe failed
inline constexpr const char* kParseError = "PARSE_ERROR";               // a setting did not parse
inline constexpr const char* kInvalidConfig = "INVALID_CONFIG";  // unknown backend, bad config
inline constexpr const char* kGeneral = "GENERAL";               // anything else (an exception)
inline constexpr const char* kTargetingKeyMissing = "TARGETING_KEY_MISSING";  // no subject to hash
inline constexpr const char* kExcluded = "EXCLUDED";  // the request excluded it (a drain)

// A sticky percentage rollout of one candidate backend against the baseline (SANDBOX_BACKEND).
// The seed's form: USE_CLOUDRUN_JOBS_SANDBOX=true with CLOUDRUN_JOBS_ROLLOUT_PERCENTAGE (default
// 100). The general form: AGENTBOX_ROLLOUT_BACKEND with AGENTBOX_ROLLOUT_PERCENTAGE (default 100).
struct Rollout {
  std::string backend;            // the candidate; empty: no rollout
  int percentage = 100;           // share of subjects sent to it, 0..100
  std::string group;              // AGENTBOX_ROLLOUT_GROUP, default the flag's name
  bool unkeyed_random = false;    // AGENTBOX_ROLLOUT_UNKEYED=random: no subject, random bucket
  bool kill_switch = false;       // AGENTBOX_ROLLOUT_KILL_SWITCH: everyone to the baseline
  std::string percentage_source;  // the key the percentage came from
};

// The selection settings, parsed once from configuration into an immutable value. A setting that
// does not parse is not fatal: it is recorded in `errors` and the decision falls back with
// PARSE_ERROR, explaining which key was wrong (the original factory's "graceful fallback").
struct Settings {
  std::string requested_backend = "docker";   // SANDBOX_BACKEND
  std::string requested_source;               // where SANDBOX_BACKEND came from
  bool use_cloudrun = false;                  // USE_CLOUDRUN_JOBS_SANDBOX (the seed's flag)
  std::string gcp_project;                    // SANDBOX_GCP_PROJECT
  std::string gcp_region = "us-central1";     // SANDBOX_GCP_REGION
  std::string gcs_bucket;                     // SANDBOX_GCS_BUCKET, default {project}-sandbox-state
  std::vector<std::string> fallback_chain;    // AGENTBOX_FALLBACK_CHAIN, default docker,jail
  std::chrono::milliseconds probe_ttl{2000};  // AGENTBOX_PROBE_TTL_MS
  Rollout rollout;
  BreakerSettings breaker;                    // guards the rollout's candidate
  std::map<std::string, std::string> errors;  // key -> why it did not parse
  std::string hash;                           // stable hash of everything above

  // `known`: every backend name this build knows, in fallback order (BackendTable::KnownNames()).
  static Settings FromConfig(const Config& cfg, const std::vector<std::string>& known);
  // The configuration keys these settings read: what SIGHUP and PUT /v1/flags may change.
  static const std::vector<std::string>& Keys();
  std::vector<std::string> known_backends;
};

// One probe as a decision saw it.
struct ProbeView {
  bool usable = false;
  std::string reason;
  std::vector<std::string> limitations;
  double age_s = 0;  // how old the cached result was
};

// Why a candidate backend was skipped.
struct Skip {
  std::string backend;
  std::string error_code;
  std::string message;
};

// Where a new sandbox goes and why: a value, logged once and served by /v1/info.
struct Decision {
  std::string backend;  // empty when nothing is usable (reason ERROR)
  std::string reason;
  std::optional<std::string> error_code;
  std::string requested_backend;
  std::vector<std::string> fallback_chain;  // candidates in the order they were considered
  std::vector<Skip> skipped;                // those passed over, with why
  std::map<std::string, ProbeView> probes;
  std::string rule_id;        // "pin" when the caller pinned it, "rollout:<group>" for a SPLIT
  std::optional<int> bucket;  // the subject's rollout bucket (1..100) when a rollout applied
  std::string config_version;
  std::string detail;  // one sentence for humans
  double duration_s = 0;
};

// The seed's class names, kept for the get_sandbox_info() subset of /v1/info.
std::string ImplementationName(const std::string& backend);

struct SelectRequest {
  std::string pinned_backend;  // non-empty: the caller asked for this backend (already authorized)
  std::string subject;         // who the rollout is sticky for (a user, tenant or the API key)
};

// Backends a decision must not choose (a drain moves sandboxes off them): skipped with EXCLUDED
// and `why`.
struct Exclusion {
  std::vector<std::string> backends;
  std::string why;
};

// Picks the backend for each new sandbox. Existing sandboxes are never re-decided: the daemon
// keeps each pinned to the backend that created it. Thread-safe.
class Selector {
 public:
  // `backends`: what the table built; `config_errors`: backends that were not built and why.
  Selector(std::map<std::string, SandboxBackend*> backends,
           std::map<std::string, std::string> config_errors, Settings settings, Metrics* metrics);

  // Decides for a new sandbox: logs the decision once and counts it.
  Decision Select(const SelectRequest& req, const Exclusion& exclude = {});
  // What a new sandbox would get now, without logging or counting (for /v1/info).
  Decision Preview();

  // /v1/info: the decision plus the seed's {implementation, feature_flag_enabled, reason, config}.
  Json InfoJson(const Decision& d) const;
  static Json DecisionJson(const Decision& d);

  std::shared_ptr<const Settings> settings() const;
  // Replaces the settings atomically (hot reload): decisions already made keep theirs, the next
  // one sees the new. Bumps the version in config_version and forgets cached probes.
  void Reload(Settings settings);
  // "v<N>-<hash>": N counts loads since start (1 = the first), hash names the content.
  std::string ConfigVersion() const;
  // Drops cached probe results (tests; an operator's "check again now").
  void ForgetProbes();
  // Every built backend's probe (cached like a decision's), for /metrics' agentbox_backend_usable.
  std::map<std::string, ProbeView> ProbeAll();
  // One operation's outcome on `backend`, for the rollout's breaker (the daemon reports every
  // create, destroy and relayed guest call).
  void Record(const std::string& backend, bool ok, const std::string& op = "",
              double seconds = -1);
  Breaker& breaker() { return breaker_; }

 private:
  struct CachedProbe {
    ProbeResult result;
    std::chrono::steady_clock::time_point at;
  };
  // `consume`: a real decision (uses up a half-open admission); false for previews.
  Decision Decide(const SelectRequest& req, bool consume, const Exclusion& exclude = {});
  void ConfigureBreaker(const Settings& s);
  // Probes `name` (cached for probe_ttl). Exceptions become an unusable result with GENERAL.
  ProbeView ProbeCached(const std::string& name, SandboxBackend* b, std::string* error_code);

  std::map<std::string, SandboxBackend*> backends_;
  std::map<std::string, std::string> config_errors_;
  mutable std::mutex settings_mu_;
  std::shared_ptr<const Settings> settings_;
  int version_ = 1;
  Metrics* metrics_;
  std::mutex probe_mu_;
  std::map<std::string, CachedProbe> probe_cache_;
  mutable Breaker breaker_;  // its status is read by the const InfoJson
};

}  // namespace agentbox::selector
