#include "guest/request_fields.h"

#include <map>

namespace agentbox::guest {

namespace {

const std::map<std::string_view, FieldSchema>& Schemas() {
  static const auto* kSchemas = new std::map<std::string_view, FieldSchema>{
      // ai-manus's sandbox API (sandbox/app/schemas), with agentbox's additions.
      {"shell/exec",
       FieldSchema::Warn({"id", "command", "exec_dir", "wait_seconds", "timeout", "pty"},
                         {"timeout"})},
      {"shell/view", FieldSchema::Warn({"id", "console", "raw"})},
      {"shell/wait", FieldSchema::Warn({"id", "seconds"})},
      {"shell/write", FieldSchema::Warn({"id", "input", "press_enter"})},
      {"shell/kill", FieldSchema::Warn({"id"})},
      {"file/read", FieldSchema::Warn({"file", "start_line", "end_line", "max_length", "sudo"})},
      {"file/write", FieldSchema::Warn({"file", "content", "append", "leading_newline",
                                        "trailing_newline", "sudo"})},
      {"file/replace", FieldSchema::Warn({"file", "old_str", "new_str", "sudo"})},
      {"file/search", FieldSchema::Warn({"file", "regex", "sudo"})},
      {"file/find", FieldSchema::Warn({"path", "glob"})},
      // ai-manus's clients call these too (backend docker_sandbox.py).
      {"file/exists", FieldSchema::Warn({"path"})},
      {"file/delete", FieldSchema::Warn({"path", "recursive"})},
      {"file/list", FieldSchema::Warn({"path", "recursive"})},
      // agentbox's own.
      {"shell/run", FieldSchema::Warn({"session_id", "command", "timeout"}, {"timeout"})},
      {"shell/list", FieldSchema::Warn({})},
      {"shell/delete", FieldSchema::Warn({"id"})},
      {"shell/state", FieldSchema::Warn({"id"})},
      {"shell/restore", FieldSchema::Warn({"id", "state"})},
      {"process/start", FieldSchema::Warn({"session_id", "command", "cwd", "env"})},
      {"process/list", FieldSchema::Warn({"session_id"})},
      {"process/logs", FieldSchema::Warn({"pid", "offset", "max_bytes"})},
      {"process/kill", FieldSchema::Warn({"pid", "session_id", "pattern", "signal"})},
      {"exec/start",
       FieldSchema::Warn(
           {"cmd", "args", "envs", "cwd", "user", "user_fallback", "stdin", "tag", "pty"})},
      {"fs/stat", FieldSchema::Warn({"path"})},
      {"fs/list", FieldSchema::Warn({"path", "depth"})},
      {"fs/mkdir", FieldSchema::Warn({"path", "owner"})},
      {"fs/chown", FieldSchema::Warn({"path", "owner"})},
      {"fs/move", FieldSchema::Warn({"source", "destination"})},
      {"fs/watch", FieldSchema::Warn({"path", "recursive"})},
      {"exec/connect", FieldSchema::Warn({"pid", "tag"})},
      {"exec/list", FieldSchema::Warn({})},
      {"exec/input", FieldSchema::Warn({"pid", "tag", "data"})},
      {"exec/close-stdin", FieldSchema::Warn({"pid", "tag"})},
      {"exec/signal", FieldSchema::Warn({"pid", "tag", "signal"})},
      {"exec/resize", FieldSchema::Warn({"pid", "tag", "rows", "cols"})},
  };
  return *kSchemas;
}

// A session state (shell/state's `state`, run-once's snapshot): one written by a newer guest may
// carry more than this one knows.
const FieldSchema& StateSchema() {
  static const auto* kState = new FieldSchema(
      FieldSchema::Warn({"version", "shell", "cwd", "env", "variables", "functions",
                         "exported_functions", "aliases", "options", "last_exit_code"}));
  return *kState;
}

}  // namespace

Result<std::vector<UnknownField>> CheckGuestFields(std::string_view path, const Json& body) {
  constexpr std::string_view kPrefix = "/api/v1/";
  if (!path.starts_with(kPrefix)) {
    return std::vector<UnknownField>{};
  }
  const std::string_view op = path.substr(kPrefix.size());
  auto it = Schemas().find(op);
  if (it == Schemas().end()) {
    return std::vector<UnknownField>{};
  }
  auto top = CheckKnownFields(body, it->second);
  if (!top || op != "shell/restore") {
    return top;
  }
  static const auto* kOptions = new FieldSchema(FieldSchema::Warn({"set", "shopt"}));
  auto st = body.find("state");
  if (st == body.end() || !st->is_object()) {
    return top;
  }
  std::vector<Result<std::vector<UnknownField>>> checks = {
      CheckKnownFields(*st, StateSchema(), "state")};
  if (auto options = st->find("options"); options != st->end()) {
    checks.push_back(CheckKnownFields(*options, *kOptions, "state.options"));
  }
  for (auto& nested : checks) {
    if (!nested) {
      return nested;
    }
    top->insert(top->end(), nested->begin(), nested->end());
  }
  return top;
}

Result<std::vector<UnknownField>> CheckUploadFields(const std::vector<std::string>& names) {
  static const auto* kForm = new FieldSchema(FieldSchema::Warn({"path", "file"}));
  Json form = Json::object();
  for (const auto& n : names) {
    form[n] = true;
  }
  return CheckKnownFields(form, *kForm);
}

}  // namespace agentbox::guest
