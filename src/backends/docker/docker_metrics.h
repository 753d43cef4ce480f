#pragma once

// The Docker Engine's container stats (GET /containers/{id}/stats?stream=false) as
// SandboxMetrics: DockerBackend::Metrics (docker_metrics.cc).

#include <optional>

#include "api/sandbox_backend.h"
#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::docker {

// CPU and memory of one stats answer (cgroup v1 and v2 engines). The engine's one-shot answer
// carries the previous reading too (precpu_stats, about a second earlier): the CPU share is the
// container's CPU time between the two over that window, as % of `cpus` cores (the sandbox's
// limit; unset: the host's online CPUs). kBadGateway when the answer lacks them (the container
// is not running: the engine then sends zeros).
Result<SandboxMetrics> MetricsFromStats(const Json& stats, std::optional<double> cpus);

}  // namespace agentbox::docker
