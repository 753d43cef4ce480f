#pragma once

#include <cstddef>
#include <map>
#include <string>

#include "api/sandbox_backend.h"
#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::daemon {

// Parsers for parts of the POST /v1/sandboxes body, apart from the handler so that they can be
// tested and fuzzed without a daemon (fuzz/fuzz_create_body.cc).

// The body's optional `limits` object; absent or null means no limit set. Every failure is a
// kValidation naming the field ("limits.memory_mb").
Result<ResourceLimits> ParseLimits(const Json& body);

// The body's optional object `key` of string -> string (env, labels): at most `max_entries`
// entries, keys 1..256 bytes, values at most 64 KiB, neither with a NUL.
Result<std::map<std::string, std::string>> ParseStringMap(const Json& body, const char* key,
                                                          size_t max_entries);

// The body's `network` ("none", "egress", "host") and `egress` policy into spec->network and
// spec->egress. kInvalidArgument (400) for an unknown mode, a malformed policy (naming the
// element: "egress.allow[0].cidr: ...") or a policy without network "egress"; kForbidden (403)
// for "host" unless `trusted` (the local socket).
Result<void> ParseNetwork(const Json& body, const std::string& network, bool trusted,
                          SandboxSpec* spec);

}  // namespace agentbox::daemon
