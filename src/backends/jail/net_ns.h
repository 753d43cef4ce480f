#pragma once

#include "common/error.h"

namespace agentbox::jail {

// The jail's network: by default a namespace of its own holding only loopback; sharing the
// host's network is an explicit choice for trusted use.
struct NetNsConfig {
  bool share_host = false;
};

// Child side: in a new network namespace, brings loopback up (SIOCSIFFLAGS). Does nothing when
// the host's network is shared.
Result<void> SetupNetwork(const NetNsConfig& cfg);

}  // namespace agentbox::jail
