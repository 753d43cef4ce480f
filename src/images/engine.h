#pragma once

// The two Docker Engine API calls the image store needs, over the engine's unix socket with
// libcurl: inspect (the image's id) and export (GET /images/{name}/get, a `docker save` tar).

#include <chrono>
#include <string>

#include "common/error.h"

namespace agentbox::images {

// Whether `ref` is a plausible image reference ([registry/]name[:tag][@digest]); nothing is
// looked up.
bool ValidEngineReference(const std::string& ref);

// The image's id ("sha256:..."). kNotFound when the engine has no such image; kUnavailable
// when no engine answers on `socket`.
Result<std::string> EngineImageId(const std::string& socket, const std::string& ref);

// Writes the export of `ref` (a `docker save` tar of that one image) to `fd`.
Result<void> EngineExportImage(const std::string& socket, const std::string& ref, int fd,
                               std::chrono::milliseconds stall_timeout = std::chrono::minutes(2));

}  // namespace agentbox::images
