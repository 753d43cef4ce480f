// exec and shell: running commands in a sandbox's shell sessions.
#include <errno.h>
#include <unistd.h>

#include <iostream>
#include <regex>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/interrupt.h"

namespace agentbox::cli {

namespace {

// How long one shell/exec or shell/wait call blocks before the shell prints what the command has
// written so far.
constexpr double kPollSeconds = 1.0;

// Exit status of a command the user interrupted when the guest gives none (128 + SIGINT).
constexpr int kInterruptedStatus = 130;

// Stops the session's running command after Ctrl-C. Returns its exit status (137 when killed).
int KillSessionCommand(DaemonClient& client, const std::string& id, const std::string& session) {
  Json body = {{"id", session}};
  auto r = client.Call("POST", GuestPath(id, "shell/kill"), &body);
  if (!r) {
    ReportError("could not stop the command: " + r.error().message);
    return kInterruptedStatus;
  }
  return static_cast<int>(JsonInt(*r, "returncode").value_or(kInterruptedStatus));
}

int ExitStatus(const std::optional<int64_t>& code) {
  if (!code) {
    return 1;  // the guest knows no status (should not happen once a command completed)
  }
  return static_cast<int>(*code & 0xff);
}

}  // namespace

int Exec(DaemonClient& client, const ExecArgs& a) {
  std::string command = JoinCommand(a.command);
  if (command.find_first_not_of(" \t\r\n") == std::string::npos) {
    return ReportError("exec: the command is empty");
  }
  if (!a.cwd.empty()) {
    command = WithWorkingDirectory(command, a.cwd);
  }
  Json body = {{"session_id", a.session}, {"command", command}, {"timeout", a.timeout_s}};
  InstallInterruptHandler();
  auto r = client.Send("POST", GuestPath(a.id, "shell/run"), &body, /*interruptible=*/true);
  if (!r) {
    if (InterruptPending()) {
      ClearInterrupt();
      const int status = KillSessionCommand(client, a.id, a.session);
      std::cerr << "agentbox: interrupted; the command was stopped\n";
      return status;
    }
    return ReportError(r.error());
  }
  if (!r->ok()) {
    return ReportError(r->ErrorMessage());
  }
  const Json& d = r->data();
  WriteAll(STDOUT_FILENO, JsonString(d, "stdout"));
  WriteAll(STDERR_FILENO, JsonString(d, "stderr"));
  if (auto pid = JsonInt(d, "background_pid")) {
    std::cerr << "agentbox: started background process " << *pid << " (agentbox logs " << a.id
              << " " << *pid << ")\n";
    return 0;
  }
  if (JsonBool(d, "output_truncated")) {
    std::cerr << "agentbox: output truncated: only the end of it was kept\n";
  }
  if (JsonBool(d, "timed_out")) {
    std::cerr << "agentbox: command timed out after " << a.timeout_s << "s\n";
    return 124;
  }
  return ExitStatus(JsonInt(d, "exit_code"));
}

namespace {

// Reads lines from a file descriptor with read(2) so that Ctrl-C (EINTR) can be told apart from
// end of input, which std::getline cannot do.
class LineReader {
 public:
  enum class Status { kLine, kEof, kInterrupted };

  explicit LineReader(int fd) : fd_(fd) {}

  Status Next(std::string& line) {
    for (;;) {
      if (size_t nl = buf_.find('\n'); nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return Status::kLine;
      }
      if (eof_) {
        if (buf_.empty()) {
          return Status::kEof;
        }
        line = std::move(buf_);  // a last line without a newline
        buf_.clear();
        return Status::kLine;
      }
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof(chunk));
      if (n > 0) {
        buf_.append(chunk, static_cast<size_t>(n));
      } else if (n == 0) {
        eof_ = true;
      } else if (errno == EINTR) {
        if (InterruptPending()) {
          buf_.clear();
          return Status::kInterrupted;
        }
      } else {
        eof_ = true;
      }
    }
  }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

// One interactive session: every line runs through shell/exec in the same named session, so
// cwd, environment and shell variables carry over from one line to the next.
class InteractiveShell {
 public:
  InteractiveShell(DaemonClient& client, std::string id, std::string session)
      : client_(client), id_(std::move(id)), session_(std::move(session)) {}

