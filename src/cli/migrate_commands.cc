// `agentbox migrate ID --to BACKEND` and `agentbox drain BACKEND [--to BACKEND]`: moving live
// sandboxes between backends (docs/migration.md).
#include <fmt/format.h>

#include <iostream>

#include "cli/commands.h"
#include "cli/format.h"
#include "common/json_util.h"

namespace agentbox::cli {

namespace {

// "process 812 (sleep 300): a running background process: ..." for one not_moved row.
std::string NotMovedLine(const Json& n) {
  const std::string what = n.value("what", "");
  std::string head = what;
  if (what == "process") {
    head = fmt::format("process {} ({})", n.value("pid", 0), n.value("command", ""));
  } else if (what == "running_command") {
    head = fmt::format("session {}: running command ({})", n.value("session_id", ""),
                       n.value("command", ""));
  } else if (what == "files") {
    head = "files in " + n.value("path", "");
  }
  return head + ": " + n.value("detail", "");
}

std::string Ms(const Json& timings, const char* key) {
  return timings.is_object() && timings.contains(key) && timings[key].is_number()
             ? fmt::format("{:.0f} ms", timings[key].get<double>())
             : "-";
}

}  // namespace

int Migrate(DaemonClient& client, const std::string& id, const std::string& to, bool json) {
  const Json body = {{"backend", to}};
  auto r = client.Call("POST", "/v1/sandboxes/" + UrlEscape(id) + "/migrate", &body);
  if (!r) {
    return ReportError(r.error());
  }
  if (json) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  const Json& t = (*r)["timings_ms"];
  std::cout << fmt::format("{} moved {} -> {} in {} (calls held {})\n", id, r->value("from", ""),
                           r->value("to", ""), Ms(t, "total"), Ms(t, "held"));
  const Json& moved = (*r)["moved"];
  std::cout << fmt::format("  moved: /workspace ({} entries, {} bytes), {} session(s)\n",
                           moved["workspace"].value("entries", 0),
                           moved["workspace"].value("bytes", 0), moved["sessions"].size());
  for (const auto& n : (*r)["not_moved"]) {
    std::cout << "  not moved: " << NotMovedLine(n) << "\n";
  }
  if (r->contains("warning")) {
    std::cerr << "agentbox: warning: " << (*r)["warning"].get<std::string>() << "\n";
  }
  return 0;
}

int Drain(DaemonClient& client, const std::string& backend, const std::string& to, int concurrency,
          bool json) {
  Json body = {{"backend", backend}, {"concurrency", concurrency}};
  if (!to.empty()) {
    body["to"] = to;
  }
  std::string pending;
  Json done;
  size_t failed = 0;
  auto on_data = [&](std::string_view bytes) {
    pending.append(bytes);
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      const std::string text = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      Json line = ParseUntrustedJson(text);
      if (!line.is_object()) {
        continue;
      }
      if (json) {
        std::cout << text << "\n" << std::flush;
      }
      const std::string event = line.value("event", "");
      if (event == "done") {
        done = line;
      } else if (event == "start" && !json) {
        std::cout << fmt::format("draining {}: {} sandbox(es), {} at a time, to {}\n", backend,
                                 line.value("sandboxes", 0), line.value("concurrency", 0),
                                 to.empty() ? "the selector's choice" : to)
                  << std::flush;
      } else if (event == "result") {
        const bool ok = line.value("ok", false);
        failed += ok ? 0 : 1;
        if (json) {
          continue;
        }
        std::cout << fmt::format("[{}/{}] {} ", line.value("done", 0), line.value("total", 0),
                                 line.value("id", ""));
        if (ok) {
          std::cout << fmt::format("-> {} ok ({:.0f} ms)", line.value("to", ""),
                                   line.value("ms", 0.0));
          for (const auto& n : line.value("not_moved", Json::array())) {
            std::cout << "\n    not moved: " << NotMovedLine(n);
          }
        } else {
          std::cout << "FAILED (stays on " << backend
                    << "): " << line["error"].value("message", std::string("?"));
        }
        std::cout << "\n" << std::flush;
      }
    }
    return true;
  };
  auto r = client.Stream(
      "/v1/admin/drain", on_data, [] { return false; }, &body);
  if (!r) {
    return ReportError(r.error());
  }
  if (!r->ok()) {
    return ReportError(r->ErrorMessage());
  }
  if (!done.is_object()) {
    return ReportError("agentboxd ended the drain of " + backend + " without its summary");
  }
  if (!json) {
    std::cout << fmt::format("{}: {} moved, {} failed ({:.1f} s)\n", backend,
                             done.value("moved", 0), done.value("failed", 0),
                             done.value("ms", 0.0) / 1000);
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace agentbox::cli
