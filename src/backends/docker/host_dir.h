#pragma once

#include <map>
#include <string>

#include "common/error.h"
#include "common/fs_util.h"  // WriteFileAtomic, RemoveTree, PathExists

namespace agentbox::docker {

// Each sandbox's directory on the host, <state_dir>/<id>/ (mode 0700):
//
//   meta.json   the mutable metadata (below); host-only, never mounted into the container
//   run/        bind-mounted at /run/agentbox: the guest's token file and its socket guest.sock
//
// Docker labels cannot change after a container is created, so what changes afterwards (the
// owner and labels set by Claim, the expiry set by SetExpiry) lives in meta.json, and the labels
// keep the values the sandbox was created with.
struct SandboxMeta {
  std::string token;  // the guest's X-Access-Token
  std::string owner;
  std::map<std::string, std::string> labels;
  double expires_at = 0;  // unix seconds
  bool claimed = false;   // handed out by Claim (a warm pool's sandbox now has an owner)
  std::string egress_link;  // network egress: the host end of its veth (backends/egress)
};

inline constexpr const char* kMetaFile = "meta.json";
inline constexpr const char* kRunDir = "run";
inline constexpr const char* kTokenFile = "token";
inline constexpr const char* kGuestSocket = "guest.sock";
// The destroy's journal: written before the container is removed. A sandbox whose directory
// holds it is no longer listed, and the next daemon finishes the destroy (Recover).
inline constexpr const char* kDestroyingFile = "destroying";

// Reads <dir>/meta.json. kNotFound when the file (or the directory) is missing.
Result<SandboxMeta> LoadMeta(const std::string& dir);
// Replaces <dir>/meta.json atomically (temp file, rename): a reader sees the old or the new
// metadata, never a mix.
Result<void> SaveMeta(const std::string& dir, const SandboxMeta& meta);

}  // namespace agentbox::docker
