#include "gcp/auth.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fstream>
#include <set>
#include <sstream>

#include "common/json_util.h"
#include "common/log.h"
#include "gcp/errors.h"
#include "gcp/transport.h"

namespace agentbox::gcp {
namespace {

using std::chrono::system_clock;

system_clock::time_point SystemNow() { return system_clock::now(); }

std::string Base64Url(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(in[k])); };
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  if (in.size() - i == 1) {
    uint32_t v = byte(i) << 16;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
  } else if (in.size() - i == 2) {
    uint32_t v = byte(i) << 16 | byte(i + 1) << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
  }
  return out;
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

Result<std::string> SignRs256(const std::string& pem, std::string_view data) {
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) {
    return Fail(ErrorCode::kInternal, "OpenSSL: BIO_new_mem_buf failed");
  }
  std::unique_ptr<EVP_PKEY, PkeyDeleter> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return Fail(ErrorCode::kInvalidArgument, "private_key is not a PEM private key");
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                     data.size()) != 1) {
    return Fail(ErrorCode::kInvalidArgument, "private_key cannot sign RS256");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    return Fail(ErrorCode::kInternal, "OpenSSL: EVP_DigestSign failed");
  }
  sig.resize(len);
  return sig;
}

std::string Str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string FormEncode(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) {
      out += '&';
    }
    out += EncodeQueryValue(k) + "=" + EncodeQueryValue(v);
  }
  return out;
}

// Parses {access_token, expires_in} of a token endpoint or the metadata server.
Result<AccessToken> ParseTokenResponse(const std::string& who, const HttpResponse& resp,
                                       system_clock::time_point now) {
  if (resp.status != 200) {
    Error e = ErrorFromResponse(who, resp.status, resp.body);
    if (resp.status >= 400 && resp.status < 500) {
      e.code = ErrorCode::kUnauthorized;
    }
    return Fail(e);
  }
  auto j = ParseUntrustedJson(resp.body);
  if (j.is_discarded() || !j.is_object() || Str(j, "access_token").empty()) {
    return Fail(ErrorCode::kUnavailable, who + ": the token response carries no access_token");
  }
  int64_t expires_in = 3600;
  if (auto it = j.find("expires_in"); it != j.end()) {
    if (it->is_number_integer()) {
      expires_in = it->get<int64_t>();
    } else if (it->is_string()) {
      expires_in = std::atoll(it->get<std::string>().c_str());
    }
  }
  return AccessToken{Str(j, "access_token"), now + std::chrono::seconds(expires_in)};
}

Result<AccessToken> PostForm(HttpTransport& http, const std::string& who, const std::string& uri,
                             const std::vector<std::pair<std::string, std::string>>& fields,
                             system_clock::time_point now) {
  HttpRequest req;
  req.method = "POST";
  req.url = uri;
  req.authenticate = false;
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  req.body = FormEncode(fields);
  req.timeout = std::chrono::seconds(30);
  auto resp = http.Send(req);
  if (!resp) {
    return Fail(resp.error().code, who + ": " + resp.error().message);
  }
  return ParseTokenResponse(who, *resp, now);
}

std::shared_ptr<HttpTransport> TokenTransport() {
  TransportOptions o;
  o.retry.total = std::chrono::seconds(15);
  o.retry.initial_backoff = std::chrono::milliseconds(100);
  o.retry.max_attempts = 5;
  o.connect_timeout = std::chrono::seconds(3);
  o.max_idle_handles = 2;
  return std::make_shared<HttpTransport>(nullptr, o);
}

void LogSourceOnce(const std::string& description) {
  static std::mutex mu;
  static std::set<std::string> logged;
  std::lock_guard lock(mu);
  if (logged.insert(description).second) {
    Log(LogLevel::kInfo, "gcp.credentials", "source=\"{}\"", description);
  }
}

}  // namespace

CachingTokenSource::CachingTokenSource(std::string description,
                                       std::function<Result<AccessToken>()> fetch, Clock now,
                                       std::chrono::seconds refresh_margin,
                                       std::chrono::seconds retry_interval)
    : description_(std::move(description)),
      fetch_(std::move(fetch)),
      now_(now ? std::move(now) : Clock(&SystemNow)),
      margin_(refresh_margin),
      retry_interval_(retry_interval) {}

