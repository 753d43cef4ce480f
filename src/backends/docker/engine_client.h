#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace agentbox::docker {

// The Engine API version every request is pinned to: Debian 12's dockerd 20.10 speaks 1.41, and
// newer engines still accept it, so the request and response shapes never drift under us.
inline constexpr std::string_view kApiVersion = "1.41";
inline constexpr std::string_view kDefaultSocket = "/var/run/docker.sock";

// The engine socket named by DOCKER_HOST: empty -> /var/run/docker.sock, "unix:///path" ->
// /path. Anything else (tcp://, ssh://) is kInvalidArgument with a sentence saying why.
Result<std::string> SocketFromDockerHost(std::string_view docker_host);

// Percent-encodes a query parameter value.
std::string UrlEncode(std::string_view s);

struct EngineResponse {
  long status = 0;
  std::string body;
};

// The Docker Engine API over its unix socket, with libcurl (CURLOPT_UNIX_SOCKET_PATH). Every
// path is sent under /v1.41. Each call uses its own curl handle: the class holds no mutable
// state and is safe to use from any number of threads.
//
// Errors: the engine not reachable (no socket, refused, timed out) is kUnavailable with the
// sentence "the Docker engine at PATH is not reachable: ..."; an HTTP answer, whatever its
// status, is a success of the call (use EngineError to turn a non-2xx answer into an Error).
class EngineClient {
 public:
  explicit EngineClient(std::string socket_path);

  const std::string& socket_path() const { return socket_path_; }

  // One request; `path` is relative to the version prefix ("/containers/json?all=1"). A
  // non-empty `json_body` is sent as application/json. `timeout` bounds the whole exchange.
  Result<EngineResponse> Call(std::string_view method, std::string_view path,
                              std::string_view json_body = {},
                              std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  // Like Call, but hands the body to `on_line` one '\n'-terminated line at a time as it arrives
  // (image pulls stream JSON progress lines). Returns the HTTP status; a non-2xx body is
  // delivered through on_line too. `stall_timeout` fails the call when nothing arrives for that
  // long; there is no overall limit.
  Result<long> Stream(std::string_view method, std::string_view path,
                      const std::function<void(std::string_view line)>& on_line,
                      std::chrono::milliseconds stall_timeout = std::chrono::minutes(2)) const;

 private:
  std::string socket_path_;
};

// The error for a non-2xx answer: the engine's {"message": ...} (or its body) prefixed by
// `what`. 404 -> kNotFound, 409 -> kConflict, 400 -> kInvalidArgument, everything else
// kUnavailable (the engine failed to do what we asked).
Error EngineError(const EngineResponse& r, std::string_view what);

// The engine's message in a non-2xx body: {"message": "..."} or the body itself, trimmed.
std::string EngineMessage(std::string_view body);

}  // namespace agentbox::docker
