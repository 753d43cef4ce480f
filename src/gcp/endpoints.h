#pragma once

#include <string>
#include <string_view>

#include "common/config.h"

namespace agentbox::gcp {

// Base addresses of every Google service the clients talk to. Defaults are the real services;
// tests and the emulator override them (see EndpointsFromConfig).
struct Endpoints {
  std::string run = "https://run.googleapis.com";
  std::string storage = "https://storage.googleapis.com";
  // Overrides the token URI of a service-account key or an authorized_user file (and the default
  // https://oauth2.googleapis.com/token). Empty: use the file's own.
  std::string token_uri;
  // host[:port] of the metadata server, or a full http:// URL.
  std::string metadata_host = "metadata.google.internal";
};

// Reads the overrides from configuration:
//   AGENTBOX_CLOUDRUN_ENDPOINT  Run Admin API base URL (http:// or https://; no path needed)
//   STORAGE_EMULATOR_HOST       Google's convention: "http://127.0.0.1:4443" or "127.0.0.1:4443"
//                               (no scheme means http); CLOUD_STORAGE_EMULATOR_ENDPOINT
//                               (google-cloud-cpp's name) when it is unset
//   AGENTBOX_GCP_TOKEN_URI      OAuth token endpoint override
//   GCE_METADATA_HOST           metadata server host[:port]
// Trailing slashes are removed. An override that is not a URL (spaces, bad scheme) is
// kInvalidArgument naming the key.
Result<Endpoints> EndpointsFromConfig(const Config& config);

// Percent-encodes `s` as one URL path segment: every byte except RFC 3986 unreserved characters
// (A-Z a-z 0-9 - . _ ~) becomes %XX, so '/' is %2F and ' ' is %20.
std::string EncodePathSegment(std::string_view s);
// Same encoding for a query-string value (space as %20, '+' as %2B).
std::string EncodeQueryValue(std::string_view s);
// "http://h:p" for a metadata host given as "h:p" or already as a URL.
std::string MetadataBaseUrl(const Endpoints& endpoints);

}  // namespace agentbox::gcp