Result<std::string> CachingTokenSource::Token() {
  std::lock_guard lock(mu_);
  const auto now = now_();
  if (cached_ && now + margin_ < cached_->expiry) {
    return cached_->token;
  }
  if (cached_ && now < cached_->expiry && now < next_attempt_) {
    return cached_->token;  // a refresh failed a moment ago: not yet again
  }
  auto fresh = fetch_();
  if (fresh) {
    cached_ = std::move(*fresh);
    next_attempt_ = {};
    return cached_->token;
  }
  if (cached_ && now < cached_->expiry) {
    next_attempt_ = now + retry_interval_;
    Log(LogLevel::kWarn, "gcp.token_refresh_failed",
        "source=\"{}\" error=\"{}\" expires_in_s={} action=keep_cached_token retry_in_s={}",
        description_, fresh.error().message,
        std::chrono::duration_cast<std::chrono::seconds>(cached_->expiry - now).count(),
        retry_interval_.count());
    return cached_->token;
  }
  return Fail(fresh.error().code,
              fmt::format("credentials ({}): {}", description_, fresh.error().message));
}

void CachingTokenSource::Invalidate() {
  std::lock_guard lock(mu_);
  cached_.reset();
  next_attempt_ = {};
}

Result<std::string> MakeServiceAccountAssertion(const nlohmann::json& key,
                                                const std::string& token_uri,
                                                system_clock::time_point now) {
  std::string email = Str(key, "client_email");
  std::string pem = Str(key, "private_key");
  if (email.empty() || pem.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "service account key lacks client_email or private_key");
  }
  nlohmann::json header = {{"alg", "RS256"}, {"typ", "JWT"}};
  if (std::string kid = Str(key, "private_key_id"); !kid.empty()) {
    header["kid"] = kid;
  }
  int64_t iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  nlohmann::json claims = {{"iss", email},
                           {"scope", kCloudPlatformScope},
                           {"aud", token_uri},
                           {"iat", iat},
                           {"exp", iat + 3600}};
  std::string signing_input = Base64Url(header.dump()) + "." + Base64Url(claims.dump());
  auto sig = SignRs256(pem, signing_input);
  if (!sig) {
    return Fail(sig.error());
  }
  return signing_input + "." + Base64Url(*sig);
}

Result<TokenSourcePtr> MakeServiceAccountTokenSource(const nlohmann::json& key, std::string origin,
                                                     const Endpoints& endpoints,
                                                     std::shared_ptr<HttpTransport> http,
                                                     Clock now) {
  std::string token_uri = endpoints.token_uri;
  if (token_uri.empty()) {
    token_uri = Str(key, "token_uri");
  }
  if (token_uri.empty()) {
    token_uri = kDefaultTokenUri;
  }
  if (!now) {
    now = &SystemNow;
  }
  // Fail early on a key that cannot sign, rather than at the first API call.
  auto probe = MakeServiceAccountAssertion(key, token_uri, now());
  if (!probe) {
    return Fail(probe.error().code, origin + ": " + probe.error().message);
  }
  std::string email = Str(key, "client_email");
  std::string who = fmt::format("service account {} ({})", email, origin);
  auto fetch = [key, token_uri, http, now, who]() -> Result<AccessToken> {
    auto t = now();
    auto assertion = MakeServiceAccountAssertion(key, token_uri, t);
    if (!assertion) {
      return Fail(assertion.error());
    }
    return PostForm(
        *http, "OAuth token endpoint " + token_uri, token_uri,
        {{"grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"}, {"assertion", *assertion}},
        t);
  };
  return std::make_shared<CachingTokenSource>(who, fetch, now);
}

