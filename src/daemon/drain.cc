// POST /v1/admin/drain: moves every sandbox off one backend, a few at a time, reporting each
// result as it comes (docs/migration.md). The way to empty a backend that was rolled back.
#include <atomic>
#include <thread>

#include "common/guarded.h"
#include "common/known_fields.h"
#include "common/log.h"
#include "daemon/api_detail.h"
#include "daemon/daemon_api.h"
#include "http/field_check.h"
#include "http/queue_source.h"

namespace agentbox::daemon {

using detail::Clock;

namespace {

// A bad or unknown backend name: 400, naming the field.
Error BadField(const std::string& field, const std::string& why) {
  return Error{ErrorCode::kInvalidArgument, "'" + field + "' " + why};
}

constexpr int64_t kMaxConcurrency = 8;

std::string Line(const Json& j) { return DumpJson(j) + "\n"; }

}  // namespace

void DaemonApi::Drain(const http::Request& req, const Caller& caller, http::Respond respond) {
  if (req.method != "POST") {
    return respond(JsonErrStatus(405, "use POST on /v1/admin/drain"));
  }
  if (!caller.admin) {
    return respond(
        JsonErr({ErrorCode::kForbidden, "draining a backend is for the local socket only"}));
  }
  auto body = ParseJsonObject(req.body);
  if (!body) {
    return respond(JsonErr(body.error()));
  }
  static const FieldSchema kBody = FieldSchema::Reject({"backend", "to", "concurrency"});
  if (!http::AcceptFields(CheckKnownFields(*body, kBody), "POST /v1/admin/drain", respond)) {
    return;
  }
  JsonFields f(*body);
  auto backend = f.OptString("backend");
  auto to = f.OptString("to");
  auto concurrency = f.OptInt("concurrency", 1, kMaxConcurrency);
  for (const Error* e : {backend ? nullptr : &backend.error(), to ? nullptr : &to.error(),
                         concurrency ? nullptr : &concurrency.error()}) {
    if (e) {
      return respond(JsonErr(*e));
    }
  }
  const std::string from = backend->value_or("");
  const std::string target = to->value_or("");
  if (from.empty()) {
    return respond(JsonErr(BadField("backend", "is required: the backend to empty")));
  }
  if (!backends_.count(from)) {
    return respond(JsonErr(BadField("backend", "unknown backend '" + from + "'")));
  }
  if (!target.empty() && !backends_.count(target)) {
    return respond(JsonErr(BadField("to", "unknown backend '" + target + "'")));
  }
  if (target == from) {
    return respond(JsonErr(BadField("to", "must differ from the backend being drained")));
  }
  const int workers = static_cast<int>(concurrency->value_or(2));
  pool_.Post([this, from, target, workers, respond] {
    const auto start = Clock::now();
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, e] : sandboxes_) {
        if (e.info.backend == from) {
          ids.push_back(id);
        }
      }
    }
    Log(LogLevel::kInfo, "drain.begin", "backend={} to={} sandboxes={} concurrency={}", from,
        target.empty() ? "(selector)" : target, ids.size(), workers);
    // A stream of JSON lines: start, one result per sandbox as it finishes, done.
    auto source = std::make_shared<http::QueueSource>();
    http::Response r;
    r.content_type = "application/x-ndjson";
    r.headers.emplace_back("Cache-Control", "no-cache");
    r.stream = source;
    respond(std::move(r));
    source->Push(Line({{"event", "start"},
                       {"backend", from},
                       {"to", target.empty() ? Json(nullptr) : Json(target)},
                       {"sandboxes", ids.size()},
                       {"concurrency", workers}}));
    std::atomic<size_t> next{0};
    std::atomic<size_t> moved{0};
    std::atomic<size_t> done{0};
    std::mutex results_mu;
    Json results = Json::array();
    auto work = [&] {
      for (size_t i = next++; i < ids.size(); i = next++) {
        const std::string& id = ids[i];
        const auto one = Clock::now();
        Json row{{"event", "result"}, {"id", id}, {"from", from}};
        Result<Json> m = Fail(ErrorCode::kConflict, "sandbox '" + id + "' is already moving");
        if (gate_.Close(id)) {
          m = MoveSandbox(id, target, {from});
        }
        if (m) {
          ++moved;
          row["ok"] = true;
          row["to"] = (*m)["to"];
          row["not_moved"] = (*m)["not_moved"];
          row["timings_ms"] = (*m)["timings_ms"];
        } else {
          row["ok"] = false;
          row["error"] = {{"code", ErrorCodeName(m.error().code)},
                          {"status", HttpStatus(m.error().code)},
                          {"message", m.error().message}};
        }
        row["ms"] = std::chrono::duration<double, std::milli>(Clock::now() - one).count();
        row["done"] = ++done;
        row["total"] = ids.size();
        source->Push(Line(row));
        std::lock_guard<std::mutex> lock(results_mu);
        row.erase("event");
        results.push_back(std::move(row));
      }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < std::min<int>(workers, static_cast<int>(ids.size())); ++t) {
      threads.emplace_back([&work] { CallGuarded(work, "drain"); });
    }
    for (auto& t : threads) {
      t.join();
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    Log(LogLevel::kInfo, "drain.end", "backend={} moved={} failed={} ms={:.1f}", from, moved.load(),
        ids.size() - moved.load(), ms);
    source->Push(Line({{"event", "done"},
                       {"backend", from},
                       {"moved", moved.load()},
                       {"failed", ids.size() - moved.load()},
                       {"ms", ms},
                       {"results", std::move(results)}}),
                 true);
  });
}

}  // namespace agentbox::daemon
