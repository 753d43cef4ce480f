#include "daemon/e2b/e2b_api.h"

#include <algorithm>

#include "common/base64.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "daemon/api_detail.h"
#include "daemon/daemon_api.h"
#include "daemon/e2b/translate.h"

namespace agentbox::daemon::e2b {

using detail::SplitPath;

namespace {

http::Response ApiJson(int status, const Json& body) {
  http::Response r;
  r.status = status;
  r.body = DumpJson(body);
  return r;
}

http::Response ApiError(int status, const std::string& message) {
  http::Response r;
  r.status = status;
  r.body = ApiErrorBody(status, message);
  return r;
}

http::Response NoContent() {
  http::Response r;
  r.status = 204;
  r.content_type.clear();
  return r;
}

// Creates the account E2B's SDK assumes (user `user`, home /home/user, passwordless sudo when
// sudo is installed) with whatever the image has: useradd, busybox adduser, or /etc/passwd.
constexpr const char* kEnsureUserScript = R"SH(
if ! grep -q '^user:' /etc/passwd 2>/dev/null; then
  sh=/bin/sh; [ -x /bin/bash ] && sh=/bin/bash
  made=
  if command -v useradd >/dev/null 2>&1 && useradd -m -s "$sh" user 2>/dev/null; then made=1
  elif command -v adduser >/dev/null 2>&1 && adduser -D -s "$sh" user 2>/dev/null; then made=1
  fi
  if [ -z "$made" ] && [ ! -w /etc/passwd ]; then
    # A read-only /etc without `user` (an unprivileged jail, which has no ids to give it; a
    # privileged one gets the account from the jail, sandbox_user.h): commands run as the
    # sandbox's root with this home (the guest's user_fallback), on the workspace's disk.
    if [ ! -e /home/user ]; then mkdir -p /home && ln -s /workspace /home/user || exit 1; fi
    exit 0
  fi
  if [ -z "$made" ]; then
    # No tool, or one that cannot lock /etc/passwd here: write the entries directly.
    uid=1000; while grep -q "^[^:]*:[^:]*:$uid:" /etc/passwd; do uid=$((uid+1)); done
    echo "user:x:$uid:$uid:user:/home/user:$sh" >>/etc/passwd || exit 1
    grep -q '^user:' /etc/group 2>/dev/null || echo "user:x:$uid:" >>/etc/group
    mkdir -p /home/user && cp -a /etc/skel/. /home/user/ 2>/dev/null
  fi
fi
mkdir -p /home/user || exit 1
ids=$(grep '^user:' /etc/passwd | cut -d: -f3,4)
chown -R "$ids" /home/user
if [ -d /etc/sudoers.d ] && [ -w /etc/sudoers.d ] && [ ! -e /etc/sudoers.d/agentbox-e2b-user ]; then
  echo 'user ALL=(ALL:ALL) NOPASSWD: ALL' >/etc/sudoers.d/agentbox-e2b-user
  chmod 0440 /etc/sudoers.d/agentbox-e2b-user
fi
exit 0
)SH";

}  // namespace

