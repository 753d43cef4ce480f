#pragma once

#include <string>
#include <string_view>

namespace agentbox {

// Quotes `s` as one POSIX shell word: 'it'\''s'. Safe for any byte string without NUL.
std::string ShellQuote(std::string_view s);

}  // namespace agentbox
