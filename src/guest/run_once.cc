#include "guest/run_once.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "guest/core/child_reaper.h"
#include "guest/core/spawn.h"
#include "guest/sessions/session_manager.h"

namespace agentbox::guest {

namespace {

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Fail(ErrnoError(errno, "read " + path));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<void> WriteAtomically(const std::string& path, const std::string& data) {
  if (path == "-") {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(STDOUT_FILENO, data.data() + off, data.size() - off);
      if (n <= 0) {
        return Fail(ErrnoError(errno, "write stdout"));
      }
      off += static_cast<size_t>(n);
    }
    return {};
  }
  // The result may go to a directory nobody made yet (a fresh session's prefix on a Cloud
  // Storage volume): create the missing parents.
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    if (::mkdir(path.substr(0, pos).c_str(), 0755) != 0 && errno != EEXIST) {
      return Fail(ErrnoError(errno, "create " + path.substr(0, pos)));
    }
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) {
    return Fail(ErrnoError(errno, "create " + tmp));
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.Get(), data.data() + off, data.size() - off);
    if (n <= 0) {
      ::unlink(tmp.c_str());
      return Fail(ErrnoError(errno, "write " + tmp));
    }
    off += static_cast<size_t>(n);
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Fail(ErrnoError(errno, "rename to " + path));
  }
  return {};
}

SessionState FreshState() {
  SessionState s;
  for (const auto& kv : CurrentEnvironment()) {
    size_t eq = kv.find('=');
    if (eq != std::string::npos && eq > 0) {
      s.env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  char buf[4096];
  s.cwd = ::getcwd(buf, sizeof(buf)) ? buf : "/";
  return s;
}

}  // namespace

Result<Json> RunOnce(const RunOnceOptions& opts) {
  SessionState state;
  if (!opts.workdir.empty() && ::chdir(opts.workdir.c_str()) != 0) {
    return Fail(ErrnoError(errno, "workdir " + opts.workdir));
  }
  if (opts.state_path.empty()) {
    state = FreshState();
  } else {
    auto text = ReadWholeFile(opts.state_path);
    if (!text) {
      return Fail(text.error());
    }
    auto j = ParseJsonObject(*text);
    if (!j) {
      return Fail(ErrorCode::kInvalidArgument, opts.state_path + ": " + j.error().message);
    }
    // Accept both a bare state and a previous run-once result ({..., "state": {...}}).
    const Json& sj = j->contains("state") && (*j)["state"].is_object() ? (*j)["state"] : *j;
    auto s = SessionStateFromJson(sj);
    if (!s) {
      return Fail(ErrorCode::kInvalidArgument, opts.state_path + ": " + s.error().message);
    }
    state = std::move(*s);
  }
  auto shell = DetectShell(opts.shell);
  if (!shell) {
    return Fail(shell.error());
  }
  boost::asio::io_context io;
  ChildReaper reaper(io);
  SessionConfig cfg;
  cfg.shell = *shell;
  cfg.output_cap = opts.output_cap;
  SessionManager sessions(io, reaper, cfg, SessionState{}, 1);
  auto session = sessions.CreateFromState("run-once", std::move(state));
  if (!session) {
    return Fail(session.error());
  }
  ExecOptions eo;
  eo.command = opts.command;
  if (!opts.exec_dir.empty()) {
    eo.exec_dir = opts.exec_dir;
  }
  eo.timeout_s = opts.timeout_s;
  eo.stdio = Stdio::kNull;
  eo.separate_streams = !opts.combined_output;
  if (auto r = (*session)->Start(eo); !r) {
    if (r.error().code != ErrorCode::kInvalidArgument && r.error().code != ErrorCode::kValidation) {
      return Fail(r.error());
    }
    // The request itself is wrong (e.g. exec_dir is not a directory): a result saying so, with
    // the state unchanged, so that the caller answers as the guest would (400), not as for a
    // broken executor.
    return Json{
        {"exit_code", nullptr},
        {"stdout", ""},
        {"stderr", ""},
        {"output", ""},
        {"timed_out", false},
        {"output_truncated", false},
        {"error", {{"code", ErrorCodeName(r.error().code)}, {"message", r.error().message}}},
        {"state", SessionStateToJson((*session)->state())}};
  }
  Json result;
  auto s = *session;
  s->WaitFor(std::chrono::hours(24 * 365), [&](bool) {
    CommandView v = *s->Current();
    result = {{"exit_code", v.exit_code.value_or(-1)},
              {"stdout", v.stdout_text},
              {"stderr", v.stderr_text},
              {"output", v.output},
              {"timed_out", v.timed_out},
              {"output_truncated", v.output_truncated},
              {"state", SessionStateToJson(s->state())}};
    sessions.ShutdownAll();
    io.stop();
  });
  io.run();
  if (result.is_null()) {
    return Fail(ErrorCode::kInternal, "run-once ended without a result");
  }
  return result;
}

Result<void> RunOnceToFile(const RunOnceOptions& opts) {
  auto r = RunOnce(opts);
  if (!r) {
    return Fail(r.error());
  }
  return WriteAtomically(opts.out_path, DumpJson(*r) + "\n");
}

}  // namespace agentbox::guest
