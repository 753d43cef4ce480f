#pragma once

#include <functional>
#include <map>
#include <string>

#include "common/config.h"

namespace agentbox::fakes {

// A DaemonOptions::load_config over fixed values (no files, no environment) with the runtime
// flags on top, the highest precedence, as agentboxd's is.
inline std::function<Result<Config>(const std::map<std::string, std::string>&)> FixedConfig(
    std::map<std::string, std::string> values) {
  return [values = std::move(values)](const std::map<std::string, std::string>& flags) {
    Config::Sources sources;
    sources.defaults = values;
    sources.use_environment = false;
    sources.overrides = flags;
    return Config::Load(sources);
  };
}

}  // namespace agentbox::fakes
