#pragma once

// The JSON documents of an image, parsed from untrusted bytes: `docker save`'s manifest.json,
// OCI index.json and image manifests, and the image configuration. Pure functions (no I/O), so
// they can be fuzzed (fuzz/fuzz_image_manifest.cc).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace agentbox::images {

// What of the image's configuration the jail honours (as docker does): the process environment
// ("NAME=value", in the image's order), the working directory and the user. Entrypoint and Cmd
// are ignored: the guest is the sandbox's entry point.
struct ImageConfig {
  std::vector<std::string> env;
  std::string working_dir;
  std::string user;
};

// One layer: where its blob is in the source, the blob's digest (of the bytes as stored,
// compressed or not; empty where the source does not say, as in `docker save` before Docker 25)
// and its diff_id (the digest of the uncompressed tar, from the configuration).
struct LayerRef {
  std::string blob;
  std::string digest;
  std::string diff_id;
};

// One image of a source, before its configuration is read.
struct ManifestEntry {
  std::string config_blob;    // path of the configuration in the source
  std::string config_digest;  // "sha256:..." when known (OCI), else derived from the file name
  std::vector<std::string> layer_blobs;
  std::vector<std::string> layer_digests;  // parallel to layer_blobs; "" where unknown
  std::vector<std::string> tags;           // RepoTags / ref names, for messages and selection
};

// `docker save`'s manifest.json: [{"Config": "<hex>.json" | "blobs/sha256/<hex>", "RepoTags":
// [...], "Layers": [...]}]. kInvalidArgument (the archive is corrupt) naming what is wrong.
Result<std::vector<ManifestEntry>> ParseDockerSaveManifest(std::string_view json);

// A descriptor of an OCI index.
struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  std::string os;
  std::string architecture;
  std::string ref_name;  // annotation org.opencontainers.image.ref.name
};
inline constexpr std::string_view kOciIndexType = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerListType =
    "application/vnd.docker.distribution.manifest.list.v2+json";

// index.json (or a nested image index): its manifests.
Result<std::vector<Descriptor>> ParseOciIndex(std::string_view json);
// An OCI (or Docker v2 schema 2) image manifest; blobs named "blobs/sha256/<hex>".
Result<ManifestEntry> ParseOciManifest(std::string_view json);

// The image configuration: what the jail honours, and rootfs.diff_ids (bottom first).
struct ParsedConfig {
  ImageConfig config;
  std::vector<std::string> diff_ids;
  std::string os;
  std::string architecture;
};
Result<ParsedConfig> ParseImageConfig(std::string_view json);

// "blobs/sha256/<hex>" for a digest (which must be well-formed).
Result<std::string> BlobPath(std::string_view digest);

}  // namespace agentbox::images
