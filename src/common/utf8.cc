#include "common/utf8.h"

namespace agentbox {
namespace {

// Expected total length of a sequence starting with lead byte `c`, or 0 if `c` cannot start one.
int SequenceLength(unsigned char c) {
  if (c < 0x80) {
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF) {
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    return 4;
  }
  return 0;
}

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Validates the sequence at s[i..]; returns its length if valid, 0 otherwise. Checks overlong
// forms, surrogates and the U+10FFFF limit.
int ValidSequenceAt(std::string_view s, size_t i) {
  const auto c0 = static_cast<unsigned char>(s[i]);
  const int len = SequenceLength(c0);
  if (len <= 1) {
    return len;
  }
  if (i + len > s.size()) {
    return 0;
  }
  const auto c1 = static_cast<unsigned char>(s[i + 1]);
  if (!IsContinuation(c1)) {
    return 0;
  }
  if ((c0 == 0xE0 && c1 < 0xA0) || (c0 == 0xED && c1 > 0x9F) || (c0 == 0xF0 && c1 < 0x90) ||
      (c0 == 0xF4 && c1 > 0x8F)) {
    return 0;
  }
  for (int k = 2; k < len; ++k) {
    if (!IsContinuation(static_cast<unsigned char>(s[i + k]))) {
      return 0;
    }
  }
  return len;
}

}  // namespace

size_t Utf8CompletePrefix(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if (IsContinuation(c)) {
      continue;
    }
    const int len = SequenceLength(c);
    if (len > static_cast<int>(back)) {
      return n - back;  // incomplete sequence at the end: hold it back
    }
    return n;
  }
  return n;
}

size_t Utf8LeadingContinuations(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && i < 3 && IsContinuation(static_cast<unsigned char>(s[i]))) {
    ++i;
  }
  return i;
}

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const int len = ValidSequenceAt(s, i);
    if (len == 0) {
      return false;
    }
    i += len;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const int len = ValidSequenceAt(s, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      // Skip the continuation bytes of the broken sequence so it yields one replacement.
      while (i < s.size() && IsContinuation(static_cast<unsigned char>(s[i])) &&
             ValidSequenceAt(s, i) == 0) {
        ++i;
      }
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace agentbox
