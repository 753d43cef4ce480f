#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace agentbox {

// Standard base64 (RFC 4648 §4) with padding: how proto3 JSON carries `bytes` fields.
std::string Base64Encode(std::string_view bytes);

// Decodes standard or URL-safe base64, padded or not (proto3 JSON parsers accept both).
// nullopt on any other character or an impossible length.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace agentbox
