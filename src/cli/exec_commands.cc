// exec and shell: running commands in a sandbox's shell sessions.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <iterator>
#include <regex>
#include <thread>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/interrupt.h"
#include "common/json_util.h"

namespace agentbox::cli {

namespace {

// How long the shell waits for the command that creates a new session (to learn its cwd).
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
// end of input, which std::getline cannot do. While a command runs the shell also takes what is
// typed as that command's input (ReadAvailable + PopLine); a partial line stays buffered.
class LineReader {
 public:
  enum class Status { kLine, kEof, kInterrupted };

  explicit LineReader(int fd) : fd_(fd) {}

  int fd() const { return fd_; }
  bool eof() const { return eof_; }

  Status Next(std::string& line) {
    for (;;) {
      if (PopLine(line)) {
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
      if (!ReadAvailable() && InterruptPending()) {
        buf_.clear();
        return Status::kInterrupted;
      }
    }
  }

  // One read(2); false when it was interrupted by a signal.
  bool ReadAvailable() {
    char chunk[4096];
    ssize_t n = ::read(fd_, chunk, sizeof(chunk));
    if (n > 0) {
      buf_.append(chunk, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      eof_ = true;
    } else {
      return false;
    }
    return true;
  }

  // Takes one complete line out of the buffer.
  bool PopLine(std::string& line) {
    const size_t nl = buf_.find('\n');
    if (nl == std::string::npos) {
      return false;
    }
    line = buf_.substr(0, nl);
    buf_.erase(0, nl + 1);
    return true;
  }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

// Splits a Server-Sent Events byte stream into events (name, id, data); comments (keep-alives)
// are dropped.
class SseParser {
 public:
  struct Event {
    std::string name = "message";
    std::string id;
    std::string data;
  };

  // Feeds bytes; calls `on_event` for every complete event. Stops early (returns false) when
  // `on_event` does.
  bool Feed(std::string_view bytes, const std::function<bool(const Event&)>& on_event) {
    buf_.append(bytes);
    for (;;) {
      const size_t nl = buf_.find('\n');
      if (nl == std::string::npos) {
        return true;
      }
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      if (line.empty()) {
        Event done = std::move(cur_);
        cur_ = Event{};
        if (!done.data.empty() || done.name != "message") {
          if (!on_event(done)) {
            return false;
          }
        }
        continue;
      }
      if (line.front() == ':') {
        continue;
      }
      const size_t colon = line.find(':');
      const std::string field = line.substr(0, colon);
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      if (!value.empty() && value.front() == ' ') {
        value.erase(0, 1);
      }
      if (field == "event") {
        cur_.name = value;
      } else if (field == "id") {
        cur_.id = value;
      } else if (field == "data") {
        cur_.data += (cur_.data.empty() ? "" : "\n") + value;
      }
    }
  }

 private:
  std::string buf_;
  Event cur_;
};

// Follows one command on the daemon's event stream (GET /v1/sandboxes/{id}/shell/{session}/
// stream), on a thread and connection of its own, so the main thread stays free to forward
// keystrokes and Ctrl-C. Output goes to stdout as it arrives. When the stream drops it is
// reopened from the offset after the last output received, so nothing is lost or repeated. Done
// when the command's `status` event arrives (the guest sends it even when the stream opens
// after the command ended), the session or sandbox ends, or Stop() is called; then one byte is
// written to wake_fd().
class CommandFollower {
 public:
  struct Outcome {
    bool completed = false;
    std::optional<int64_t> returncode;
    std::string cwd;
    std::optional<Error> error;
  };

  CommandFollower(const Endpoint& endpoint, std::string id, std::string session)
      : client_(endpoint), id_(std::move(id)), session_(std::move(session)) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) {
      wake_r_ = p[0];
      wake_w_ = p[1];
    }
  }
  ~CommandFollower() {
    Stop();
    if (thread_.joinable()) {
      thread_.join();
    }
    for (int fd : {wake_r_, wake_w_}) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }
  CommandFollower(const CommandFollower&) = delete;
  CommandFollower& operator=(const CommandFollower&) = delete;

  // Starts following. SIGINT stays with the main thread: the follower blocks it.
  void Start() {
    sigset_t block;
    sigset_t old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    ::pthread_sigmask(SIG_BLOCK, &block, &old);
    thread_ = std::thread([this] { Run(); });
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }

  void Stop() { stop_ = true; }
  int wake_fd() const { return wake_r_; }

  // Waits for the follower to end and returns what it saw.
  Outcome Finish() {
    if (thread_.joinable()) {
      thread_.join();
    }
    return outcome_;
  }

 private:
  // Gaps between attempts to reopen a dropped stream; after the last one the shell gives up.
  static constexpr int kReconnectDelaysMs[] = {0, 100, 250, 500, 1000, 2000, 2000, 2000};

  void Run() {
    size_t attempt = 0;
    for (;;) {
      std::string path =
          "/v1/sandboxes/" + UrlEscape(id_) + "/shell/" + UrlEscape(session_) + "/stream";
      if (offset_) {
        path += "?offset=" + std::to_string(*offset_);
      }
      SseParser parser;
      bool progressed = false;
      auto r = client_.Stream(
          path,
          [&](std::string_view bytes) {
            return parser.Feed(bytes, [&](const SseParser::Event& ev) {
              progressed = true;
              return OnEvent(ev);
            });
          },
          [this] { return stop_.load() || done_; });
      if (done_ || stop_) {
        break;
      }
      if (r && !r->ok()) {
        outcome_.error = Error{r->status == 404 ? ErrorCode::kNotFound : ErrorCode::kUnavailable,
                               r->ErrorMessage()};
        break;
      }
      // The stream broke or ended without the command's status: resume from the last offset.
      attempt = progressed ? 0 : attempt + 1;
      if (attempt >= std::size(kReconnectDelaysMs)) {
        outcome_.error =
            r ? Error{ErrorCode::kUnavailable, "the output stream keeps ending"} : r.error();
        break;
      }
      for (int waited = 0; waited < kReconnectDelaysMs[attempt] && !stop_; waited += 50) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
    const char byte = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_w_, &byte, 1);
  }

  // Returns false once the command's story is over.
  bool OnEvent(const SseParser::Event& ev) {
    Json data = ParseUntrustedJson(ev.data);
    if (ev.name == "output") {
      WriteAll(STDOUT_FILENO, JsonString(data, "output"));
      if (!ev.id.empty()) {
        offset_ = std::strtoull(ev.id.c_str(), nullptr, 10);
      }
      return true;
    }
    if (ev.name == "status") {
      outcome_.completed = true;
      outcome_.returncode = JsonInt(data, "returncode");
      outcome_.cwd = JsonString(data, "cwd");
      done_ = true;
      return false;
    }
    if (ev.name == "end") {
      outcome_.error = Error{ErrorCode::kNotFound, "session '" + session_ + "' was deleted"};
      done_ = true;
      return false;
    }
    if (ev.name == "error") {
      outcome_.error = Error{ErrorCode::kUnavailable, JsonString(data, "message")};
      done_ = true;
      return false;
    }
    return true;
  }

  DaemonClient client_;  // its own connection: the main thread's client stays usable
  std::string id_;
  std::string session_;
  std::optional<uint64_t> offset_;  // where to resume: after the last output received
  std::atomic<bool> stop_{false};
  bool done_ = false;  // follower thread only
  Outcome outcome_;
  int wake_r_ = -1;
  int wake_w_ = -1;
  std::thread thread_;
};

// One interactive session: every line runs through shell/exec in the same named session, so
// cwd, environment and shell variables carry over from one line to the next. The command's
// output arrives on the session's event stream; at a terminal, lines typed while it runs are
// its input (shell/write).
class InteractiveShell {
 public:
  InteractiveShell(DaemonClient& client, std::string id, std::string session)
      : client_(client), id_(std::move(id)), session_(std::move(session)) {}

