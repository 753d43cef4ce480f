#include "auth.h"

#include <map>

#include "api_error.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "hashes.h"

namespace agentbox::gcpemu {
namespace {

std::map<std::string, std::string> ParseForm(std::string_view body) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t amp = body.find('&', pos);
    if (amp == std::string_view::npos) {
      amp = body.size();
    }
    const std::string_view kv = body.substr(pos, amp - pos);
    const size_t eq = kv.find('=');
    if (eq != std::string_view::npos) {
      out[PercentDecode(kv.substr(0, eq), true)] = PercentDecode(kv.substr(eq + 1), true);
    }
    pos = amp + 1;
  }
  return out;
}

// OAuth's error shape (RFC 6749 §5.2), which Google's token endpoint uses.
http::Response OAuthError(int status, const std::string& error, const std::string& description) {
  return JsonResponse(status, {{"error", error}, {"error_description", description}});
}

// Checks a JWT bearer assertion's shape and claims; empty when acceptable, else why not.
std::string CheckAssertion(const std::string& jwt) {
  const size_t d1 = jwt.find('.');
  const size_t d2 = d1 == std::string::npos ? d1 : jwt.find('.', d1 + 1);
  if (d2 == std::string::npos) {
    return "the assertion is not a JWT (header.claims.signature)";
  }
  auto header = Base64Decode(jwt.substr(0, d1));
  auto claims = Base64Decode(jwt.substr(d1 + 1, d2 - d1 - 1));
  if (!header || !claims || jwt.size() == d2 + 1) {
    return "the assertion's parts are not base64url, or the signature is missing";
  }
  auto h = Json::parse(*header, nullptr, false);
  auto c = Json::parse(*claims, nullptr, false);
  if (!h.is_object() || !c.is_object()) {
    return "the assertion's header and claims must be JSON objects";
  }
  if (h.value("alg", "") != "RS256") {
    return "Invalid JWT: alg must be RS256";
  }
  for (const char* k : {"iss", "aud"}) {
    if (!c.contains(k) || !c[k].is_string() || c[k].get<std::string>().empty()) {
      return std::string("Invalid JWT: claim '") + k + "' is missing";
    }
  }
  if (!c.contains("scope") && !c.contains("target_audience")) {
    return "Invalid JWT: no 'scope' (or 'target_audience') claim";
  }
  if (!c.contains("iat") || !c.contains("exp") || !c["iat"].is_number() || !c["exp"].is_number()) {
    return "Invalid JWT: 'iat' and 'exp' must be numbers";
  }
  const double now = NowUnix();
  const double iat = c["iat"].get<double>();
  const double exp = c["exp"].get<double>();
  if (exp < now - 60 || iat > now + 300) {
    return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
           "timeframe. Check your iat and exp values in the JWT claim.";
  }
  if (exp - iat > 3600 + 60) {
    return "Invalid JWT: exp - iat exceeds one hour";
  }
  return "";
}

}  // namespace

bool HasBearer(const http::Request& req) {
  const std::string a = req.Header("authorization");
  return a.size() > 7 && AsciiLower(a.substr(0, 7)) == "bearer " &&
         a.find_first_not_of(' ', 7) != std::string::npos;
}

bool AuthApi::Owns(const http::Request& req) {
  return req.path == "/token" || req.path == "/oauth2/v4/token" ||
         req.path.starts_with("/computeMetadata/");
}

std::string AuthApi::MethodId(const http::Request& req) {
  return req.path.starts_with("/computeMetadata/") ? "metadata.get" : "oauth2.token";
}

http::Response AuthApi::Handle(const http::Request& req) {
  return req.path.starts_with("/computeMetadata/") ? Metadata(req) : Token(req);
}

http::Response AuthApi::Token(const http::Request& req) {
  if (req.method != "POST") {
    return OAuthError(405, "invalid_request", "the token endpoint takes POST");
  }
  auto form = ParseForm(req.body);
  const std::string grant = form["grant_type"];
  if (grant == "urn:ietf:params:oauth:grant-type:jwt-bearer") {
    if (const std::string why = CheckAssertion(form["assertion"]); !why.empty()) {
      return OAuthError(400, "invalid_grant", why);
    }
  } else if (grant == "refresh_token") {
    for (const char* k : {"client_id", "client_secret", "refresh_token"}) {
      if (form[k].empty()) {
        return OAuthError(400, "invalid_request", std::string("missing parameter ") + k);
      }
    }
  } else {
    return OAuthError(400, "unsupported_grant_type",
                      "grant_type must be urn:ietf:params:oauth:grant-type:jwt-bearer or "
                      "refresh_token, not '" +
                          grant + "'");
  }
  return JsonResponse(200, {{"access_token", "ya29.emulator-" + RandomId(32)},
                            {"expires_in", opts_.token_lifetime_seconds},
                            {"token_type", "Bearer"}});
}

http::Response AuthApi::Metadata(const http::Request& req) {
  auto text = [](int status, std::string body) {
    http::Response r;
    r.status = status;
    r.content_type = "application/text";
    r.body = std::move(body);
    r.headers.push_back({"Metadata-Flavor", "Google"});
    return r;
  };
  if (req.Header("metadata-flavor") != "Google") {
    return text(403, "Missing required header: Metadata-Flavor: Google\n");
  }
  const std::string p = req.path.substr(std::string("/computeMetadata/v1").size());
  const std::string sa = "/instance/service-accounts/default";
  if (p == sa + "/token") {
    http::Response r = JsonResponse(200, {{"access_token", "ya29.emulator-" + RandomId(32)},
                                          {"expires_in", opts_.token_lifetime_seconds},
                                          {"token_type", "Bearer"}});
    r.headers.push_back({"Metadata-Flavor", "Google"});
    return r;
  }
  if (p == sa + "/email") {
    return text(200, opts_.service_account);
  }
  if (p == "/project/project-id") {
    return text(200, opts_.project);
  }
  if (p == "/project/numeric-project-id") {
    return text(200, "123456789012");
  }
  if (p == "/instance/region") {
    return text(200, "projects/123456789012/regions/us-central1");
  }
  if (p.empty() || p == "/" || p == "/instance" || p == "/instance/") {
    return text(200, "attributes/\nservice-accounts/\n");
  }
  return text(404, "not found: " + req.path + "\n");
}

}  // namespace agentbox::gcpemu
