#include "api/session_state.h"

namespace agentbox {

const char* ShellKindName(ShellKind kind) { return kind == ShellKind::kBash ? "bash" : "sh"; }

Json SessionStateToJson(const SessionState& s) {
  Json j = Json::object();
  j["version"] = 1;
  j["shell"] = ShellKindName(s.shell);
  j["cwd"] = s.cwd;
  j["env"] = s.env;
  j["variables"] = s.variables;
  j["functions"] = s.functions;
  j["exported_functions"] = s.exported_functions;
  j["aliases"] = s.aliases;
  j["options"] = {{"set", s.set_options}, {"shopt", s.shopt_options}};
  j["last_exit_code"] = s.last_exit_code;
  return j;
}

namespace {

Result<std::vector<std::string>> StringArray(const Json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return out;
  }
  if (!it->is_array()) {
    return Fail(FieldError(key, "must be an array of strings"));
  }
  for (const auto& v : *it) {
    if (!v.is_string()) {
      return Fail(FieldError(key, "must be an array of strings"));
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace

Result<SessionState> SessionStateFromJson(const Json& j) {
  if (!j.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "session state must be a JSON object");
  }
  JsonFields f(j);
  SessionState s;
  auto shell = f.OptString("shell");
  if (!shell) {
    return Fail(shell.error());
  }
  if (*shell && **shell == "sh") {
    s.shell = ShellKind::kSh;
  } else if (*shell && **shell != "bash") {
    return Fail(FieldError("shell", "must be \"bash\" or \"sh\""));
  }
  auto cwd = f.OptString("cwd");
  if (!cwd) {
    return Fail(cwd.error());
  }
  s.cwd = cwd->value_or("");
  auto env = f.OptStringMap("env");
  if (!env) {
    return Fail(env.error());
  }
  for (auto& [k, v] : *env) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos) {
      return Fail(FieldError("env", "names must be non-empty without '=' or NUL"));
    }
    s.env[k] = v;
  }
  auto vars = StringArray(j, "variables");
  if (!vars) {
    return Fail(vars.error());
  }
  s.variables = std::move(*vars);
  auto xf = StringArray(j, "exported_functions");
  if (!xf) {
    return Fail(xf.error());
  }
  s.exported_functions = std::move(*xf);
  for (const char* key : {"functions", "aliases"}) {
    auto v = f.OptString(key);
    if (!v) {
      return Fail(v.error());
    }
    (std::string_view(key) == "functions" ? s.functions : s.aliases) = v->value_or("");
  }
  if (auto it = j.find("options"); it != j.end() && it->is_object()) {
    JsonFields of(*it);
    auto set = of.OptString("set");
    auto shopt = of.OptString("shopt");
    if (!set || !shopt) {
      return Fail(FieldError("options", "must hold strings 'set' and 'shopt'"));
    }
    s.set_options = set->value_or("");
    s.shopt_options = shopt->value_or("");
  }
  auto rc = f.OptInt("last_exit_code", 0, 255);
  if (!rc) {
    return Fail(rc.error());
  }
  s.last_exit_code = static_cast<int>(rc->value_or(0));
  return s;
}

}  // namespace agentbox
