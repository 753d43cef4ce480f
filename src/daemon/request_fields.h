#pragma once

#include <vector>

#include "common/known_fields.h"

namespace agentbox::daemon {

// The fields of the daemon's own request bodies, and what an unknown one does (README.md,
// "Unknown request fields"). Each returns the fields to warn about, or the 422 of a rejected one.

// POST /v1/sandboxes: the body and its `limits` reject unknown fields (a dropped limit or
// "ttl" for "ttl_s" would leave a sandbox unbounded without a word). `env` and `labels` are
// free-form maps.
Result<std::vector<UnknownField>> CheckCreateFields(const Json& body);
// POST /v1/sandboxes/{id}/timeout: rejects (`ttl_s` is the sandbox's lifetime).
Result<std::vector<UnknownField>> CheckTimeoutFields(const Json& body);
// PUT /v1/flags: rejects at the top level (the keys of `flags` are checked by the handler).
Result<std::vector<UnknownField>> CheckFlagsFields(const Json& body);
// POST /v1/images/pull: warns (fetching an image ahead of time restricts nothing; a newer
// client's extra option should not make the pull fail).
Result<std::vector<UnknownField>> CheckPullFields(const Json& body);
// PUT /v1/backends/{name}/validation: rejects (a verdict gates rollouts; a misspelt field must
// not be recorded as something else).
Result<std::vector<UnknownField>> CheckValidationFields(const Json& body);

}  // namespace agentbox::daemon
