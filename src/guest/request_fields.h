#pragma once

#include <string_view>
#include <vector>

#include "common/known_fields.h"

namespace agentbox::guest {

// The fields of every JSON request body the guest serves, and what an unknown one does
// (docs/guest-api.md, "Unknown fields"). Every guest endpoint warns: the ai-manus sandbox API
// that ai-manus clients are written against ignores unknown fields (pydantic's default), and a
// sandbox's guest may be older than the client talking to it through agentboxd. The exception
// is a misspelled bound: an unknown field whose closest known field is `timeout` (shell/exec,
// shell/run) is a 422, since ignoring it would run a command without the limit asked for.
//
// `path` is the request path ("/api/v1/shell/exec"); a path without a JSON body schema (an
// unknown endpoint) has nothing to check.
Result<std::vector<UnknownField>> CheckGuestFields(std::string_view path, const Json& body);

// The multipart form of POST /api/v1/file/upload: fields `path` and `file` (a part with a file
// name under any other name is the file too). `names` are the names of the form fields sent.
Result<std::vector<UnknownField>> CheckUploadFields(const std::vector<std::string>& names);

}  // namespace agentbox::guest
