#pragma once

#include <map>
#include <memory>
#include <string>

#include "api/sandbox_backend.h"
#include "api/tunnel_registry.h"
#include "common/config.h"
#include "images/image_store.h"

namespace agentbox::selector {

// Every backend this build knows, constructed from configuration. A backend whose configuration
// is invalid is not constructed; its error is kept so that the selector can explain a fallback
// (error_code INVALID_CONFIG) instead of refusing to start.
struct BackendTable {
  std::map<std::string, SandboxBackendPtr> backends;
  std::map<std::string, std::string> config_errors;  // backend name -> one sentence
  // The jail's OCI image cache (docs/images.md), for /metrics; null when it could not be opened.
  std::shared_ptr<images::ImageStore> images;
  // Names this build knows, in fallback order of preference.
  static const std::vector<std::string>& KnownNames();

  SandboxBackend* Find(const std::string& name) const;
  // Keeps `backend` under `name`, or its configuration error.
  void Add(const std::string& name, Result<SandboxBackendPtr> backend);
  std::map<std::string, SandboxBackend*> Pointers() const;
};

// A binary that ships with agentboxd (the guest, the jail helper): the path configured under
// `key`, else next to agentboxd, else /usr/local/lib/agentbox, else `build_path`.
std::string FindBinary(const Config& cfg, const std::string& key, const std::string& name,
                       const std::string& build_path);

// Builds the table: `state_dir` is the daemon's state directory (each backend keeps its own
// subdirectory). `tunnels`: where backends whose guests dial out (cloudrun session mode) register
// them; null: no such backend mode is available. Never fails: per-backend problems land in
// config_errors.
BackendTable BuildBackends(const Config& cfg, const std::string& state_dir,
                           TunnelRegistry* tunnels = nullptr);

}  // namespace agentbox::selector
