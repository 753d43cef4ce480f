#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

namespace agentbox::guest {

// What a part's headers say about it (RFC 7578 §4.2). Absent values are empty strings.
struct PartHeaders {
  std::string name;           // Content-Disposition `name`
  std::string filename;       // Content-Disposition `filename` (or a UTF-8 `filename*`)
  bool has_filename = false;  // a filename parameter was present, possibly empty
  std::string content_type;   // Content-Type header, verbatim
};

// Streaming multipart/form-data parser: feed the body in chunks of any size; part data is
// handed to the callbacks as it arrives, never buffered whole. Memory use is bounded by the
// boundary length plus the header cap (kMaxHeaderBytes) plus one chunk.
//
// Set the callbacks before the first Feed(). Each may return an error, which aborts parsing and
// is returned from that Feed(); a parser that failed returns the same error from every later
// call. Data of one part may arrive in several on_part_data calls (never with an empty view).
// Not thread-safe.
class MultipartParser {
 public:
  // Largest header section of one part; more is kInvalidArgument.
  static constexpr size_t kMaxHeaderBytes = 16 * 1024;

  // Extracts the boundary from a Content-Type such as
  // `multipart/form-data; boundary="----x"`. Anything but multipart/form-data, a missing
  // boundary, or one that RFC 2046 does not allow (empty, over 70 characters, control
  // characters, ending in a space) is kInvalidArgument.
  static Result<std::string> BoundaryFromContentType(std::string_view content_type);

  explicit MultipartParser(std::string boundary);

  std::function<Result<void>(const PartHeaders& headers)> on_part_begin;
  std::function<Result<void>(std::string_view data)> on_part_data;
  std::function<Result<void>()> on_part_end;

  // Consumes the next bytes of the body.
  Result<void> Feed(std::string_view chunk);
  // Declares the end of the body. kInvalidArgument unless the closing boundary was seen.
  Result<void> Finish();

 private:
  enum class State {
    kPreamble,     // before the first boundary
    kBoundaryEnd,  // after a delimiter: "--" closes, else optional whitespace then CRLF
    kHeaders,      // a part's header section, up to the empty line
    kBody,         // a part's data, up to the next delimiter
    kEpilogue,     // after the closing delimiter: ignored
    kFailed,
  };

  // Advances the state machine over buf_ from pos_; sets `progress` when it consumed input or
  // changed state, leaves it false when it needs more input.
  Result<void> Step(bool& progress);
  Result<void> ParseHeaders(std::string_view section);
  // Length of the prefix of `rest` that cannot be the start of a delimiter split across
  // chunks, i.e. what may be released as data (or dropped as preamble) now.
  size_t SafePrefix(std::string_view rest) const;
  // Enters the failed state, remembering `e` for later calls, and returns it.
  Result<void> Failed(Error e);

  std::string delimiter_;  // "\r\n--" + boundary
  std::string buf_;        // input not yet consumed from pos_ on
  size_t pos_ = 0;
  size_t header_scanned_ = 0;  // bytes of the current header section already searched
  State state_ = State::kPreamble;
  std::optional<Error> error_;
};

}  // namespace agentbox::guest
