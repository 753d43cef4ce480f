#include "common/ansi.h"

namespace agentbox {

std::string StripAnsi(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\x1b' && i + 1 < s.size()) {
      const char k = s[i + 1];
      if (k == '[') {
        i += 2;
        while (i < s.size() && !(s[i] >= 0x40 && s[i] <= 0x7e)) {
          ++i;
        }
        ++i;  // final byte
        continue;
      }
      if (k == ']') {
        i += 2;
        while (i < s.size()) {
          if (s[i] == '\a') {
            ++i;
            break;
          }
          if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '\\') {
            i += 2;
            break;
          }
          ++i;
        }
        continue;
      }
      i += 2;
      continue;
    }
    if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') {
      ++i;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

}  // namespace agentbox
