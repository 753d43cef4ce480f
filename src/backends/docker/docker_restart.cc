// DockerBackend::RestartGuest: the same container started again; EngineDown: whether the engine
// answers at all (the daemon shows sandboxes unreachable while it does not); GuestsRestarted:
// containers the engine started again by itself (the daemon restores their sessions).
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "backends/docker/container_request.h"
#include "backends/docker/docker_backend.h"
#include "backends/docker/host_dir.h"
#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/time_util.h"

namespace agentbox::docker {

Result<SandboxInfo> DockerBackend::RestartGuest(const std::string& id) {
  if (!ValidSandboxId(id)) {
    return Fail(SandboxNotFound(id));
  }
  KeyedLock lock(id_locks_, id);
  auto c = InspectOurs(id);
  if (!c) {
    return Fail(c.error());
  }
  const std::string container_id = ValueOr(*c, "Id", ContainerName(id));
  const std::string dir = SandboxDir(id);
  auto meta = LoadMeta(dir);
  if (!meta) {
    return Fail(meta.error().code == ErrorCode::kNotFound ? SandboxNotFound(id) : meta.error());
  }
  const auto started = Clock::now();
  // The run directory is writable from inside: put back the token the daemon uses, and drop
  // the old socket so that only the new guest's counts.
  const std::string run = dir + "/" + kRunDir;
  ::unlink((run + "/" + kGuestSocket).c_str());
  if (auto r = WriteFileAtomic(run + "/" + kTokenFile, meta->token + "\n", 0600); !r) {
    return Fail(r.error());
  }
  // t=0: SIGKILL at once (a stopped or traced guest cannot act on SIGTERM). The container's
  // filesystem and its /workspace volume stay; its processes and /tmp (a tmpfs) start empty.
  const double restart_begin = NowUnix();
  auto r = engine_.Call("POST", "/containers/" + container_id + "/restart?t=0", {},
                        std::chrono::seconds(60));
  OwnStart(id, restart_begin, NowUnix());
  if (!r) {
    return Fail(r.error());
  }
  if (r->status != 204) {
    return Fail(EngineError(*r, "restart container " + ContainerName(id)));
  }
  if (auto w = WaitForGuest(id, container_id, meta->token, Clock::now() + opts_.start_timeout);
      !w) {
    return Fail(w.error().code,
                "the guest of sandbox '" + id + "' could not be restarted: " + w.error().message);
  }
  auto fresh = InspectOurs(id);
  if (!fresh) {
    return Fail(fresh.error());
  }
  // The restarted container has a new network namespace: egress gets a new link.
  if (!meta->egress_link.empty()) {
    DetachEgress(meta->egress_link);
    meta->egress_link.clear();
    auto spec = InfoFromInspect(*fresh);
    auto link = spec && spec->spec.egress
                    ? AttachEgress(container_id, *spec->spec.egress)
                    : Result<std::string>(Fail(ErrorCode::kInternal, "no egress policy label"));
    if (link) {
      meta->egress_link = *link;
    }
    if (auto saved = SaveMeta(dir, *meta); !saved || !link) {
      return Fail(!link ? link.error() : saved.error());
    }
  }
  Log(LogLevel::kInfo, "docker.guest_restarted", "id={} ms={:.1f}", id,
      std::chrono::duration<double, std::milli>(Clock::now() - started).count());
  return InfoFromInspect(*fresh);
}

std::optional<std::string> DockerBackend::EngineDown() {
  auto ping = engine_.Call("GET", "/_ping", {}, opts_.probe_timeout);
  if (ping && ping->status == 200) {
    return std::nullopt;
  }
  const std::string engine = "The Docker engine at " + opts_.socket_path;
  if (!ping) {
    const std::string& m = ping.error().message;
    const size_t colon = m.find(": ");
    return engine + " is not answering: " + (colon == std::string::npos ? m : m.substr(colon + 2)) +
           ".";
  }
  return engine + " is not answering: GET /_ping got " + std::to_string(ping->status) + ".";
}

void DockerBackend::OwnStart(const std::string& id, double begin, double end) {
  std::lock_guard<std::mutex> lock(mu_);
  own_starts_[id] = {begin, end};
}

std::vector<std::string> DockerBackend::GuestsRestarted() {
  // Events carry the engine's clock, which is this machine's (the socket is local). A window
  // [since, until] with `until` set makes the engine answer at once with what it recorded. The
  // first window starts when this object was made (a restart before that, while no daemon ran,
  // is the daemon's start to handle: it restores kept sessions then).
  const double until = NowUnix();
  double since = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    since = events_since_;
  }
  const Json filters = {{"type", {"container"}},
                        {"event", {"start"}},
                        {"label",
                         {std::string(label::kManaged) + "=true",
                          std::string(label::kStateDir) + "=" + opts_.state_dir}}};
  char window[96];
  std::snprintf(window, sizeof(window), "since=%.6f&until=%.6f", since, until);
  auto r = engine_.Call("GET",
                        std::string("/events?") + window + "&filters=" + UrlEncode(filters.dump()),
                        {}, opts_.probe_timeout);
  if (!r || r->status != 200) {
    return {};  // the same window is asked again next time
  }
  std::vector<std::string> out;
  std::lock_guard<std::mutex> lock(mu_);
  events_since_ = until;
  size_t at = 0;
  while (at < r->body.size()) {
    size_t end = r->body.find('\n', at);
    if (end == std::string::npos) {
      end = r->body.size();
    }
    const Json ev = ParseUntrustedJson(r->body.substr(at, end - at));
    at = end + 1;
    if (!ev.is_object() || !ev.contains("Actor") || !ev["Actor"].is_object()) {
      continue;
    }
    const Json& attrs = ValueOr(ev["Actor"], "Attributes", Json::object());
    if (!attrs.is_object() || !attrs.contains(label::kId) || !attrs[label::kId].is_string()) {
      continue;
    }
    const std::string id = attrs[label::kId].get<std::string>();
    const double t = ev.contains("timeNano") && ev["timeNano"].is_number()
                         ? ev["timeNano"].get<double>() / 1e9
                         : ValueOr(ev, "time", 0.0);
    // The engine stamps the event before it answers the start call, on this machine's clock:
    // an event of our own start falls within the call (a few ms of slack for rounding).
    if (auto own = own_starts_.find(id); own != own_starts_.end() &&
                                         t >= own->second.first - 0.01 &&
                                         t <= own->second.second + 0.01) {
      continue;  // our own start
    }
    if (std::find(out.begin(), out.end(), id) == out.end()) {
      out.push_back(id);
    }
  }
  // Forget own starts too old to match an event still to come.
  for (auto it = own_starts_.begin(); it != own_starts_.end();) {
    it = it->second.second < until - 60 ? own_starts_.erase(it) : std::next(it);
  }
  if (!out.empty()) {
    Log(LogLevel::kInfo, "docker.guests_restarted_by_engine", "count={} first={}", out.size(),
        out.front());
  }
  return out;
}

}  // namespace agentbox::docker