  int Run() {
    tty_ = ::isatty(STDIN_FILENO) != 0;
    InstallInterruptHandler();
    if (tty_) {
      if (auto r = LoadCwd(); !r) {
        return ReportError(r.error());
      }
    }
    int last_status = 0;
    for (;;) {
      if (tty_) {
        std::cerr << id_ << ":" << cwd_ << "$ " << std::flush;
      }
      std::string line;
      const auto got = reader_.Next(line);
      if (got == LineReader::Status::kInterrupted) {
        ClearInterrupt();
        std::cerr << "\n";
        continue;
      }
      if (got == LineReader::Status::kEof) {
        if (tty_) {
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
        if (!tty_ || status.error().code == ErrorCode::kUnavailable ||
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
  // How long the shell gives the stream to report a killed command before it stops waiting.
  static constexpr auto kKillGrace = std::chrono::seconds(15);

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

  // Sends each complete line typed so far to the running command's stdin.
  void ForwardTypedLines() {
    std::string input;
    while (reader_.PopLine(input)) {
      Json body = {{"id", session_}, {"input", input}, {"press_enter", true}};
      if (auto r = client_.Call("POST", GuestPath(id_, "shell/write"), &body); !r) {
        ReportError("input not delivered: " + r.error().message);
      }
    }
  }

  // Runs one line; returns the command's exit status.
  Result<int> RunLine(const std::string& line) {
    // Not interruptible: it returns at once (wait_seconds 0), and aborting it could race the
    // start of the command with the kill meant for it.
    Json body = {{"id", session_}, {"command", line}, {"wait_seconds", 0}};
    auto r = client_.Call("POST", GuestPath(id_, "shell/exec"), &body);
    if (!r) {
      return Fail(r.error());
    }
    // Without an offset the stream starts at this command's first byte of output.
    CommandFollower follower(client_.endpoint(), id_, session_);
    follower.Start();
    std::optional<int> killed_status;
    std::optional<std::chrono::steady_clock::time_point> kill_deadline;
    for (;;) {
      if (InterruptPending() && !killed_status) {
        ClearInterrupt();
        killed_status = KillSessionCommand(client_, id_, session_);
        kill_deadline = std::chrono::steady_clock::now() + kKillGrace;
      }
      if (kill_deadline && std::chrono::steady_clock::now() > *kill_deadline) {
        follower.Stop();
      }
      // Typed lines are input only at a terminal: in a script the next line is the next command.
      const bool read_stdin = tty_ && !reader_.eof();
      pollfd fds[2] = {{follower.wake_fd(), POLLIN, 0}, {reader_.fd(), POLLIN, 0}};
      // A timeout, so that a Ctrl-C landing just before poll() is noticed within a moment.
      const int n = ::poll(fds, read_stdin ? 2 : 1, 250);
      if (n < 0) {
        continue;  // EINTR: Ctrl-C is handled at the top
      }
      if (fds[0].revents != 0) {
        break;
      }
      if (read_stdin && fds[1].revents != 0) {
        reader_.ReadAvailable();
        ForwardTypedLines();
      }
    }
    CommandFollower::Outcome out = follower.Finish();
    if (killed_status) {
      std::cerr << "\n";  // a terminal has echoed ^C already
    }
    if (!out.cwd.empty()) {
      cwd_ = out.cwd;
    }
    if (out.error) {
      return Fail(*out.error);
    }
    if (!out.completed) {
      return killed_status ? *killed_status : kInterruptedStatus;
    }
    return ExitStatus(out.returncode);
  }

  DaemonClient& client_;
  std::string id_;
  std::string session_;
  std::string cwd_;
  bool tty_ = false;
  LineReader reader_{STDIN_FILENO};
};

}  // namespace

int Shell(DaemonClient& client, const std::string& id, const std::string& session) {
  return InteractiveShell(client, id, session).Run();
}

}  // namespace agentbox::cli
