#include "backends/cloudrun/cloudrun_options.h"

#include <cctype>
#include <utility>

namespace agentbox::cloudrun {
namespace {

bool LowerDigitDash(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

bool AllDigitsAndDots(const std::string& s) {
  for (char c : s) {
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.')) {
      return false;
    }
  }
  return true;
}

bool ValidBucketPart(const std::string& p) {
  if (p.empty() || p.size() > 63) {
    return false;
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(p.front()) || !alnum(p.back())) {
    return false;
  }
  for (char c : p) {
    if (!alnum(c) && c != '-' && c != '_') {
      return false;
    }
  }
  return true;
}

// Image references as Cloud Run takes them: no spaces or control characters, not empty.
bool PlausibleImage(const std::string& s) {
  if (s.empty() || s.size() > 1024) {
    return false;
  }
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c)) ||
        std::iscntrl(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool ValidProjectId(const std::string& s) {
  std::string id = s;
  if (size_t colon = s.find(':'); colon != std::string::npos) {
    id = s.substr(colon + 1);  // "example.com:my-project"
    const std::string domain = s.substr(0, colon);
    if (domain.empty() ||
        domain.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos) {
      return false;
    }
  }
  if (id.size() < 6 || id.size() > 30 || !(id[0] >= 'a' && id[0] <= 'z') || id.back() == '-') {
    return false;
  }
  for (char c : id) {
    if (!LowerDigitDash(c)) {
      return false;
    }
  }
  return true;
}

bool ValidRegion(const std::string& s) {
  // [a-z]+(-[a-z]+)+[0-9]+
  size_t i = 0;
  int words = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size() && s[i] >= 'a' && s[i] <= 'z') {
      ++i;
    }
    if (i == start) {
      return false;
    }
    ++words;
    if (i < s.size() && s[i] == '-') {
      ++i;
      continue;
    }
    size_t digits = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      ++i;
    }
    return words >= 2 && i > digits && i == s.size();
  }
  return false;
}

bool ValidBucketName(const std::string& s) {
  if (s.size() < 3 || s.size() > 222 || s.starts_with("goog") ||
      s.find("google") != std::string::npos || AllDigitsAndDots(s)) {
    return false;
  }
  if (s.find('.') == std::string::npos) {
    return ValidBucketPart(s);
  }
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t dot = s.find('.', pos);
    if (dot == std::string::npos) {
      dot = s.size();
    }
    if (!ValidBucketPart(s.substr(pos, dot - pos))) {
      return false;
    }
    pos = dot + 1;
  }
  return true;
}

std::string TunnelUrl(const std::string& public_url) {
  std::string scheme;
  std::string rest;
  for (const auto& [from, to] : {std::pair<const char*, const char*>{"http://", "ws://"},
                                 {"https://", "wss://"},
                                 {"ws://", "ws://"},
                                 {"wss://", "wss://"}}) {
    if (public_url.starts_with(from)) {
      scheme = to;
      rest = public_url.substr(std::string(from).size());
      break;
    }
  }
  if (scheme.empty() || rest.empty() || rest[0] == '/' ||
      rest.find_first_of(" \t\r\n?#") != std::string::npos) {
    return "";
  }
  while (!rest.empty() && rest.back() == '/') {
    rest.pop_back();
  }
  return scheme + rest + "/v1/tunnel";
}

Result<CloudRunOptions> OptionsFromConfig(const Config& cfg, const std::string& state_dir,
                                          const std::string& guest_binary) {
  CloudRunOptions o;
  o.state_dir = state_dir;
  o.guest_binary = guest_binary;
  o.project = cfg.GetOr("SANDBOX_GCP_PROJECT", "");
  if (o.project.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "SANDBOX_GCP_PROJECT is not set (the Google Cloud project that runs the jobs)");
  }
  if (!ValidProjectId(o.project)) {
    return Fail(ErrorCode::kInvalidArgument,
                "SANDBOX_GCP_PROJECT='" + o.project +
                    "' is not a project id (6-30 of a-z, 0-9 and '-', starting with a letter)");
  }
  o.region = cfg.GetOr("SANDBOX_GCP_REGION", "");
  if (o.region.empty()) {
    o.region = "us-central1";
  }
  if (!ValidRegion(o.region)) {
    return Fail(ErrorCode::kInvalidArgument,
                "SANDBOX_GCP_REGION='" + o.region + "' is not a region (e.g. us-central1)");
  }
  o.bucket = cfg.GetOr("SANDBOX_GCS_BUCKET", "");
  if (o.bucket.empty()) {
    o.bucket = o.project.substr(o.project.find(':') + 1) + "-sandbox-state";
  }
  if (!ValidBucketName(o.bucket)) {
    return Fail(ErrorCode::kInvalidArgument,
                "SANDBOX_GCS_BUCKET='" + o.bucket +
                    "' is not a bucket name (3-63 of a-z, 0-9, '-', '_' and '.', starting and "
                    "ending with a letter or digit)");
  }
  o.default_image = cfg.GetOr("AGENTBOX_CLOUDRUN_IMAGE", o.default_image);
  if (!PlausibleImage(o.default_image)) {
    return Fail(ErrorCode::kInvalidArgument,
                "AGENTBOX_CLOUDRUN_IMAGE='" + o.default_image + "' is not an image reference");
  }
  o.mode = cfg.GetOr("AGENTBOX_CLOUDRUN_MODE", "job");
  if (o.mode != "job" && o.mode != "session") {
    return Fail(ErrorCode::kInvalidArgument,
                "AGENTBOX_CLOUDRUN_MODE='" + o.mode + "' is not a mode (job or session)");
  }
  o.public_url = cfg.GetOr("AGENTBOX_PUBLIC_URL", "");
  if (!o.public_url.empty() && TunnelUrl(o.public_url).empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "AGENTBOX_PUBLIC_URL='" + o.public_url +
                    "' is not a URL (http://HOST:PORT, https://HOST, ws:// or wss://)");
  }
  if (o.mode == "session" && o.public_url.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "AGENTBOX_CLOUDRUN_MODE=session needs AGENTBOX_PUBLIC_URL: the address at which "
                "the executions reach this daemon (their guests dial back to <url>/v1/tunnel)");
  }
  auto connect = cfg.GetInt("AGENTBOX_CLOUDRUN_CONNECT_TIMEOUT_S", 60, 1, 3600);
  if (!connect) {
    return Fail(connect.error());
  }
  o.connect_timeout = std::chrono::seconds(*connect);
  o.service_account = cfg.GetOr("AGENTBOX_CLOUDRUN_SERVICE_ACCOUNT", "");
  if (!o.service_account.empty() && o.service_account.find('@') == std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument, "AGENTBOX_CLOUDRUN_SERVICE_ACCOUNT='" +
                                                 o.service_account +
                                                 "' is not a service account email");
  }
  auto volume = cfg.GetBool("AGENTBOX_CLOUDRUN_GUEST_VOLUME", true);
  if (!volume) {
    return Fail(volume.error());
  }
  o.guest_volume = *volume;
  auto start = cfg.GetInt("AGENTBOX_CLOUDRUN_START_TIMEOUT_S", 300, 1, 86400);
  if (!start) {
    return Fail(start.error());
  }
  o.start_timeout = std::chrono::seconds(*start);
  auto poll = cfg.GetInt("AGENTBOX_CLOUDRUN_POLL_MS", 1000, 1, 60000);
  if (!poll) {
    return Fail(poll.error());
  }
  o.poll_max = std::chrono::milliseconds(*poll);
  return o;
}

}  // namespace agentbox::cloudrun
