#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace agentbox {

// Value of one hexadecimal digit, or -1.
int HexValue(char c);

// Decodes %XX escapes (and '+' as space when `plus_is_space`, as in query strings). Malformed
// escapes are kept literally.
std::string PercentDecode(std::string_view s, bool plus_is_space);

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string PercentEncode(std::string_view s);

// ASCII lower-case copy.
std::string AsciiLower(std::string_view s);

// The items joined with `sep` between them ("" for none).
std::string Join(const std::vector<std::string>& items, std::string_view sep);

// A random identifier of `n` lower-case hex characters (from getrandom).
std::string RandomId(size_t n = 16);

// Constant-time comparison of secrets: the time taken depends only on the lengths.
bool SecretEquals(std::string_view a, std::string_view b);

}  // namespace agentbox
