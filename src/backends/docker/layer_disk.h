#pragma once

#include <string>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::docker {

// A container's writable layer on the sandbox's own disk (limits.disk_bytes), so that one
// filesystem bounds /workspace and the writable root together (README.md, disk limits).
//
// overlay2 keeps a container's writable layer in two directories of the engine's data-root,
// GraphDriver.Data.UpperDir (diff/) and WorkDir (work/), made when the container is
// created and mounted (as overlayfs upperdir= and workdir=) when it starts; both sit in one
// directory, <data-root>/overlay2/<layer>/, with the small files `link` and `lower`. Between
// create and start, agentboxd copies that directory onto the sandbox's disk (the two files, and
// diff/ with what the engine put there, work/ empty) and bind-mounts the copy over it: the overlay
// then writes to the disk, overlayfs's own requirement (upper and work under one mount) holds, and
// `df /` inside shows the disk. The bind lives in the host's mount namespace, like the disk, so
// it outlasts container restarts, engine restarts and agentboxd restarts.

struct LayerDirs {
  std::string upper;  // GraphDriver.Data.UpperDir
  std::string work;   // GraphDriver.Data.WorkDir
};

// The writable layer's directories of a container (its inspect answer). kInvalidArgument saying
// why when the engine's storage driver is not overlay2 or the directories are not on this host.
Result<LayerDirs> LayerDirsOf(const Json& inspect);

// Binds <disk_root>/layer, a copy of the layer's directory, over it. work/ must hold nothing but
// overlayfs's own work/ (a container created and never started); diff/ holds at most the mount
// points the engine made at create, which are copied. On failure nothing is bound.
Result<void> BindLayerOnDisk(const LayerDirs& layer, const std::string& disk_root);

// Detaches the bind (MNT_DETACH: a running overlay keeps it until the container stops), leaving
// the engine's own directory, so the engine removes the container as usual. Nothing bound:
// success.
Result<void> UnbindLayer(const LayerDirs& layer);

}  // namespace agentbox::docker