Result<TokenSourcePtr> MakeAuthorizedUserTokenSource(const nlohmann::json& file, std::string origin,
                                                     const Endpoints& endpoints,
                                                     std::shared_ptr<HttpTransport> http,
                                                     Clock now) {
  std::string client_id = Str(file, "client_id");
  std::string client_secret = Str(file, "client_secret");
  std::string refresh_token = Str(file, "refresh_token");
  if (client_id.empty() || client_secret.empty() || refresh_token.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                origin + ": authorized_user lacks client_id, client_secret or refresh_token");
  }
  std::string token_uri = endpoints.token_uri;
  if (token_uri.empty()) {
    token_uri = Str(file, "token_uri");
  }
  if (token_uri.empty()) {
    token_uri = kDefaultTokenUri;
  }
  if (!now) {
    now = &SystemNow;
  }
  std::string who = fmt::format("authorized user {} ({})", client_id, origin);
  auto fetch = [=]() -> Result<AccessToken> {
    return PostForm(*http, "OAuth token endpoint " + token_uri, token_uri,
                    {{"grant_type", "refresh_token"},
                     {"client_id", client_id},
                     {"client_secret", client_secret},
                     {"refresh_token", refresh_token}},
                    now());
  };
  return std::make_shared<CachingTokenSource>(who, fetch, now);
}

TokenSourcePtr MakeMetadataTokenSource(const Endpoints& endpoints,
                                       std::shared_ptr<HttpTransport> http, Clock now) {
  std::string base = MetadataBaseUrl(endpoints);
  if (!now) {
    now = &SystemNow;
  }
  std::string who = "metadata server " + base;
  auto fetch = [=]() -> Result<AccessToken> {
    HttpRequest req;
    req.url = base + "/computeMetadata/v1/instance/service-accounts/default/token";
    req.authenticate = false;
    req.headers = {{"Metadata-Flavor", "Google"}};
    req.timeout = std::chrono::seconds(10);
    auto t = now();
    auto resp = http->Send(req);
    if (!resp) {
      return Fail(resp.error().code, who + ": " + resp.error().message);
    }
    return ParseTokenResponse(who, *resp, t);
  };
  return std::make_shared<CachingTokenSource>(who, fetch, now);
}

Result<TokenSourcePtr> MakeTokenSource(const Config& config, const Endpoints& endpoints) {
  TokenSourcePtr source;
  if (auto t = config.Get("GOOGLE_OAUTH_ACCESS_TOKEN"); t && !t->empty()) {
    source = std::make_shared<StaticTokenSource>(*t, "GOOGLE_OAUTH_ACCESS_TOKEN");
  } else if (auto path = config.Get("GOOGLE_APPLICATION_CREDENTIALS"); path && !path->empty()) {
    std::ifstream in(*path);
    if (!in) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("GOOGLE_APPLICATION_CREDENTIALS: cannot read {}", *path));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = ParseUntrustedJson(ss.str());
    if (j.is_discarded() || !j.is_object()) {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("GOOGLE_APPLICATION_CREDENTIALS: {} is not JSON", *path));
    }
    std::string type = Str(j, "type");
    std::string origin = "key file " + *path;
    Result<TokenSourcePtr> made;
    if (type == "service_account") {
      made = MakeServiceAccountTokenSource(j, origin, endpoints, TokenTransport());
    } else if (type == "authorized_user") {
      made = MakeAuthorizedUserTokenSource(j, origin, endpoints, TokenTransport());
    } else {
      return Fail(ErrorCode::kInvalidArgument,
                  fmt::format("GOOGLE_APPLICATION_CREDENTIALS: {} has type '{}' (expected "
                              "service_account or authorized_user)",
                              *path, type));
    }
    if (!made) {
      return Fail(made.error());
    }
    source = *made;
  } else {
    source = MakeMetadataTokenSource(endpoints, TokenTransport());
  }
  LogSourceOnce(source->Describe());
  return source;
}

Result<std::string> MetadataProjectId(const Endpoints& endpoints, HttpTransport& http) {
  HttpRequest req;
  req.url = MetadataBaseUrl(endpoints) + "/computeMetadata/v1/project/project-id";
  req.authenticate = false;
  req.headers = {{"Metadata-Flavor", "Google"}};
  req.timeout = std::chrono::seconds(5);
  auto resp = http.Send(req);
  if (!resp) {
    return Fail(resp.error());
  }
  if (resp->status != 200) {
    return Fail(ErrorFromResponse("metadata server", resp->status, resp->body));
  }
  return resp->body;
}

}  // namespace agentbox::gcp
