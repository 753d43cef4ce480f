#pragma once

// What a sandbox's `image` names (docs/images.md, "Image forms").

#include <string>

#include "archive/archive.h"
#include "common/error.h"

namespace agentbox::images {

// What `image` names, decided without unpacking anything (docs/images.md, "Image forms"):
//   ""                              kHost: the host's system directories
//   absolute directory with an      kLayout: an OCI image layout
//     "oci-layout" file and index.json
//   other absolute directory        kRootfsDir: a root filesystem, used as it is
//   absolute file that is a tar     kArchive: `docker save` or OCI archive (gzip/zstd too)
//     with a top-level manifest.json or index.json
//   other absolute file             kRootfsTarball: a root filesystem in a tarball
//   anything else                   kEngine: a reference to an image of the local Docker engine
// kNotFound for a missing absolute path, kInvalidArgument for a relative path or a name that is
// no image reference.
enum class ImageForm { kHost, kRootfsDir, kRootfsTarball, kLayout, kArchive, kEngine };
Result<ImageForm> ClassifyImage(const std::string& image);
// The cheap half of ClassifyImage: kInvalidArgument for what can never name an image (a relative
// path, a name with characters no reference has); touches no file.
Result<void> CheckImageName(const std::string& image);
const char* ImageFormName(ImageForm f);

// Whether the file at `fd` starts with a gzip or zstd magic number (read with pread).
bool IsCompressed(int fd);
// Reads `fd` from its current offset as an archive::Source.
archive::Source FdSource(int fd);

}  // namespace agentbox::images
