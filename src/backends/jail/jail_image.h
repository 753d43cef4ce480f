#pragma once

// What a jail sandbox's `image` becomes (docs/images.md): the host's system directories, a root
// filesystem directory or tarball (as before images), or an OCI image resolved by the image
// store into unpacked layers (bottom first) and the configuration the jail honours.

#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "images/image_store.h"

namespace agentbox::jail {

struct JailImage {
  images::ImageForm form = images::ImageForm::kHost;
  std::string path;                     // kRootfsDir, kRootfsTarball: the host path
  std::string id;                       // OCI forms: the image id (its configuration's digest)
  std::vector<std::string> layer_dirs;  // OCI forms: overlayfs lower directories, bottom first
  images::ImageConfig config;           // OCI forms
};

// The lease a sandbox holds on its image's layers in the store.
std::string ImageLease(const std::string& sandbox_id);

// Classifies `image` and, for an OCI image, resolves it through `store` holding the lease of
// `sandbox_id` (empty: no lease, e.g. Prepare). kInvalidArgument when an OCI image is named and
// there is no store (`why_no_store` says why).
Result<JailImage> ResolveJailImage(images::ImageStore* store, const std::string& why_no_store,
                                   const std::string& image, const std::string& sandbox_id,
                                   const images::ImageStore::Progress& progress = nullptr);

// Applies the image's configuration as docker does: the image's Env over the jail's defaults
// (PATH, HOME, ...), the sandbox's own env over both; WorkingDir becomes the guest's working
// directory when the image has that directory (else `workdir` stays and a note says why).
// Returns notes for the sandbox's detail (empty when everything applied).
std::string ApplyImageConfig(const JailImage& image, std::map<std::string, std::string>& env,
                             std::string& workdir);

}  // namespace agentbox::jail
