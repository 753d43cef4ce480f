// create, ls, rm, info, timeout, pull: the sandbox lifecycle (/v1/sandboxes, /v1/info).
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <iostream>
#include <tuple>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/interrupt.h"
#include "common/json_util.h"
#include "common/strings.h"
#include "common/time_util.h"

namespace agentbox::cli {

namespace {

// How often a create whose connection was lost is sent again (200 ms doubling to 5 s: about 11 s
// in all, enough for a daemon restart).
constexpr int kCreateRetries = 6;

std::string SandboxPath(const std::string& id) { return "/v1/sandboxes/" + UrlEscape(id); }

std::string LocalTime(double unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %Z", &tm);
  return buf;
}

std::string Labels(const Json& sandbox) {
  std::string out;
  auto it = sandbox.find("labels");
  if (it == sandbox.end() || !it->is_object()) {
    return out;
  }
  for (const auto& [k, v] : it->items()) {
    if (!out.empty()) {
      out += ',';
    }
    out += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

}  // namespace

int Pull(DaemonClient& client, const std::string& image, const std::string& backend) {
  Json body = {{"image", image}};
  if (!backend.empty()) {
    body["backend"] = backend;
  }
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  std::string pending;
  std::string error;
  bool done = false;
  bool overwriting = false;
  auto on_data = [&](std::string_view bytes) {
    pending.append(bytes);
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      Json line = ParseUntrustedJson(pending.substr(0, nl));
      pending.erase(0, nl + 1);
      if (!line.is_object()) {
        continue;
      }
      if (line.contains("progress") && line["progress"].is_string()) {
        // At a terminal each progress line replaces the previous one.
        std::cerr << (overwriting ? "\r\033[K" : "") << line["progress"].get<std::string>()
                  << (tty ? "" : "\n");
        overwriting = tty;
      } else if (line.contains("error") && line["error"].is_object()) {
        error = line["error"].value("message", std::string("pull failed"));
      } else if (line.value("done", false)) {
        done = true;
      }
    }
    return true;
  };
  auto r = client.Stream(
      "/v1/images/pull", on_data, [] { return false; }, &body);
  if (overwriting) {
    std::cerr << "\n";
  }
  if (!r) {
    return ReportError(r.error());
  }
  if (!r->ok()) {
    return ReportError(r->ErrorMessage());
  }
  if (!error.empty()) {
    return ReportError(error);
  }
  if (!done) {
    return ReportError("agentboxd ended the pull of " + image + " without saying it finished");
  }
  return 0;
}

int Create(DaemonClient& client, const CreateArgs& a) {
  if (!a.image.empty()) {
    // Fetch a missing image first so that its progress shows here, not as a silent wait.
    if (int rc = Pull(client, a.image, a.backend); rc != 0) {
      return rc;
    }
  }
  Json body = Json::object();
  if (!a.image.empty()) {
    body["image"] = a.image;
  }
  if (!a.backend.empty()) {
    body["backend"] = a.backend;
  }
  if (a.ttl_s) {
    body["ttl_s"] = *a.ttl_s;
  }
  if (a.read_only_root) {
    body["read_only_root"] = true;
  }
  Json limits = Json::object();
  if (a.memory_mb) {
    limits["memory_mb"] = *a.memory_mb;
  }
  if (a.cpus) {
    limits["cpus"] = *a.cpus;
  }
  if (a.pids) {
    limits["pids"] = *a.pids;
  }
  if (a.disk_mb) {
    limits["disk_bytes"] = *a.disk_mb << 20;
  }
  if (!limits.empty()) {
    body["limits"] = limits;
  }
  for (const auto& [flag, list, inherit] :
       {std::tuple{"env", &a.env, true}, std::tuple{"labels", &a.labels, false}}) {
    if (list->empty()) {
      continue;
    }
    Json map = Json::object();
    for (const auto& kv : *list) {
      auto parsed = ParseKeyValue(kv, inherit);
      if (!parsed) {
        return ReportError(std::string("--") + (inherit ? "env" : "label") + ": " +
                           parsed.error().message);
      }
      map[parsed->first] = parsed->second;
    }
    body[flag] = map;
  }
  // One key per create: when the connection is lost (the daemon restarted, a proxy dropped it)
  // the create is sent again with the same key, and the daemon answers with the sandbox the
  // first attempt made, if it made one, instead of making a second (docs/reliability.md).
  const std::vector<std::string> headers = {"Idempotency-Key: cli-" + RandomId(32)};
  auto r = client.Call("POST", "/v1/sandboxes", &body, false, headers);
  for (int attempt = 1; !r && attempt <= kCreateRetries && !InterruptPending(); ++attempt) {
    const int delay_ms = std::min(200 << (attempt - 1), 5000);
    std::cerr << "agentbox: " << r.error().message << "; sending the create again in " << delay_ms
              << " ms (same Idempotency-Key)\n";
    ::usleep(static_cast<useconds_t>(delay_ms) * 1000);
    auto again = client.Send("POST", "/v1/sandboxes", &body, false, headers);
    if (!again) {
      r = Fail(again.error());
    } else if (!again->ok()) {
      return ReportError(again->ErrorMessage());
    } else {
      r = again->data();
    }
  }
  if (!r) {
    return ReportError(r.error());
  }
  if (a.json) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::cout << JsonString(*r, "id") << "\n";
  std::cerr << "agentbox: backend " << JsonString(*r, "backend") << " (reason "
            << JsonString(*r, "reason") << "), expires "
            << RelativeTime(JsonNumber(*r, "expires_at"), NowUnix()) << "\n";
  return 0;
}

int List(DaemonClient& client, bool json) {
  auto r = client.Call("GET", "/v1/sandboxes");
  if (!r) {
    return ReportError(r.error());
  }
  Json list = r->is_object() && r->contains("sandboxes") ? (*r)["sandboxes"] : Json::array();
  if (!list.is_array()) {
    return ReportError("unexpected answer from agentboxd: 'sandboxes' is not a list");
  }
  if (json) {
    std::cout << list.dump(2) << "\n";
    return 0;
  }
  std::vector<Json> sorted(list.begin(), list.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const Json& x, const Json& y) {
    return JsonNumber(x, "created_at") < JsonNumber(y, "created_at");
  });
  const double now = NowUnix();
  std::vector<std::vector<std::string>> rows = {
      {"ID", "BACKEND", "STATE", "CREATED", "EXPIRES", "DISK", "LABELS"}};
  for (const auto& s : sorted) {
    rows.push_back({JsonString(s, "id"), JsonString(s, "backend"), JsonString(s, "state"),
                    RelativeTime(JsonNumber(s, "created_at"), now),
                    RelativeTime(JsonNumber(s, "expires_at"), now), DiskColumn(s), Labels(s)});
  }
  PrintTable(rows, std::cout);
  return 0;
}

int Remove(DaemonClient& client, const std::vector<std::string>& ids) {
  int status = 0;
  for (const auto& id : ids) {
    auto r = client.Call("DELETE", SandboxPath(id));
    if (!r) {
      status = ReportError(r.error());
      continue;
    }
    std::cout << id << "\n";
  }
  return status;
}

int Info(DaemonClient& client) {
  auto r = client.Call("GET", "/v1/info");
  if (!r) {
    return ReportError(r.error());
  }
  std::cout << r->dump(2) << "\n";
  return 0;
}

int Flags(DaemonClient& client, const std::vector<std::string>& set,
          const std::vector<std::string>& unset) {
  Result<Json> r;
  if (set.empty() && unset.empty()) {
    r = client.Call("GET", "/v1/flags");
  } else {
    Json flags = Json::object();
    for (const auto& kv : set) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        return ReportError(
            Error{ErrorCode::kInvalidArgument, "'" + kv + "' is not KEY=VALUE (use --unset KEY)"});
      }
      flags[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& key : unset) {
      flags[key] = nullptr;
    }
    Json body = {{"flags", flags}};
    r = client.Call("PUT", "/v1/flags", &body);
  }
  if (!r) {
    return ReportError(r.error());
  }
  const Json& in_force = (*r)["flags"];
  if (in_force.empty()) {
    std::cout << "no runtime flags (the configuration file, .env and environment decide)\n";
  }
  for (const auto& [k, v] : in_force.items()) {
    std::cout << k << "=" << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
  }
  std::cout << "config_version " << r->value("config_version", "") << "\n";
  if (r->contains("decision")) {
    const Json& d = (*r)["decision"];
    std::cout << "new sandboxes: "
              << (d["backend"].is_string() ? d["backend"].get<std::string>() : "none") << " ("
              << d.value("reason", "") << ") " << d.value("detail", "") << "\n";
  }
  return 0;
}

int ExtendTimeout(DaemonClient& client, const std::string& id, int64_t seconds) {
  Json body = {{"ttl_s", seconds}};
  auto r = client.Call("POST", SandboxPath(id) + "/timeout", &body);
  if (!r) {
    return ReportError(r.error());
  }
  const double expires = JsonNumber(*r, "expires_at");
  std::cout << id << " expires " << RelativeTime(expires, NowUnix()) << " (" << LocalTime(expires)
            << ")\n";
  return 0;
}

int RestartGuest(DaemonClient& client, const std::string& id) {
  auto r = client.Call("POST", SandboxPath(id) + "/restart-guest", nullptr);
  if (!r) {
    return ReportError(r.error());
  }
  std::cout << id << " guest restarted: " << JsonString(*r, "state") << "\n";
  return 0;
}

}  // namespace agentbox::cli
