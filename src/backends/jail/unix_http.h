#pragma once

#include <string>
#include <string_view>

#include "backends/jail/process.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::jail {

// Connects a new stream socket to the unix socket at `socket_path`, but only if that path names
// a socket itself: a symlink in its last component is refused (kForbidden), never followed. A
// sandbox can write the directory its guest's socket lives in, so it could otherwise swap the
// socket for a link to a host socket (say the Docker daemon's) and make the daemon talk to it.
// The socket is opened with O_PATH|O_NOFOLLOW, checked with fstat, and connected to through
// /proc/self/fd, so there is no window between check and use. Errors keep errno in sys_errno
// (ENOENT: no socket yet; ECONNREFUSED: nobody listens yet). The returned socket is
// non-blocking; a connect still in progress completes by the time it polls writable.
Result<UniqueFd> ConnectUnixNoFollow(const std::string& socket_path);

struct HttpResponse {
  int status = 0;
  std::string body;  // de-chunked
};

// One HTTP/1.1 request over a unix stream socket (Connection: close), with the guest's
// X-Access-Token. A non-empty `json_body` is sent as application/json. Blocks until the whole
// response has arrived or `deadline` passes (kTimeout).
//
// Connects with ConnectUnixNoFollow, whose errors it returns as they are, so callers can tell
// "not ready" from "broken".
Result<HttpResponse> UnixHttpRequest(const std::string& socket_path, std::string_view method,
                                     std::string_view target, std::string_view token,
                                     std::string_view json_body, Clock::time_point deadline);

}  // namespace agentbox::jail
