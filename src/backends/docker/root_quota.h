#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "backends/docker/engine_client.h"
#include "common/json_util.h"

namespace agentbox::docker {

// Whether the engine can bound a container's writable layer (HostConfig.StorageOpt "size"): on
// overlay2 that needs the engine's data-root on xfs mounted with project quotas (pquota), which
// scripts/start-dockerd.sh sets up with AGENTBOX_DOCKERD_XFS_BYTES. Then limits.disk_bytes is one
// project quota over the writable layer, /workspace included (docker README, disk limits).
struct RootQuota {
  bool supported = false;
  bool answered = false;  // the engine answered the question (a result worth keeping)
  std::string why_not;    // one sentence when not supported
};

// Asks the engine by creating (never starting) a container of `image` with StorageOpt size and
// removing it: the engine refuses the option where its storage cannot bound it, and says why.
// One create and one delete (~20-50 ms), so the backend asks once and keeps the answer.
RootQuota ProbeRootQuota(const EngineClient& engine, const std::string& image,
                         std::chrono::milliseconds timeout);

// The StorageOpt size (bytes) a container was created with (its inspect answer), if any.
std::optional<uint64_t> StorageSizeOf(const Json& inspect);

// Bytes in use in the writable layer of a container bounded by a project quota: statvfs of its
// upper directory (GraphDriver.Data.UpperDir), which xfs answers with the project's usage and
// limit. nullopt when the inspect answer names no upper directory or it cannot be read.
std::optional<uint64_t> WritableLayerUsed(const Json& inspect);

}  // namespace agentbox::docker
