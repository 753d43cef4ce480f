#pragma once

// What the jail and docker backends do alike around an EgressNetwork for their sandboxes of
// network "egress" (docs/network.md): the resolv.conf the sandbox gets, and which links the
// start-up sweep keeps. How a backend finds the sandbox's network namespace and where it records
// the link stay the backend's.

#include <functional>
#include <set>
#include <string>
#include <string_view>

#include "api/sandbox_backend.h"
#include "backends/egress/egress_network.h"
#include "common/error.h"

namespace agentbox::egress {

// For a sandbox of network egress: writes <dir>/resolv.conf (the resolver the policy lets it
// reach) and returns its path, which the backend mounts over the sandbox's /etc/resolv.conf; ""
// for other networks. Without `network` (egress cannot be enforced here), kInvalidArgument
// "<backend>: <why_not>".
Result<std::string> WriteEgressResolvConf(const EgressNetwork* network, std::string_view backend,
                                          const std::string& why_not, const SandboxSpec& spec,
                                          const std::string& dir);

// The start-up sweep's part for links: removes every egress link that no sandbox directory
// <state_dir>/<id> names. `links_of(sandbox_dir, live)` adds to `live` the links the backend's
// records in that directory name (its own record format). Returns how many links went; 0
// without `network`.
size_t SweepEgressLinks(EgressNetwork* network, const std::string& state_dir,
                        const std::function<void(const std::string& sandbox_dir,
                                                 std::set<std::string>& live)>& links_of);

}  // namespace agentbox::egress
