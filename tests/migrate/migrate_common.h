#pragma once

// Shared by the jail <-> docker migration test and its benchmark: a daemon with both backends
// (agentboxd-crashtest over the crash suite's harness) and the sandbox contents they compare.
#include <unistd.h>

#include <string>

#include "crash/crash_harness.h"

namespace migrate {

using crash::Daemon;
using crash::Json;
using crash::Reply;

// Why jail and docker cannot both run sandboxes here, or "" when they can.
inline std::string WhyUnusable(Daemon& d) {
  if (geteuid() != 0) {
    return "needs root (the jail's id ranges, cgroups, loop devices)";
  }
  if (!d.Start("", 0)) {
    return "agentboxd-crashtest did not start: " + d.LogText();
  }
  const Json info = d.Call("GET", "/v1/info").data();
  for (const char* b : {"jail", "docker"}) {
    const Json p = info.is_object() && info.contains("probes") ? info["probes"] : Json();
    if (p.is_object() && p.contains(b) && !p[b].value("usable", false)) {
      return std::string("backend ") + b + " is not usable here: " + p[b].value("reason", "");
    }
  }
  const Reply r = d.Call("POST", "/v1/sandboxes", R"({"backend":"docker","ttl_s":60})");
  if (r.status != 201) {
    return "no docker sandbox (a Docker engine with agentbox/base:latest is needed): " + r.body;
  }
  d.Call("DELETE", "/v1/sandboxes/" + r.data().value("id", ""));
  return "";
}

// shell/run in `session`; {exit_code, stdout, stderr}.
inline Json Run(const Daemon& d, const std::string& id, const std::string& session,
                const std::string& command) {
  return d
      .Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/run",
            Json{{"session_id", session}, {"command", command}, {"timeout", 120}}.dump())
      .data();
}

// Three sessions, each with its own directory, exported variable, shell variable, function and
// alias.
inline void MakeSessions(const Daemon& d, const std::string& id) {
  for (const std::string s : {"one", "two", "three"}) {
    Run(d, id, s,
        "mkdir -p /workspace/dir-" + s + " && cd /workspace/dir-" + s + " && export V_" + s + "=" +
            s + " && plain_" + s + "=p" + s + " && f_" + s + "() { echo fn-" + s +
            "; } && alias al_" + s + "='echo alias-" + s + "'");
  }
}

// What each session remembers, one line per session.
inline std::string SessionsView(const Daemon& d, const std::string& id) {
  std::string out;
  for (const std::string s : {"one", "two", "three"}) {
    out += Run(d, id, s,
               "shopt -s expand_aliases; echo \"$PWD $V_" + s + " $plain_" + s + " $(f_" + s +
                   ")\"; alias al_" + s)
               .value("stdout", "?");
  }
  return out;
}

// Every entry under /workspace with its type, mode and link target, and every file's digest
// (the directory itself is the backend's: not compared).
inline std::string WorkspaceView(const Daemon& d, const std::string& id) {
  return Run(d, id, "check",
             "cd /workspace && find . -mindepth 1 -path ./lost+found -prune -o -printf "
             "'%p %y %m %l\\n' | sort && find . -path ./lost+found -prune -o -type f -print0 "
             "| sort -z | xargs -0 sha256sum")
      .value("stdout", "?");
}

}  // namespace migrate
