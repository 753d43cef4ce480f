#pragma once

// What a sandbox changed in its writable root filesystem (SandboxBackend::RootChanges): the
// files a migration leaves behind (docs/migration.md), listed in its `not_moved`.

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox {

struct RootChange {
  std::string path;  // absolute, inside the sandbox
  std::string kind;  // "added", "changed" or "deleted"
};

struct RootChanges {
  std::vector<RootChange> paths;  // deepest only, sorted by path, at most the caller's limit
  uint64_t total = 0;             // how many there were before the limit
};

// Implemented by the backends whose sandboxes have a writable root they can diff against its
// image (jail, docker, and the warm pool in front of them); the daemon finds it with
// dynamic_cast on a SandboxBackend. Thread-safe like SandboxBackend.
class RootChangeSource {
 public:
  virtual ~RootChangeSource() = default;
  // What sandbox `id` changed in its writable root filesystem since it was created from its
  // image: paths outside /workspace, /tmp and the backend's own mounts, deepest only, at most
  // `limit` of them. Empty when nothing changed or the root is not writable (read_only_root;
  // the jail's host directories). kNotFound for an unknown id. A migration lists them as not
  // moved (docs/migration.md).
  virtual Result<RootChanges> ListRootChanges(const std::string& id, size_t limit) = 0;
};

// Whether `path` (absolute, inside the sandbox) is one the backends provide themselves rather
// than the image's root: /workspace, /tmp, /dev, /proc, /sys, /run/agentbox, /.agentbox (the
// guest's binary) and everything under them, and the files the runtime bind-mounts over /etc
// (resolv.conf, hosts, hostname). Changes there are not changes of the root.
bool OutsideTheRoot(const std::string& path);

// Turns every changed path a backend found (each directory on the way may be listed too, as the
// Docker engine does) into RootChanges: a directory dropped when something under it is listed
// (its files say more; a mount point in it counts, so /run made for /run/agentbox goes), then
// paths OutsideTheRoot dropped, sorted, the first `limit` kept.
RootChanges CollapseRootChanges(std::vector<RootChange> all, size_t limit);

// {"changed": [{"path", "kind"}...], "changed_total": N}.
Json RootChangesJson(const RootChanges& changes);

}  // namespace agentbox
