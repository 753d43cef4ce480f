#pragma once

#include <chrono>
#include <string>

#include "api/sandbox_backend.h"
#include "common/config.h"

namespace agentbox::cloudrun {

struct CloudRunOptions {
  std::string project;                 // SANDBOX_GCP_PROJECT
  std::string region = "us-central1";  // SANDBOX_GCP_REGION
  std::string bucket;                  // SANDBOX_GCS_BUCKET (default {project}-sandbox-state)
  std::string default_image = "debian:bookworm-slim";  // AGENTBOX_CLOUDRUN_IMAGE
  // AGENTBOX_CLOUDRUN_MODE: "job" (one execution per command) or "session" (one long execution
  // per sandbox whose guest dials back); the default of creates that do not say (cloudrun_mode).
  std::string mode = "job";
  // AGENTBOX_PUBLIC_URL: the daemon's address as the executions reach it (http[s]:// or ws[s]://;
  // session mode: the guest connects to <url>/v1/tunnel). Required by session mode.
  std::string public_url;
  // Session mode: how long create waits for the guest to dial back once its execution has started
  // (AGENTBOX_CLOUDRUN_CONNECT_TIMEOUT_S).
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(60)};
  std::string service_account;  // AGENTBOX_CLOUDRUN_SERVICE_ACCOUNT: the jobs' identity
  // AGENTBOX_CLOUDRUN_GUEST_VOLUME: deliver the guest on a read-only Cloud Storage volume (true),
  // or rely on images that carry it at /agentbox/guests/<sha256>/agentbox-guest (false).
  bool guest_volume = true;
  // Where this daemon keeps its socket and scratch space: <state>/cloudrun.
  std::string state_dir;
  std::string guest_binary;  // the static agentbox-guest uploaded to the bucket
  ResourceLimits default_limits = DefaultSandboxLimits();
  // An execution that has not started after this long is cancelled and reported
  // (AGENTBOX_CLOUDRUN_START_TIMEOUT_S; Cloud Run starts take 10-60 s, outliers minutes).
  std::chrono::milliseconds start_timeout{std::chrono::minutes(5)};
  // Longest pause between two reads of a running execution (AGENTBOX_CLOUDRUN_POLL_MS). The
  // first reads come sooner (10 ms, doubling), so short commands are not held back.
  std::chrono::milliseconds poll_max{1000};
  // Commands without a timeout get this one (the execution must end some day); shell/run's
  // default is 120 s as on the guest.
  double default_exec_timeout_s = 3600;
  // What an execution may take beyond the command's timeout: start, snapshot, result upload.
  double execution_grace_s = 120;
};

// Well-formedness, as Google defines it. Project ids: 6-30 characters of [a-z0-9-], starting
// with a letter, not ending with '-' (legacy "domain.com:project" ids are accepted). Regions:
// "us-central1" shape ([a-z]+(-[a-z]+)+[0-9]+). Buckets: 3-63 characters of [a-z0-9_.-]
// (dotted names up to 222, each part at most 63), starting and ending with a letter or digit,
// not an IP address, not starting with "goog" and not containing "google".
bool ValidProjectId(const std::string& s);
bool ValidRegion(const std::string& s);
bool ValidBucketName(const std::string& s);

// The tunnel URL a session-mode guest dials: `public_url` with http(s) turned into ws(s) and
// "/v1/tunnel" appended (after any path it has). Empty when `public_url` is not such a URL.
std::string TunnelUrl(const std::string& public_url);

// Cloud Run's longest task timeout (168 h).
inline constexpr double kMaxTaskTimeoutS = 168 * 3600;

// Reads the cloudrun settings. kInvalidArgument in one sentence naming the key for a missing
// project, a malformed project/region/bucket/image, an unknown mode or a number out of range;
// session mode without a usable AGENTBOX_PUBLIC_URL.
Result<CloudRunOptions> OptionsFromConfig(const Config& cfg, const std::string& state_dir,
                                          const std::string& guest_binary);

}  // namespace agentbox::cloudrun
