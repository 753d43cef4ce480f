#include "guest/exec_api.h"

#include "common/base64.h"
#include "guest/files/fs_entries.h"
#include "guest/processes/process_manager.h"
#include "http/envelope.h"
#include "http/queue_source.h"

namespace agentbox::guest {

namespace {

http::Response StreamOf(std::shared_ptr<http::QueueSource> source) {
  http::Response r;
  r.content_type = "application/x-ndjson";
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.stream = std::move(source);
  return r;
}

Result<pid_t> Selected(const ExecManager& exec, const Json& b) {
  JsonFields f(b);
  auto pid = f.OptInt("pid", 1, 1 << 30);
  auto tag = f.OptString("tag");
  if (!pid) {
    return Fail(pid.error());
  }
  if (!tag) {
    return Fail(tag.error());
  }
  std::optional<pid_t> p;
  if (*pid) {
    p = static_cast<pid_t>(**pid);
  }
  return exec.Resolve(p, *tag);
}

}  // namespace

Result<ExecSpec> ParseExecSpec(const Json& b) {
  JsonFields f(b);
  ExecSpec s;
  auto cmd = f.NonEmptyString("cmd");
  auto cwd = f.OptString("cwd");
  auto user = f.OptString("user");
  auto in = f.OptBool("stdin");
  auto fallback = f.OptBool("user_fallback");
  auto tag = f.OptString("tag");
  auto envs = f.OptStringMap("envs");
  for (const Error* e : {cmd ? nullptr : &cmd.error(), cwd ? nullptr : &cwd.error(),
                         user ? nullptr : &user.error(), in ? nullptr : &in.error(),
                         tag ? nullptr : &tag.error(), envs ? nullptr : &envs.error(),
                         fallback ? nullptr : &fallback.error()}) {
    if (e) {
      return Fail(*e);
    }
  }
  if (auto it = b.find("args"); it != b.end() && !it->is_null()) {
    if (!it->is_array()) {
      return Fail(FieldError("args", "must be an array of strings"));
    }
    for (const auto& a : *it) {
      if (!a.is_string()) {
        return Fail(FieldError("args", "must be an array of strings"));
      }
      s.args.push_back(a.get<std::string>());
    }
  }
  s.cmd = *cmd;
  s.cwd = *cwd;
  s.user = user->value_or("");
  s.stdin = in->value_or(false);
  s.user_fallback = fallback->value_or(false);
  s.tag = *tag;
  for (auto& [k, v] : *envs) {
    s.envs[k] = v;
  }
  if (auto it = b.find("pty"); it != b.end() && !it->is_null()) {
    auto size = ParsePtySize(*it);
    if (!size) {
      return Fail(size.error());
    }
    s.pty = *size;
  }
  return s;
}

Result<ExecSpec::PtySize> ParsePtySize(const Json& j) {
  if (!j.is_object()) {
    return Fail(FieldError("pty", "must be an object {rows, cols}"));
  }
  JsonFields f(j);
  auto rows = f.OptInt("rows", 1, 1000);
  auto cols = f.OptInt("cols", 1, 1000);
  if (!rows || !cols) {
    return Fail(FieldError("pty", "rows and cols must be integers from 1 to 1000"));
  }
  ExecSpec::PtySize size;
  size.rows = static_cast<unsigned short>(rows->value_or(24));
  size.cols = static_cast<unsigned short>(cols->value_or(80));
  return size;
}

bool HandleFs(WorkerPool& pool, const FileConfig& cfg, const std::string& op, Json body,
              const http::Respond& respond) {
  using FsOp = Result<Json> (*)(const Json&, const FileConfig&);
  FsOp fn = op == "stat"    ? &FsStat
            : op == "list"  ? &FsList
            : op == "mkdir" ? &FsMakeDir
            : op == "move"  ? &FsMove
            : op == "chown" ? &FsChown
                            : nullptr;
  if (!fn) {
    return false;
  }
  pool.Post([fn, &cfg, body = std::move(body), respond] {
    auto r = fn(body, cfg);
    respond(r ? http::OkResponse(std::move(*r), "ok") : http::ErrorResponse(r.error()));
  });
  return true;
}

void HandleExec(ExecManager& exec, const std::string& op, const Json& b, http::Respond respond) {
  auto fail = [&](const Error& e) { respond(http::ErrorResponse(e)); };
  if (op == "start") {
    auto spec = ParseExecSpec(b);
    if (!spec) {
      return fail(spec.error());
    }
    auto source = std::make_shared<http::QueueSource>();
    auto pid = exec.Start(*spec, source);
    if (!pid) {
      return fail(pid.error());
    }
    return respond(StreamOf(std::move(source)));
  }
  if (op == "connect") {
    auto pid = Selected(exec, b);
    if (!pid) {
      return fail(pid.error());
    }
    auto source = std::make_shared<http::QueueSource>();
    if (auto r = exec.Attach(*pid, source); !r) {
      return fail(r.error());
    }
    return respond(StreamOf(std::move(source)));
  }
  if (op == "list") {
    Json list = Json::array();
    for (const auto& p : exec.List()) {
      Json j = {{"pid", p.pid},
                {"cmd", p.spec.cmd},
                {"args", p.spec.args},
                {"envs", p.spec.envs},
                {"cwd", p.spec.cwd.value_or("")}};
      if (p.spec.tag) {
        j["tag"] = *p.spec.tag;
      }
      list.push_back(std::move(j));
    }
    return respond(http::OkResponse({{"processes", std::move(list)}}, "ok"));
  }
  if (op == "input" || op == "close-stdin" || op == "signal" || op == "resize") {
    auto pid = Selected(exec, b);
    if (!pid) {
      return fail(pid.error());
    }
    Result<void> r;
    if (op == "input") {
      auto data = JsonFields(b).String("data");
      if (!data) {
        return fail(data.error());
      }
      auto bytes = Base64Decode(*data);
      if (!bytes) {
        return fail(FieldError("data", "must be base64"));
      }
      r = exec.WriteStdin(*pid, *bytes);
    } else if (op == "close-stdin") {
      r = exec.CloseStdin(*pid);
    } else if (op == "resize") {
      auto size = ParsePtySize(b);
      if (!size) {
        return fail(size.error());
      }
      r = exec.Resize(*pid, size->rows, size->cols);
    } else {
      auto it = b.find("signal");
      if (it == b.end()) {
        return fail(FieldError("signal", "is required"));
      }
      auto sig = ParseSignal(*it);
      if (!sig) {
        return fail(sig.error());
      }
      r = exec.Signal(*pid, *sig);
    }
    if (!r) {
      return fail(r.error());
    }
    return respond(http::OkResponse({{"pid", *pid}}, "ok"));
  }
  respond(http::ErrorResponse(404, "no such endpoint: POST /api/v1/exec/" + op));
}

}  // namespace agentbox::guest
