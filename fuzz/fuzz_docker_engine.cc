// What the docker backend reads from the Docker Engine: error bodies (EngineMessage,
// EngineError), a container's inspect or list entry (its labels, read back into the sandbox
// record by ParseLabels with Config.Env; GraphDriver's layer directories), and image
// references from clients (ValidImageReference, SplitImageReference). The engine is trusted
// more than a sandbox, but a confused or hostile engine must give errors, not crashes.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "backends/docker/container_request.h"
#include "backends/docker/engine_client.h"
#include "backends/docker/layer_disk.h"
#include "common/json_util.h"

namespace docker = agentbox::docker;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  (void)docker::EngineMessage(body);
  for (long status : {400L, 404L, 409L, 500L}) {
    (void)docker::EngineError(docker::EngineResponse{status, std::string(body)}, "inspect").message;
  }
  const std::string ref(body.substr(0, 300));
  if (docker::ValidImageReference(ref)) {
    (void)docker::SplitImageReference(ref);
  }
  const agentbox::Json j = agentbox::Json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    return 0;
  }
  // An inspect answer or one entry of GET /containers/json, or a whole list of them.
  std::vector<agentbox::Json> containers;
  if (j.is_array()) {
    for (const auto& c : j) {
      containers.push_back(c);
    }
  } else {
    containers.push_back(j);
  }
  for (const auto& c : containers) {
    const auto labels = docker::LabelsOf(c);
    (void)docker::LabelOf(c, docker::label::kId);
    std::vector<std::string> env;
    if (c.is_object()) {
      if (auto cfg = c.find("Config"); cfg != c.end() && cfg->is_object()) {
        if (auto e = cfg->find("Env"); e != cfg->end() && e->is_array()) {
          for (const auto& v : *e) {
            if (v.is_string()) {
              env.push_back(v.get<std::string>());
            }
          }
        }
      }
    }
    if (auto rec = docker::ParseLabels(labels, env)) {
      (void)rec->spec_hash;
    }
    if (auto layer = docker::LayerDirsOf(c)) {
      (void)layer->upper;
    }
  }
  return 0;
}
