#include "gcp/endpoints.h"

#include <fmt/format.h>

namespace agentbox::gcp {
namespace {

bool Unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string StripSlashes(std::string s) {
  while (!s.empty() && s.back() == '/') {
    s.pop_back();
  }
  return s;
}

bool HasScheme(const std::string& s) {
  return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0;
}

// Accepts "http(s)://host[:port][/path]" or, when bare_ok, "host[:port]" (becomes http://).
Result<std::string> NormalizeUrl(const std::string& key, std::string value, bool bare_ok) {
  if (value.empty() || value.find_first_of(" \t\r\n\"'<>\\") != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                fmt::format("{}: '{}' is not a URL (expected http(s)://host[:port])", key, value));
  }
  if (!HasScheme(value)) {
    if (value.find("://") != std::string::npos || !bare_ok) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("{}: '{}' must start with http:// or https://", key, value));
    }
    value = "http://" + value;
  }
  value = StripSlashes(std::move(value));
  if (value == "http:" || value == "https:" || value.size() <= std::string("https://").size() - 1) {
    return Fail(ErrorCode::kInvalidArgument, fmt::format("{}: '{}' names no host", key, value));
  }
  return value;
}

}  // namespace

Result<Endpoints> EndpointsFromConfig(const Config& config) {
  Endpoints e;
  if (auto v = config.Get("AGENTBOX_CLOUDRUN_ENDPOINT"); v && !v->empty()) {
    auto url = NormalizeUrl("AGENTBOX_CLOUDRUN_ENDPOINT", *v, false);
    if (!url) {
      return Fail(url.error());
    }
    e.run = *url;
  }
  // STORAGE_EMULATOR_HOST (Go/Python/Java/Node clients), else CLOUD_STORAGE_EMULATOR_ENDPOINT
  // (google-cloud-cpp's name for the same thing).
  for (const char* key : {"STORAGE_EMULATOR_HOST", "CLOUD_STORAGE_EMULATOR_ENDPOINT"}) {
    if (auto v = config.Get(key); v && !v->empty()) {
      auto url = NormalizeUrl(key, *v, true);
      if (!url) {
        return Fail(url.error());
      }
      e.storage = *url;
      break;
    }
  }
  if (auto v = config.Get("AGENTBOX_GCP_TOKEN_URI"); v && !v->empty()) {
    auto url = NormalizeUrl("AGENTBOX_GCP_TOKEN_URI", *v, false);
    if (!url) {
      return Fail(url.error());
    }
    e.token_uri = *url;
  }
  if (auto v = config.Get("GCE_METADATA_HOST"); v && !v->empty()) {
    auto url = NormalizeUrl("GCE_METADATA_HOST", *v, true);
    if (!url) {
      return Fail(url.error());
    }
    e.metadata_host = *v;
  }
  return e;
}

std::string EncodePathSegment(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (Unreserved(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string EncodeQueryValue(std::string_view s) { return EncodePathSegment(s); }

std::string MetadataBaseUrl(const Endpoints& endpoints) {
  std::string host = StripSlashes(endpoints.metadata_host);
  if (HasScheme(host)) {
    return host;
  }
  return "http://" + host;
}

}  // namespace agentbox::gcp
