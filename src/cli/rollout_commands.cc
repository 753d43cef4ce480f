// `agentbox rollout status|set|stop`: the rollout of one backend against SANDBOX_BACKEND, on top
// of GET /v1/info, GET /metrics and PUT /v1/flags (docs/operations.md is the runbook).
#include <fmt/format.h>

#include <iostream>
#include <map>
#include <sstream>

#include "cli/commands.h"
#include "cli/format.h"
#include "common/time_util.h"

namespace agentbox::cli {

namespace {

// Prometheus text: `name{labels} value` lines of one family, as (labels map, value).
std::vector<std::pair<std::map<std::string, std::string>, double>> Samples(
    const std::string& text, const std::string& family) {
  std::vector<std::pair<std::map<std::string, std::string>, double>> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(family, 0) != 0 || line.size() <= family.size() ||
        (line[family.size()] != '{' && line[family.size()] != ' ')) {
      continue;
    }
    std::map<std::string, std::string> labels;
    size_t pos = family.size();
    if (line[pos] == '{') {
      const size_t end = line.find('}', pos);
      if (end == std::string::npos) {
        continue;
      }
      std::string body = line.substr(pos + 1, end - pos - 1);
      size_t i = 0;
      while (i < body.size()) {
        const size_t eq = body.find("=\"", i);
        if (eq == std::string::npos) {
          break;
        }
        const size_t close = body.find('"', eq + 2);
        if (close == std::string::npos) {
          break;
        }
        labels[body.substr(i, eq - i)] = body.substr(eq + 2, close - eq - 2);
        i = close + 2;  // past `",`
      }
      pos = end + 1;
    }
    try {
      out.emplace_back(labels, std::stod(line.substr(pos + 1)));
    } catch (const std::exception&) {
    }
  }
  return out;
}

std::string Percent(double part, double whole) {
  return whole > 0 ? fmt::format("{:.1f}%", 100.0 * part / whole) : "-";
}

}  // namespace

