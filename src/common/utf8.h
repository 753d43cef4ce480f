#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace agentbox {

// Length of the longest prefix of `s` that does not end inside a multi-byte UTF-8 sequence that
// could still be completed by more bytes. Used to hold back a split character between reads so
// that streaming consumers never see half of one. Invalid bytes are not held back.
size_t Utf8CompletePrefix(std::string_view s);

// Number of UTF-8 continuation bytes (at most 3) at the start of `s`: what to skip when a buffer
// was truncated at the front in the middle of a character.
size_t Utf8LeadingContinuations(std::string_view s);

bool IsValidUtf8(std::string_view s);

// Copy of `s` with every invalid or truncated sequence replaced by U+FFFD.
std::string SanitizeUtf8(std::string_view s);

}  // namespace agentbox
