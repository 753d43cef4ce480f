#pragma once

// The root filesystem of a jail whose image is a stack of OCI layers (images/, docs/images.md):
// the layers are mounted read-only, stacked with overlayfs when there are several, and the
// stack's top-level entries are exposed at the jail's root like an image directory's.
//
// Ownership: the layers keep the image's own ids (0..65535) on disk. With a private id range
// (as root) the helper makes an idmapped mount of each layer with the sandbox's mapping, so the
// image's root is the sandbox's root; unprivileged (one mapped id) the layers belong to the
// caller, who is the sandbox's root already, and are bound as they are.

#include <sys/types.h>

#include <vector>

#include "backends/jail/mount_ns.h"
#include "backends/jail/user_ns.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::jail {

// Whether the layers are mounted idmapped (a private id range) rather than bound as they are.
bool IdmapImageLayers(const UserNsConfig& user);

// Parent side, after the child's id maps are written: a detached, read-only, idmapped mount of
// each layer (plan.layers, bottom first) with the user namespace of `child`.
Result<std::vector<UniqueFd>> MakeIdmappedLayers(pid_t child, const MountPlan& plan);

// Hands descriptors to the other end of a unix socket, and takes them there.
Result<void> SendFds(int sock, const std::vector<UniqueFd>& fds);
Result<std::vector<UniqueFd>> ReceiveFds(int sock, size_t count);

// Child side, in the new root (the current directory) after BecomeNamespaceRoot: attaches the
// layers (plan.layer_mounts, or binds of plan.layers' descriptors), stacks them with a
// read-only overlay when there are several ("userxattr": opaque directories are read from
// user.overlay.opaque), and exposes every top-level entry of the result except the ones the
// jail provides itself, read-only, nosuid, nodev. The stacking mounts are detached afterwards;
// the exposed binds keep them alive.
Result<void> ExposeImageLayers(const MountPlan& plan);

}  // namespace agentbox::jail