int RolloutStatus(DaemonClient& client, bool json) {
  auto info = client.Call("GET", "/v1/info");
  if (!info) {
    return ReportError(info.error());
  }
  auto metrics = client.Send("GET", "/metrics", nullptr);
  const std::string text = metrics && metrics->status == 200 ? metrics->body : "";
  // Per backend since the daemon started: operations and errors, decisions by reason.
  std::map<std::string, std::pair<double, double>> ops;  // backend -> (total, errors)
  for (const auto& [labels, v] : Samples(text, "agentbox_operation_total")) {
    auto& o = ops[labels.count("backend") ? labels.at("backend") : "?"];
    o.first += v;
    o.second += labels.count("outcome") && labels.at("outcome") == "error" ? v : 0;
  }
  std::map<std::string, std::map<std::string, double>> reasons;  // backend -> reason -> n
  double decisions = 0;
  for (const auto& [labels, v] : Samples(text, "agentbox_selection_total")) {
    reasons[labels.count("backend") ? labels.at("backend") : "?"]
           [labels.count("reason") ? labels.at("reason") : "?"] += v;
    decisions += v;
  }
  const Json& settings = (*info)["settings"];
  if (json) {
    Json out = {{"baseline", settings["SANDBOX_BACKEND"]["value"]},
                {"rollout", settings.contains("rollout") ? settings["rollout"] : Json(nullptr)},
                {"breaker", info->contains("breaker") ? (*info)["breaker"] : Json(nullptr)},
                {"decision",
                 {{"backend", (*info)["backend"]},
                  {"reason", (*info)["reason"]},
                  {"detail", (*info)["detail"]}}},
                {"backends", Json::object()}};
    for (const auto& [b, o] : ops) {
      out["backends"][b]["operations"] = o.first;
      out["backends"][b]["errors"] = o.second;
    }
    for (const auto& [b, rs] : reasons) {
      out["backends"][b]["decisions"] = rs;
    }
    if (info->contains("backends")) {
      for (const auto& [b, v] : (*info)["backends"].items()) {
        if (v.contains("validation")) {
          out["backends"][b]["validation"] = v["validation"];
        }
      }
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "baseline (SANDBOX_BACKEND): " << settings["SANDBOX_BACKEND"].value("value", "")
            << "\n";
  if (settings.contains("rollout")) {
    const Json& r = settings["rollout"];
    std::cout << "rollout: " << r.value("backend", "") << " at " << r.value("percentage", 0)
              << "% (" << r.value("percentage_key", "") << ")"
              << (r.value("kill_switch", false) ? ", KILL SWITCH ON: everyone to the baseline" : "")
              << "\n";
  } else {
    std::cout << "rollout: none\n";
  }
  if (info->contains("breaker")) {
    const Json& b = (*info)["breaker"];
    std::cout << "breaker: " << b.value("state", "") << " for " << CompactDuration(b.value("since_s", 0.0))
              << (b.value("why", "").empty() ? "" : " (" + b.value("why", "") + ")") << "\n";
    const Json& w = b["window"];
    std::cout << "  this window: " << b.value("candidate", "") << " "
              << w.value("candidate_errors", 0) << "/" << w.value("candidate_ops", 0)
              << " errors, " << b.value("baseline", "") << " " << w.value("baseline_errors", 0)
              << "/" << w.value("baseline_ops", 0) << " errors\n";
  } else {
    std::cout << "breaker: off (no rollout, or AGENTBOX_BREAKER=false)\n";
  }
  std::cout << "new sandboxes now: "
            << ((*info)["backend"].is_string() ? (*info)["backend"].get<std::string>() : "none")
            << " (" << info->value("reason", "") << ") " << info->value("detail", "") << "\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"BACKEND", "SHARE", "DECISIONS BY REASON", "OPS", "ERROR RATE", "VALIDATION"}};
  std::map<std::string, bool> names;
  for (const auto& [b, o] : ops) names[b] = true;
  for (const auto& [b, r] : reasons) names[b] = true;
  if (info->contains("backends")) {
    for (const auto& [b, v] : (*info)["backends"].items()) names[b] = true;
  }
  for (const auto& entry : names) {
    const std::string& b = entry.first;
    double mine = 0;
    std::string by;
    for (const auto& [reason, n] : reasons[b]) {
      mine += n;
      by += (by.empty() ? "" : " ") + reason + "=" + fmt::format("{:.0f}", n);
    }
    std::string validation = "-";
    if (info->contains("backends") && (*info)["backends"].contains(b) &&
        (*info)["backends"][b].contains("validation")) {
      const Json& v = (*info)["backends"][b]["validation"];
      validation = std::string(v.value("passed", false) ? "passed " : "FAILED ") +
                   RelativeTime(v.value("ran_at", 0.0), NowUnix());
    }
    rows.push_back({b, Percent(mine, decisions), by.empty() ? "-" : by,
                    fmt::format("{:.0f}", ops[b].first), Percent(ops[b].second, ops[b].first),
                    validation});
  }
  PrintTable(rows, std::cout);
  std::cout << "(counts since agentboxd started; /metrics and docs/operations.md for rates)\n";
  return 0;
}

int RolloutSet(DaemonClient& client, const std::string& backend, int percentage, bool force) {
  if (percentage < 0 || percentage > 100) {
    return ReportError(Error{ErrorCode::kInvalidArgument, "the percentage must be 0..100"});
  }
  Json body = {{"flags",
                {{"AGENTBOX_ROLLOUT_BACKEND", backend},
                 {"AGENTBOX_ROLLOUT_PERCENTAGE", std::to_string(percentage)},
                 {"AGENTBOX_ROLLOUT_KILL_SWITCH", nullptr}}}};
  if (force) {
    body["force"] = true;
  }
  auto r = client.Call("PUT", "/v1/flags", &body);
  if (!r) {
    return ReportError(r.error());
  }
  std::cout << "rollout of " << backend << " at " << percentage << "% (config_version "
            << r->value("config_version", "") << ")\n";
  if (r->contains("decision")) {
    const Json& d = (*r)["decision"];
    std::cout << "new sandboxes now: "
              << (d["backend"].is_string() ? d["backend"].get<std::string>() : "none") << " ("
              << d.value("reason", "") << ")\n";
  }
  return 0;
}

int RolloutStop(DaemonClient& client) {
  Json body = {{"flags", {{"AGENTBOX_ROLLOUT_KILL_SWITCH", "true"}}}};
  auto r = client.Call("PUT", "/v1/flags", &body);
  if (!r) {
    return ReportError(r.error());
  }
  std::cout << "kill switch on: every new sandbox goes to the baseline (config_version "
            << r->value("config_version", "") << "); sandboxes already placed stay where they are\n";
  return 0;
}

}  // namespace agentbox::cli
