#pragma once

#include <string>
#include <tl/expected.hpp>
#include <utility>

namespace agentbox {

// The small set of failure kinds every layer speaks. Each maps to exactly one HTTP status in
// HttpStatus(); keep the two in sync.
enum class ErrorCode {
  kInvalidArgument,  // 400: malformed request, bad value, regex error
  kUnauthorized,     // 401: missing or wrong credentials
  kForbidden,        // 403: not allowed (e.g. sudo where the user cannot escalate)
  kNotFound,         // 404: unknown session, pid, file, sandbox
  kConflict,         // 409: state conflict (a command already runs in the session)
  kTooLarge,         // 413: body, upload or output over its cap
  kValidation,       // 422: well-formed JSON with missing or mistyped fields
  kTimeout,          // 400 on the guest API ("Wait timeout"); the request outlived its limit
  kUnavailable,      // 503: dependency down (engine, backend)
  kBadGateway,       // 502: a sandbox's guest answered something that is not a valid answer
  kInternal,         // 500: a bug or an unexpected system failure
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  int sys_errno = 0;
  std::string field;  // for kValidation: the offending request field

  Error() = default;
  Error(ErrorCode c, std::string m, int e = 0) : code(c), message(std::move(m)), sys_errno(e) {}
};

template <class T>
using Result = tl::expected<T, Error>;

// Shorthand for returning an error from a function returning Result<T>.
inline tl::unexpected<Error> Fail(ErrorCode code, std::string message, int sys_errno = 0) {
  return tl::unexpected<Error>(Error{code, std::move(message), sys_errno});
}
inline tl::unexpected<Error> Fail(Error e) { return tl::unexpected<Error>(std::move(e)); }

// Maps errno from a failed system call on `what` to an Error, in exactly one place:
// ENOENT/ENOTDIR -> kNotFound, EACCES/EPERM/EROFS -> kForbidden, EEXIST/ENOTEMPTY/EBUSY ->
// kConflict, EISDIR/EINVAL/ENAMETOOLONG/ELOOP -> kInvalidArgument, EFBIG/ENOSPC/EDQUOT ->
// kTooLarge, anything else -> kInternal. The message is "<what>: <strerror>".
Error ErrnoError(int err, const std::string& what);

int HttpStatus(ErrorCode code);
const char* ErrorCodeName(ErrorCode code);

}  // namespace agentbox