  int Run() {
    const bool tty = ::isatty(STDIN_FILENO) != 0;
    InstallInterruptHandler();
    if (tty) {
      if (auto r = LoadCwd(); !r) {
        return ReportError(r.error());
      }
    }
    LineReader reader(STDIN_FILENO);
    int last_status = 0;
    for (;;) {
      if (tty) {
        std::cerr << id_ << ":" << cwd_ << "$ " << std::flush;
      }
      std::string line;
      const auto got = reader.Next(line);
      if (got == LineReader::Status::kInterrupted) {
        ClearInterrupt();
        std::cerr << "\n";
        continue;
      }
      if (got == LineReader::Status::kEof) {
        if (tty) {
          std::cerr << "\n";
        }
        return last_status;
      }
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        continue;
      }
      // `exit` leaves this client (the remote session lives on), as it would leave ssh.
      static const std::regex kExit(R"(\s*exit(\s+(\d{1,3}))?\s*;?\s*)");
      if (std::smatch m; std::regex_match(line, m, kExit)) {
        return m[2].matched ? std::stoi(m[2].str()) & 0xff : last_status;
      }
      auto status = RunLine(line);
      if (!status) {
        ReportError(status.error());
        // A script stops at the first failure; at a terminal only a lost daemon or sandbox ends
        // the session.
        if (!tty || status.error().code == ErrorCode::kUnavailable ||
            status.error().code == ErrorCode::kNotFound) {
          return kExitError;
        }
        last_status = kExitError;
        continue;
      }
      last_status = *status;
    }
  }

 private:
  // The session's cwd for the prompt; creates the session when it does not exist yet.
  Result<void> LoadCwd() {
    auto list = client_.Call("GET", GuestPath(id_, "shell/list"));
    if (!list) {
      return Fail(list.error());
    }
    if (list->is_object() && (*list)["sessions"].is_array()) {
      for (const auto& s : (*list)["sessions"]) {
        if (JsonString(s, "session_id") == session_) {
          cwd_ = JsonString(s, "cwd");
          return {};
        }
      }
    }
    Json body = {{"id", session_}, {"command", "true"}, {"wait_seconds", kPollSeconds}};
    auto r = client_.Call("POST", GuestPath(id_, "shell/exec"), &body);
    if (!r) {
      return Fail(r.error());
    }
    cwd_ = JsonString(*r, "cwd");
    return {};
  }

  void PrintNew(const std::string& output) {
    // Output only grows while a command runs; once the guest's cap drops its start the offsets
    // no longer line up and the rest is printed from where it stands.
    if (output.size() > printed_) {
      WriteAll(STDOUT_FILENO, output.substr(printed_));
      printed_ = output.size();
    }
  }

  // Refreshes output and cwd from shell/view; returns the returncode it shows.
  Result<std::optional<int64_t>> View() {
    Json body = {{"id", session_}, {"raw", true}};
    auto v = client_.Call("POST", GuestPath(id_, "shell/view"), &body);
    if (!v) {
      return Fail(v.error());
    }
    PrintNew(JsonString(*v, "output"));
    if (auto cwd = JsonString(*v, "cwd"); !cwd.empty()) {
      cwd_ = cwd;
    }
    return JsonInt(*v, "returncode");
  }

  Result<int> Interrupted() {
    ClearInterrupt();
    const int status = KillSessionCommand(client_, id_, session_);
    if (auto v = View(); !v) {
      return Fail(v.error());
    }
    std::cerr << "\n";  // a terminal has echoed ^C already
    return status;
  }

  // Runs one line; returns the command's exit status.
  Result<int> RunLine(const std::string& line) {
    printed_ = 0;
    Json body = {{"id", session_}, {"command", line}, {"wait_seconds", kPollSeconds}};
    // Not interruptible: the call returns within kPollSeconds, and aborting it could race the
    // start of the command with the kill meant for it.
    auto r = client_.Call("POST", GuestPath(id_, "shell/exec"), &body);
    if (!r) {
      return Fail(r.error());
    }
    PrintNew(JsonString(*r, "output"));
    if (auto cwd = JsonString(*r, "cwd"); !cwd.empty()) {
      cwd_ = cwd;
    }
    if (JsonString(*r, "status") != "running") {
      return ExitStatus(JsonInt(*r, "returncode"));
    }
    for (;;) {
      if (InterruptPending()) {
        return Interrupted();
      }
      Json wait = {{"id", session_}, {"seconds", kPollSeconds}};
      auto w = client_.Send("POST", GuestPath(id_, "shell/wait"), &wait, /*interruptible=*/true);
      if (!w) {
        if (InterruptPending()) {
          return Interrupted();
        }
        return Fail(w.error());
      }
      const bool still_running =
          w->status == 400 && JsonString(w->envelope, "message").starts_with("Wait timeout");
      if (!w->ok() && !still_running) {
        return Fail(Error{w->status == 404 ? ErrorCode::kNotFound : ErrorCode::kInternal,
                          w->ErrorMessage()});
      }
      auto rc = View();
      if (!rc) {
        return Fail(rc.error());
      }
      if (w->ok()) {
        auto code = JsonInt(w->data(), "returncode");
        return ExitStatus(code ? code : *rc);
      }
    }
  }

  DaemonClient& client_;
  std::string id_;
  std::string session_;
  std::string cwd_;
  size_t printed_ = 0;
};

}  // namespace

int Shell(DaemonClient& client, const std::string& id, const std::string& session) {
  return InteractiveShell(client, id, session).Run();
}

}  // namespace agentbox::cli
