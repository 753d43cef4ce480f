// envd's polling watchers (filesystem.Filesystem/CreateWatcher, GetWatcherEvents,
// RemoveWatcher; the Python SDK's sync watch_dir): the daemon keeps the guest's fs/watch stream
// open and buffers its events until they are fetched.
#include <deque>
#include <mutex>

#include "common/json_util.h"
#include "common/strings.h"
#include "daemon/daemon_api.h"
#include "daemon/e2b/e2b_api.h"
#include "daemon/e2b/translate.h"

namespace agentbox::daemon::e2b {

namespace {

constexpr size_t kMaxWatchersPerSandbox = 64;
constexpr size_t kMaxBufferedEvents = 10000;

http::Response ConnectError(const std::string& code, const std::string& message) {
  http::Response r;
  r.status = ConnectHttpStatus(code);
  r.body = DumpJson(Json{{"code", code}, {"message", message}});
  return r;
}

}  // namespace

struct E2bApi::Watcher {
  std::string sandbox;
  std::mutex mu;
  std::shared_ptr<http::BodySource> stream;  // the guest's fs/watch; reset to stop it
  std::string pending;                       // bytes of an incomplete line
  std::deque<Json> events;
  bool overflowed = false;
  std::string ended;  // why the guest's stream ended ("" while it runs)
};

void E2bApi::PumpWatcher(std::shared_ptr<Watcher> w) {
  std::shared_ptr<http::BodySource> stream;
  {
    std::lock_guard<std::mutex> lock(w->mu);
    stream = w->stream;
  }
  if (!stream) {
    return;
  }
  std::weak_ptr<Watcher> weak = w;
  stream->Next([this, weak](Result<std::string_view> bytes, bool last) {
    auto self = weak.lock();
    if (!self) {
      return;
    }
    {
      std::lock_guard<std::mutex> lock(self->mu);
      if (!self->stream) {
        return;  // removed
      }
      if (!bytes) {
        self->ended = "the watch ended: " + bytes.error().message;
        self->stream.reset();
        return;
      }
      self->pending.append(*bytes);
      size_t nl;
      while ((nl = self->pending.find('\n')) != std::string::npos) {
        auto ev = WatchEventFromGuest(ParseUntrustedJson(self->pending.substr(0, nl)));
        self->pending.erase(0, nl + 1);
        if (!ev || !ev->contains("filesystem")) {
          continue;
        }
        if (self->events.size() == kMaxBufferedEvents) {
          self->overflowed = true;  // the oldest are kept; the client learns it missed some
          continue;
        }
        self->events.push_back(std::move((*ev)["filesystem"]));
      }
      if (last) {
        self->ended = "the watch ended (the sandbox's guest closed it)";
        self->stream.reset();
        return;
      }
    }
    PumpWatcher(self);
  });
}

void E2bApi::Watchers(const Target& t, const std::string& method, const Json& msg,
                      http::Respond respond) {
  auto ok = [&](Json body) {
    http::Response out;
    out.body = DumpJson(body);
    respond(std::move(out));
  };
  if (method == "filesystem.Filesystem/CreateWatcher") {
    if (!msg.contains("path") || !msg["path"].is_string() ||
        msg["path"].get<std::string>().empty()) {
      return respond(ConnectError("invalid_argument", "path is required"));
    }
    if (msg.contains("recursive") && !msg["recursive"].is_boolean()) {
      return respond(ConnectError("invalid_argument", "recursive must be a boolean"));
    }
    {
      std::lock_guard<std::mutex> lock(watchers_mu_);
      // Ended watches of sandboxes that are gone will never be fetched: dropped here.
      for (auto it = watchers_.begin(); it != watchers_.end();) {
        bool ended;
        {
          std::lock_guard<std::mutex> l2(it->second->mu);
          ended = !it->second->stream;
        }
        if (ended && !d_.Find(it->second->sandbox, DaemonApi::Caller{"", true})) {
          it = watchers_.erase(it);
        } else {
          ++it;
        }
      }
      size_t mine = 0;
      for (const auto& [id, w] : watchers_) {
        mine += w->sandbox == t.id ? 1 : 0;
      }
      if (mine >= kMaxWatchersPerSandbox) {
        return respond(ConnectError(
            "resource_exhausted",
            "at most " + std::to_string(kMaxWatchersPerSandbox) + " watchers per sandbox"));
      }
    }
    http::ClientRequest cr;
    cr.method = "POST";
    cr.target = "/api/v1/fs/watch";
    cr.headers = {{"X-Access-Token", t.guest_token}, {"Content-Type", "application/json"}};
    cr.body = DumpJson(Json{{"path", ResolvePath(msg["path"].get<std::string>(), t.user)},
                            {"recursive", ValueOr(msg, "recursive", false)}});
    return d_.client_.SendStreaming(
        t.socket, std::move(cr), d_.health_.deadlines().stream_idle,
        [this, t, respond](Result<http::ClientResponse> r) {
          if (!r) {
            return respond(ConnectError("unavailable", "sandbox guest: " + r.error().message));
          }
          if (r->status != 200) {
            const int status = r->status;
            auto stream = r->stream;
            // The guest's error is one small JSON body.
            return stream->Next([respond, status, stream](Result<std::string_view> b, bool) {
              const Json env = ParseUntrustedJson(b ? std::string(*b) : std::string("{}"));
              respond(ConnectError(ConnectCode(status),
                                   env.is_object() ? ValueOr(env, "message", "") : ""));
            });
          }
          auto w = std::make_shared<Watcher>();
          w->sandbox = t.id;
          w->stream = r->stream;
          const std::string id = "w-" + RandomId(16);
          {
            std::lock_guard<std::mutex> lock(watchers_mu_);
            watchers_[id] = w;
          }
          PumpWatcher(w);
          http::Response out;
          out.body = DumpJson(Json{{"watcherId", id}});
          respond(std::move(out));
        });
  }
  const std::string id = ValueOr(msg, "watcherId", ValueOr(msg, "watcher_id", ""));
  std::shared_ptr<Watcher> w;
  {
    std::lock_guard<std::mutex> lock(watchers_mu_);
    auto it = watchers_.find(id);
    if (it != watchers_.end() && it->second->sandbox == t.id) {
      w = it->second;
      if (method == "filesystem.Filesystem/RemoveWatcher") {
        watchers_.erase(it);
      }
    }
  }
  if (!w) {
    return respond(ConnectError("not_found", "watcher '" + id + "' not found"));
  }
  std::lock_guard<std::mutex> lock(w->mu);
  if (method == "filesystem.Filesystem/RemoveWatcher") {
    w->stream.reset();  // closes the guest's watch
    return ok(Json::object());
  }
  // GetWatcherEvents: what came since the last call; an ended watch reports why, once drained.
  if (w->events.empty() && !w->ended.empty()) {
    const std::string why = w->ended;
    {
      std::lock_guard<std::mutex> l2(watchers_mu_);
      watchers_.erase(id);
    }
    return respond(ConnectError("unavailable", why));
  }
  if (w->overflowed) {
    w->overflowed = false;
    w->events.clear();
    return respond(ConnectError(
        "resource_exhausted", "more than " + std::to_string(kMaxBufferedEvents) +
                                  " events were waiting: some were dropped; create a new watcher"));
  }
  Json events = Json::array();
  for (auto& e : w->events) {
    events.push_back(std::move(e));
  }
  w->events.clear();
  ok(Json{{"events", std::move(events)}});
}

}  // namespace agentbox::daemon::e2b
