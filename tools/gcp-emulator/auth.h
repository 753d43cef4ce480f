#pragma once

#include <string>

#include "http/server.h"

// Google's credential endpoints, enough for real clients to obtain a token:
//
//   POST /token   OAuth 2.0 token endpoint (a service-account key's token_uri):
//                 grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>
//                 or grant_type=refresh_token&client_id&client_secret&refresh_token
//   GET  /computeMetadata/v1/...   the metadata server (header Metadata-Flavor: Google):
//                 instance/service-accounts/default/token, .../email, project/project-id,
//                 project/numeric-project-id, instance/region
//
// The JWT's structure and claims are checked (alg RS256, iss, aud, iat, exp, scope or
// target_audience, a signature present); its signature cannot be verified, since the emulator
// does not know the key. Every token it issues is accepted by the Run and Storage APIs, which
// only require a non-empty bearer token.
namespace agentbox::gcpemu {

struct AuthOptions {
  std::string project = "emulator-project";
  std::string service_account = "emulator@emulator-project.iam.gserviceaccount.com";
  int token_lifetime_seconds = 3599;
};

class AuthApi {
 public:
  explicit AuthApi(AuthOptions opts) : opts_(std::move(opts)) {}
  static bool Owns(const http::Request& req);
  static std::string MethodId(const http::Request& req);
  http::Response Handle(const http::Request& req);

 private:
  http::Response Token(const http::Request& req);
  http::Response Metadata(const http::Request& req);
  AuthOptions opts_;
};

// Whether the request carries "Authorization: Bearer <non-empty>".
bool HasBearer(const http::Request& req);

}  // namespace agentbox::gcpemu
