#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox {

// Request objects are checked against the fields they define, so that a mistyped field is never
// silently dropped ("memory_bytes" for "memory_mb" would otherwise mean no memory limit at all).
// What an unknown field does is chosen per object; docs/guest-api.md and the daemon section of
// README.md state the choice for every endpoint.
enum class UnknownFieldPolicy {
  kReject,  // 422 naming the field and, when one is close, the field probably meant
  kWarn,    // accepted and ignored; the caller gets a Warning header, the server a log line
};

// The fields one JSON object of a request defines, and what happens to any other.
struct FieldSchema {
  std::vector<std::string_view> known;
  UnknownFieldPolicy policy = UnknownFieldPolicy::kReject;
  // For a kWarn object: known fields that bound a resource or a lifetime (a timeout). An unknown
  // field whose closest match is one of them is rejected all the same: ignoring "timeout_s" for
  // "timeout" would run a command without the bound its caller asked for.
  std::vector<std::string_view> guarded;

  static FieldSchema Reject(std::vector<std::string_view> known) {
    return {std::move(known), UnknownFieldPolicy::kReject, {}};
  }
  static FieldSchema Warn(std::vector<std::string_view> known,
                          std::vector<std::string_view> guarded = {}) {
    return {std::move(known), UnknownFieldPolicy::kWarn, std::move(guarded)};
  }
};

// One field of a request object that its schema does not define.
struct UnknownField {
  std::string where;       // the enclosing object's path ("limits"), empty at the top level
  std::string name;        // the field as sent (capped at 64 bytes, unprintable bytes as '?')
  std::string suggestion;  // the known field probably meant, empty when none is close

  // "limits.memory_bytes": the path that names the field in an error's data.fields.
  std::string Path() const;
  // "unknown field 'memory_bytes' in limits; did you mean 'memory_mb'?"
  std::string Describe() const;
};

// The known field that `name` most probably misspells, or "" when none is close. Names are
// compared without case, '_' or '-' (so "memoryMB" is "memory_mb"); a name is close to a known
// one when the edit distance (with transpositions) between them is 1, or 2 between names of five
// or more characters, or at most a third of the longer name, or when they share a prefix of four
// characters (or the whole of a name of at least three: "ttl" -> "ttl_s"). Among close names the
// nearest wins; ties go to the longer shared prefix, then to the order of `known`.
std::string ClosestField(std::string_view name, const std::vector<std::string_view>& known);

// Optimal string alignment distance (Levenshtein plus adjacent transpositions), on bytes.
size_t EditDistance(std::string_view a, std::string_view b);

// Checks the members of `obj` (an object at path `where`, "" for the top level) against
// `schema`. Returns the unknown fields to warn about (empty when every field is known), or a
// kValidation error naming the first unknown field that the schema rejects. A non-object `obj`
// has no fields to check: its type is the parser's concern.
Result<std::vector<UnknownField>> CheckKnownFields(const Json& obj, const FieldSchema& schema,
                                                   std::string_view where = "");

// The 422 for one rejected field: kValidation, field = Path(), message = Describe() (plus the
// known fields when no suggestion is close).
Error UnknownFieldError(const UnknownField& f, const std::vector<std::string_view>& known);

// The value of a Warning header (RFC 7234 §5.5, code 299 "miscellaneous persistent warning")
// telling the caller that `f` was ignored:
//   299 agentbox "unknown field 'x' ignored; did you mean 'y'?"
std::string WarningHeaderValue(const UnknownField& f);

// At most this many Warning headers go on one response; the last then says how many more
// fields were ignored.
inline constexpr size_t kMaxFieldWarnings = 8;

// Warning header values for `fields`, at most kMaxFieldWarnings of them.
std::vector<std::string> WarningHeaderValues(const std::vector<UnknownField>& fields);

}  // namespace agentbox
