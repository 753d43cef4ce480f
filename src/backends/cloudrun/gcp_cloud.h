#pragma once

#include "backends/cloudrun/cloud.h"
#include "common/config.h"

namespace agentbox::cloudrun {

// The production Cloud over src/gcp: credentials from MakeTokenSource, endpoints from
// EndpointsFromConfig (so STORAGE_EMULATOR_HOST and AGENTBOX_CLOUDRUN_ENDPOINT point it at the
// emulator). Fails only on bad endpoint overrides or unreadable credential files.
Result<Cloud> MakeGcpCloud(const Config& cfg, const std::string& project, const std::string& region,
                           const std::string& bucket);

}  // namespace agentbox::cloudrun
