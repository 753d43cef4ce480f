#pragma once

// A real agentbox-guest as a child process on a unix socket, for the end-to-end tests of the
// guest API that talk to it with libcurl (supervisor_api_test, guest_fields_test). Header-only:
// those tests link libcurl, not the fakes library.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fakes/curl_http.h"

extern char** environ;

namespace agentbox::test_support {

// `agentbox-guest serve --listen unix:<root>/g.sock --workdir <root>/work` and `extra`, in a new
// directory <root> = /tmp/<prefix>-XXXXXX, with `env` added to this process's environment; stdin
// is /dev/null, stdout and stderr go to <root>/guest.log. A failure to start is a test failure.
// The destructor stops it (SIGTERM, then SIGKILL after 5 s), reaps it and removes <root>. Not
// thread-safe.
class GuestChild {
 public:
  GuestChild(const std::string& binary, const std::string& prefix,
             std::vector<std::string> extra = {},
             const std::map<std::string, std::string>& env = {}) {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
      return;
    }
    root_ = tmpl;
    socket_ = root_ + "/g.sock";
    log_ = root_ + "/guest.log";
    std::filesystem::create_directories(root_ + "/work");
    std::vector<std::string> args = {binary,            "serve",     "--listen",
                                     "unix:" + socket_, "--workdir", root_ + "/work"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) {
      envs.emplace_back(*e);
    }
    for (const auto& [k, v] : env) {
      envs.push_back(k + "=" + v);
    }
    std::vector<char*> envp;
    for (auto& e : envs) {
      envp.push_back(e.data());
    }
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      ADD_FAILURE() << "posix_spawn " << binary << ": " << std::strerror(rc);
      pid_ = 0;
    }
  }

  ~GuestChild() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 250 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (::waitpid(pid_, &status, WNOHANG) == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
    if (!root_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(root_, ec);
    }
  }

  GuestChild(const GuestChild&) = delete;
  GuestChild& operator=(const GuestChild&) = delete;

  // Polls /api/v1/health until the guest answers 200: true then. False when it did not start,
  // when it exits first (exit_code() then says how) or, as a test failure with its log, when it
  // does not answer within 15 s.
  bool Ready() {
    if (pid_ <= 0) {
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (Call("GET", "/api/v1/health").status != 200) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return false;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "guest not ready:\n" << log();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  // One request over the socket (60 s at most; status 0 when no answer came). A `body` goes with
  // every method but GET, with `content_type`; without one, other methods send an empty body and
  // no Content-Type.
  Reply Call(const std::string& method, const std::string& path,
             const std::optional<std::string>& body = std::nullopt,
             const std::string& content_type = "application/json") const {
    std::vector<std::string> headers;
    if (body && method != "GET") {
      headers.push_back("Content-Type: " + content_type);
    }
    return CurlHttp(socket_, method, "http://guest" + path, body.value_or(""), headers, nullptr,
                    60L);
  }

  const std::string& root() const { return root_; }
  pid_t pid() const { return pid_; }
  int exit_code() const { return exit_code_; }  // once Ready() saw the guest exit
  std::string log() const { return ReadLog(log_); }

 private:
  std::string root_, socket_, log_;
  pid_t pid_ = 0;
  bool exited_ = false;
  int exit_code_ = -1;
};

}  // namespace agentbox::test_support
