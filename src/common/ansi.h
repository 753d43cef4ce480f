#pragma once

#include <string>
#include <string_view>

namespace agentbox {

// Removes terminal escape sequences (CSI "ESC [ ... final", OSC "ESC ] ... BEL|ESC \", and
// two-byte escapes) and carriage returns that precede a newline, leaving the text a person would
// read. Bytes that are not part of an escape are kept as they are.
std::string StripAnsi(std::string_view s);

}  // namespace agentbox