Result<std::map<std::string, std::string>> ParseTemplates(const std::vector<std::string>& items) {
  std::map<std::string, std::string> out = {{"base", ""}};
  for (const auto& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "AGENTBOX_E2B_TEMPLATES: '" + item + "' is not TEMPLATE=IMAGE");
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

E2bApi::E2bApi(DaemonApi& daemon, E2bOptions options) : d_(daemon), opts_(std::move(options)) {}

bool E2bApi::Claims(const http::Request& req) {
  if (req.headers.count("e2b-sandbox-id")) {
    return true;
  }
  return req.path == "/sandboxes" || req.path.starts_with("/sandboxes/") ||
         req.path == "/v2/sandboxes" || req.path.starts_with("/v2/sandboxes/");
}

std::optional<E2bApi::Caller> E2bApi::Authenticate(const http::Request& req) const {
  if (req.peer == "unix") {
    return Caller{kLocalOwner, true};
  }
  std::string header = req.Header("authorization");
  if (auto key = req.Header("x-api-key"); !key.empty()) {
    header = "Bearer " + key;
  }
  auto owner = d_.keys_.Authenticate(header);
  if (!owner) {
    return std::nullopt;
  }
  return Caller{*owner, false};
}

void E2bApi::Handle(const http::Request& req, http::Respond respond) {
  if (d_.draining_) {
    return respond(ApiError(503, "agentboxd is shutting down"));
  }
  if (req.headers.count("e2b-sandbox-id")) {
    return Envd(req, std::move(respond));
  }
  auto caller = Authenticate(req);
  if (!caller) {
    return respond(
        ApiError(401, "missing or invalid API key (X-API-KEY: an AGENTBOX_API_KEYS key)"));
  }
  ControlPlane(req, *caller, std::move(respond));
}

void E2bApi::ControlPlane(const http::Request& req, const Caller& caller, http::Respond respond) {
  auto parts = SplitPath(req.path);
  if (!parts.empty() && parts[0] == "v2") {
    parts.erase(parts.begin());
  }
  const std::string& m = req.method;
  if (parts.size() == 1) {
    if (m == "POST") {
      return Create(req, caller, std::move(respond));
    }
    if (m == "GET") {
      return List(req, caller, std::move(respond));
    }
    return respond(ApiError(405, "use GET or POST on /sandboxes"));
  }
  const std::string& id = parts[1];
  if (parts.size() == 2) {
    if (m == "GET") {
      return GetOne(id, caller, std::move(respond));
    }
    if (m == "DELETE") {
      return Kill(id, caller, std::move(respond));
    }
    return respond(ApiError(405, "use GET or DELETE on /sandboxes/{sandboxID}"));
  }
  if (parts.size() == 3 && m == "GET" && parts[2] == "metrics") {
    return Metrics(id, caller, std::move(respond));
  }
  if (parts.size() == 3 && m == "POST") {
    if (parts[2] == "timeout") {
      return SetTimeout(id, req, caller, std::move(respond));
    }
    if (parts[2] == "connect" || parts[2] == "resume") {
      return Connect(id, req, caller, std::move(respond));
    }
    if (parts[2] == "pause" || parts[2] == "snapshots" || parts[2] == "fork") {
      return respond(ApiError(501, parts[2] + " is not supported by agentboxd (docs/e2b.md)"));
    }
  }
  respond(ApiError(404, "no such endpoint: " + m + " " + req.path));
}

void E2bApi::Native(const std::string& method, const std::string& path, const Json& body,
                    const Caller& caller, NativeDone done) {
  http::Request r;
  r.method = method;
  r.target = path;
  r.path = path;
  r.peer = "e2b";
  r.headers["content-type"] = "application/json";
  if (!body.is_null()) {
    r.body = DumpJson(body);
  }
  d_.Route(r, DaemonApi::Caller{caller.owner, caller.admin},
           [done = std::move(done)](http::Response resp) {
             const Json env = ParseUntrustedJson(resp.body);
             if (resp.status < 300 && env.is_object() && ValueOr(env, "success", false)) {
               return done(resp.status, ValueOr(env, "data", Json()), "");
             }
             std::string message = env.is_object() ? ValueOr(env, "message", "") : resp.body;
             done(resp.status, Json(), message.empty() ? "request failed" : message);
           });
}

void E2bApi::GuestReplaced(const SandboxInfo& info, std::function<void()> done) {
  if (!info.spec.labels.contains(kTemplateLabel)) {
    return done();
  }
  EnsureUser(info, [id = info.id, done = std::move(done)](Result<void> r) {
    if (!r) {
      Log(LogLevel::kWarn, "e2b.user_setup_failed", "id={} after=guest_replaced error=\"{}\"", id,
          r.error().message);
    }
    done();
  });
}

void E2bApi::EnsureUser(const SandboxInfo& info, std::function<void(Result<void>)> done) {
  if (!EnvdUnsupported(info.backend, info.spec.run_mode).empty()) {
    // cloudrun job mode: no command's changes outside /workspace outlive it, and envd calls
    // answer 501 (EnvdUnsupported); the control plane serves it without the account.
    return done({});
  }
  if (!info.guest_endpoint.starts_with("unix:")) {
    return done(Fail(ErrorCode::kUnavailable, "sandbox has no reachable guest"));
  }
  http::ClientRequest cr;
  cr.method = "POST";
  cr.target = "/api/v1/exec/start";
  cr.headers = {{"X-Access-Token", info.guest_token}, {"Content-Type", "application/json"}};
  cr.body = DumpJson(Json{{"cmd", "/bin/sh"}, {"args", {"-c", kEnsureUserScript}}, {"cwd", "/"}});
  d_.client_.Send(
      info.guest_endpoint.substr(5), std::move(cr), d_.health_.deadlines().call,
      [done = std::move(done)](Result<http::ClientResponse> r) {
        if (!r) {
          return done(Fail(r.error()));
        }
        if (r->status != 200) {
          return done(Fail(ErrorCode::kInternal, "creating user 'user': " + r->body));
        }
        // The last line is the end event; stderr says why it failed.
        std::string err;
        int code = -1;
        size_t pos = 0;
        while (pos < r->body.size()) {
          size_t nl = r->body.find('\n', pos);
          if (nl == std::string::npos) {
            nl = r->body.size();
          }
          const Json j = ParseUntrustedJson(r->body.substr(pos, nl - pos));
          pos = nl + 1;
          if (!j.is_object()) {
            continue;
          }
          if (ValueOr(j, "event", "") == "stderr") {
            err += Base64Decode(ValueOr(j, "data", "")).value_or("");
          } else if (ValueOr(j, "event", "") == "end") {
            code = ValueOr(j, "exit_code", -1);
          }
        }
        if (code != 0) {
          return done(Fail(ErrorCode::kInternal, "creating user 'user' failed (exit " +
                                                     std::to_string(code) + "): " + err));
        }
        done({});
      });
}

void E2bApi::Create(const http::Request& req, const Caller& caller, http::Respond respond) {
  const Json body = ParseUntrustedJson(req.body.empty() ? "{}" : req.body);
  auto t = NativeCreateBody(body, opts_.templates, opts_.default_timeout_s);
  if (!t) {
    return respond(ApiError(HttpStatus(t.error().code), t.error().message));
  }
  Native("POST", "/v1/sandboxes", t->native, caller,
         [this, caller, respond](int status, Json data, std::string message) {
           if (status != 201) {
             return respond(ApiError(status, message));
           }
           const std::string id = ValueOr(data, "id", "");
           auto e = d_.Find(id, DaemonApi::Caller{"", true});
           if (!e) {
             return respond(ApiError(500, "sandbox '" + id + "' vanished after creation"));
           }
           EnsureUser(e->info, [this, caller, respond, data, e = *e](Result<void> r) {
             if (!r) {
               Log(LogLevel::kWarn, "e2b.user_setup_failed", "id={} error=\"{}\"", e.info.id,
                   r.error().message);
               Native("DELETE", "/v1/sandboxes/" + e.info.id, Json(), caller,
                      [](int, Json, std::string) {});
               return respond(ApiError(500, r.error().message));
             }
             respond(ApiJson(
                 201, SandboxFromNative(data, EnvdAccessToken(e.info.guest_token), opts_.domain)));
           });
         });
}

void E2bApi::Connect(const std::string& id, const http::Request& req, const Caller& caller,
                     http::Respond respond) {
  const Json body = ParseUntrustedJson(req.body.empty() ? "{}" : req.body);
  if (!body.is_object()) {
    return respond(ApiError(400, "body must be a JSON object"));
  }
  auto e = d_.Find(id, DaemonApi::Caller{caller.owner, caller.admin});
  if (!e) {
    return respond(ApiError(404, "sandbox '" + id + "' not found"));
  }
  auto finish = [this, id, caller, respond, e = *e] {
    EnsureUser(e.info, [this, id, caller, respond, e](Result<void> r) {
      if (!r) {
        return respond(ApiError(500, r.error().message));
      }
      Native("GET", "/v1/sandboxes/" + id, Json(), caller,
             [this, respond, e](int status, Json data, std::string message) {
               if (status != 200) {
                 return respond(ApiError(status, message));
               }
               respond(ApiJson(200, SandboxFromNative(data, EnvdAccessToken(e.info.guest_token),
                                                      opts_.domain)));
             });
    });
  };
  if (body.contains("timeout") && body["timeout"].is_number_integer()) {
    const int64_t timeout = std::max<int64_t>(1, body["timeout"].get<int64_t>());
    return Native("POST", "/v1/sandboxes/" + id + "/timeout", Json{{"ttl_s", timeout}}, caller,
                  [respond, finish](int status, Json, std::string message) {
                    if (status != 200) {
                      return respond(ApiError(status, message));
                    }
                    finish();
                  });
  }
  finish();
}

void E2bApi::GetOne(const std::string& id, const Caller& caller, http::Respond respond) {
  Native("GET", "/v1/sandboxes/" + id, Json(), caller,
         [this, respond](int status, Json data, std::string message) {
           if (status != 200) {
             return respond(ApiError(status, message));
           }
           auto e = d_.Find(ValueOr(data, "id", ""), DaemonApi::Caller{"", true});
           respond(
               ApiJson(200, DetailFromNative(data, e ? EnvdAccessToken(e->info.guest_token) : "")));
         });
}

void E2bApi::List(const http::Request& req, const Caller& caller, http::Respond respond) {
  std::map<std::string, std::string> filter;
  if (auto md = req.QueryParam("metadata"); md && !md->empty()) {
    // QueryParam decoded the outer layer already; ParseMetadataFilter decodes what is left.
    auto f = ParseMetadataFilter(*md);
    if (!f) {
      return respond(ApiError(400, f.error().message));
    }
    filter = std::move(*f);
  }
  // `state` may repeat (state=running&state=paused) or be comma-separated.
  bool want_running = true;
  if (!req.query.empty() && req.query.find("state=") != std::string::npos) {
    want_running = false;
    size_t pos = 0;
    while ((pos = req.query.find("state=", pos)) != std::string::npos) {
      size_t end = req.query.find('&', pos);
      const std::string v = PercentDecode(
          req.query.substr(pos + 6, end == std::string::npos ? std::string::npos : end - pos - 6),
          true);
      want_running = want_running || v.find("running") != std::string::npos;
      pos += 6;
    }
  }
  int64_t limit = 100;
  if (auto l = req.QueryParam("limit"); l && !l->empty()) {
    char* end = nullptr;
    limit = std::strtoll(l->c_str(), &end, 10);
    if (!end || *end != '\0' || limit < 1 || limit > 1000) {
      return respond(ApiError(400, "limit must be between 1 and 1000"));
    }
  }
  const std::string token = req.QueryParam("nextToken").value_or("");
  Native("GET", "/v1/sandboxes", Json(), caller,
         [filter, want_running, limit, token, respond](int status, Json data, std::string message) {
           if (status != 200) {
             return respond(ApiError(status, message));
           }
           std::vector<Json> items;
           for (const auto& s : ValueOr(data, "sandboxes", Json::array())) {
             const Json labels = ValueOr(s, "labels", Json::object());
             bool match = want_running;
             for (const auto& [k, v] : filter) {
               match = match && labels.contains(k) && labels[k] == v;
             }
             if (match) {
               items.push_back(s);
             }
           }
           // Newest first; the page token is the id of the first sandbox of the next page.
           std::sort(items.begin(), items.end(), [](const Json& a, const Json& b) {
             const double ta = ValueOr(a, "created_at", 0.0);
             const double tb = ValueOr(b, "created_at", 0.0);
             return ta != tb ? ta > tb : ValueOr(a, "id", "") < ValueOr(b, "id", "");
           });
           size_t start = 0;
           if (!token.empty()) {
             start = items.size();
             for (size_t i = 0; i < items.size(); ++i) {
               if (items[i].value("id", "") == token) {
                 start = i;
               }
             }
           }
           Json out = Json::array();
           size_t i = start;
           for (; i < items.size() && out.size() < static_cast<size_t>(limit); ++i) {
             Json d = DetailFromNative(items[i], "");
             d.erase("envdAccessToken");  // listing never hands out credentials
             out.push_back(std::move(d));
           }
           http::Response r = ApiJson(200, out);
           if (i < items.size()) {
             r.headers.emplace_back("x-next-token", items[i].value("id", ""));
           }
           respond(std::move(r));
         });
}

void E2bApi::Kill(const std::string& id, const Caller& caller, http::Respond respond) {
  Native("DELETE", "/v1/sandboxes/" + id, Json(), caller,
         [respond](int status, Json, std::string message) {
           if (status != 200) {
             return respond(ApiError(status, message));
           }
           respond(NoContent());
         });
}

void E2bApi::SetTimeout(const std::string& id, const http::Request& req, const Caller& caller,
                        http::Respond respond) {
  const Json body = ParseUntrustedJson(req.body);
  if (!body.is_object() || !body.contains("timeout") || !body["timeout"].is_number_integer() ||
      body["timeout"].get<int64_t>() < 0) {
    return respond(ApiError(400, "body must be {\"timeout\": seconds}"));
  }
  const int64_t ttl = std::max<int64_t>(1, body["timeout"].get<int64_t>());
  Native("POST", "/v1/sandboxes/" + id + "/timeout", Json{{"ttl_s", ttl}}, caller,
         [respond](int status, Json, std::string message) {
           if (status != 200) {
             return respond(ApiError(status, message));
           }
           respond(NoContent());
         });
}

void E2bApi::Metrics(const std::string& id, const Caller& caller, http::Respond respond) {
  // `start` and `end` (unix seconds) select E2B's stored readings; agentboxd stores none and
  // answers the one taken now (docs/e2b.md).
  Native("GET", "/v1/sandboxes/" + id + "/metrics", Json(), caller,
         [respond](int status, Json data, std::string message) {
           if (status != 200) {
             return respond(ApiError(status, message));
           }
           respond(ApiJson(200, MetricsFromNative(data)));
         });
}

}  // namespace agentbox::daemon::e2b
