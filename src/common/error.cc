#include "common/error.h"

#include <cerrno>
#include <cstring>

namespace agentbox {

Error ErrnoError(int err, const std::string& what) {
  ErrorCode code = ErrorCode::kInternal;
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      code = ErrorCode::kNotFound;
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      code = ErrorCode::kForbidden;
      break;
    case EEXIST:
    case ENOTEMPTY:
    case EBUSY:
    case ETXTBSY:
      code = ErrorCode::kConflict;
      break;
    case EISDIR:
    case EINVAL:
    case ENAMETOOLONG:
    case ELOOP:
      code = ErrorCode::kInvalidArgument;
      break;
    case EFBIG:
    case ENOSPC:
    case EDQUOT:
      code = ErrorCode::kTooLarge;
      break;
    default:
      break;
  }
  return Error{code, what + ": " + std::strerror(err), err};
}

int HttpStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kTimeout:
      return 400;
    case ErrorCode::kUnauthorized:
      return 401;
    case ErrorCode::kForbidden:
      return 403;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kConflict:
      return 409;
    case ErrorCode::kTooLarge:
      return 413;
    case ErrorCode::kValidation:
      return 422;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kBadGateway:
      return 502;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kUnauthorized:
      return "unauthorized";
    case ErrorCode::kForbidden:
      return "forbidden";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kConflict:
      return "conflict";
    case ErrorCode::kTooLarge:
      return "too_large";
    case ErrorCode::kValidation:
      return "validation";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kBadGateway:
      return "bad_gateway";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

}  // namespace agentbox
