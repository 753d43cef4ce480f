#include "backends/jail/rlimits.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace agentbox::jail {
namespace {

Result<void> Set(int resource, const char* name, uint64_t value) {
  struct rlimit cur {};
  if (::getrlimit(resource, &cur) != 0) {
    return Fail(ErrnoError(errno, std::string("getrlimit ") + name));
  }
  const rlim_t v = std::min<rlim_t>(static_cast<rlim_t>(value), cur.rlim_max);
  const struct rlimit lim = {v, v};
  if (::setrlimit(resource, &lim) != 0) {
    return Fail(ErrnoError(errno, std::string("setrlimit ") + name + " " + std::to_string(v)));
  }
  return {};
}

}  // namespace

Result<void> ApplyRlimits(const RlimitsConfig& cfg) {
  if (auto r = Set(RLIMIT_CORE, "RLIMIT_CORE", cfg.core_bytes); !r) {
    return r;
  }
  if (cfg.open_files) {
    if (auto r = Set(RLIMIT_NOFILE, "RLIMIT_NOFILE", *cfg.open_files); !r) {
      return r;
    }
  }
  if (cfg.file_size_bytes) {
    if (auto r = Set(RLIMIT_FSIZE, "RLIMIT_FSIZE", *cfg.file_size_bytes); !r) {
      return r;
    }
  }
  return {};
}

}  // namespace agentbox::jail
