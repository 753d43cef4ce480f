#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/config.h"
#include "common/error.h"
#include "gcp/endpoints.h"

namespace agentbox::gcp {

class HttpTransport;

// Supplies OAuth2 access tokens for Google APIs. Implementations are thread-safe.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // A token valid for at least a little while (cached; refreshed as the source sees fit).
  // kUnauthorized/kUnavailable when none can be had.
  virtual Result<std::string> Token() = 0;
  // One line naming the source, never the token: "service account x@p.iam.gserviceaccount.com
  // (key file /k.json)", "metadata server 169.254.169.254", "GOOGLE_OAUTH_ACCESS_TOKEN".
  virtual std::string Describe() const = 0;
  // The service rejected the current token (401): the next Token() fetches a new one where the
  // source can. Default: nothing to do (a fixed token).
  virtual void Invalidate() {}
};
using TokenSourcePtr = std::shared_ptr<TokenSource>;

struct AccessToken {
  std::string token;
  std::chrono::system_clock::time_point expiry;
};

using Clock = std::function<std::chrono::system_clock::time_point()>;

// Caches the token a `fetch` function returns. Token() fetches when there is no token or it
// expires within `refresh_margin` (5 minutes); if that refresh fails while the cached token has
// not really expired yet, the cached token is returned (the failure is logged) and the next
// refresh is attempted only `retry_interval` later, so calls do not each wait on a failing token
// endpoint; after its expiry the failure is returned. One fetch at a time.
class CachingTokenSource : public TokenSource {
 public:
  CachingTokenSource(std::string description, std::function<Result<AccessToken>()> fetch,
                     Clock now = nullptr,
                     std::chrono::seconds refresh_margin = std::chrono::minutes(5),
                     std::chrono::seconds retry_interval = std::chrono::seconds(15));
  Result<std::string> Token() override;
  std::string Describe() const override { return description_; }
  void Invalidate() override;

 private:
  std::string description_;
  std::function<Result<AccessToken>()> fetch_;
  Clock now_;
  std::chrono::seconds margin_;
  std::chrono::seconds retry_interval_;
  std::mutex mu_;
  std::optional<AccessToken> cached_;
  std::chrono::system_clock::time_point next_attempt_{};  // after a failed refresh
};

// A fixed token (GOOGLE_OAUTH_ACCESS_TOKEN): never refreshed.
class StaticTokenSource : public TokenSource {
 public:
  StaticTokenSource(std::string token, std::string description)
      : token_(std::move(token)), description_(std::move(description)) {}
  Result<std::string> Token() override { return token_; }
  std::string Describe() const override { return description_; }

 private:
  std::string token_;
  std::string description_;
};

inline constexpr const char* kCloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform";
inline constexpr const char* kDefaultTokenUri = "https://oauth2.googleapis.com/token";

// The RS256-signed JWT assertion of a service account: header {alg: RS256, typ: JWT, kid:
// private_key_id}, claims {iss: client_email, scope, aud: token_uri, iat, exp: iat + 3600}.
// `key` is the parsed key file. kInvalidArgument when fields are missing or the PEM key is bad.
Result<std::string> MakeServiceAccountAssertion(const nlohmann::json& key,
                                                const std::string& token_uri,
                                                std::chrono::system_clock::time_point now);

// Sources over HTTP. `http` carries the token requests (it must not itself authenticate).
// `now` defaults to the system clock.
Result<TokenSourcePtr> MakeServiceAccountTokenSource(const nlohmann::json& key, std::string origin,
                                                     const Endpoints& endpoints,
                                                     std::shared_ptr<HttpTransport> http,
                                                     Clock now = nullptr);
Result<TokenSourcePtr> MakeAuthorizedUserTokenSource(const nlohmann::json& file, std::string origin,
                                                     const Endpoints& endpoints,
                                                     std::shared_ptr<HttpTransport> http,
                                                     Clock now = nullptr);
TokenSourcePtr MakeMetadataTokenSource(const Endpoints& endpoints,
                                       std::shared_ptr<HttpTransport> http, Clock now = nullptr);

// Application default credentials, in order: GOOGLE_OAUTH_ACCESS_TOKEN (static);
// GOOGLE_APPLICATION_CREDENTIALS (a JSON file of type service_account or authorized_user;
// unreadable or malformed is kInvalidArgument naming the file); else the metadata server. Logs
// once which source was chosen (event gcp.credentials), never the token. Nothing is fetched
// until the first Token().
Result<TokenSourcePtr> MakeTokenSource(const Config& config, const Endpoints& endpoints);

// The project id of the metadata server (GET .../project/project-id), for probes.
Result<std::string> MetadataProjectId(const Endpoints& endpoints, HttpTransport& http);

}  // namespace agentbox::gcp
