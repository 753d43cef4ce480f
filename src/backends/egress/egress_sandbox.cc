#include "backends/egress/egress_sandbox.h"

#include <dirent.h>

#include <vector>

#include "common/fs_util.h"

namespace agentbox::egress {

Result<std::string> WriteEgressResolvConf(const EgressNetwork* network, std::string_view backend,
                                          const std::string& why_not, const SandboxSpec& spec,
                                          const std::string& dir) {
  if (spec.network != NetworkMode::kEgress) {
    return std::string();
  }
  if (network == nullptr) {
    return Fail(ErrorCode::kInvalidArgument, std::string(backend) + ": " + why_not);
  }
  const std::string path = dir + "/resolv.conf";
  if (auto r = WriteFileAtomic(path, network->ResolvConf(), 0644); !r) {
    return Fail(r.error());
  }
  return path;
}

size_t SweepEgressLinks(EgressNetwork* network, const std::string& state_dir,
                        const std::function<void(const std::string& sandbox_dir,
                                                 std::set<std::string>& live)>& links_of) {
  if (network == nullptr) {
    return 0;
  }
  std::vector<std::string> names;
  if (DIR* d = ::opendir(state_dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      names.emplace_back(e->d_name);
    }
    ::closedir(d);
  }
  std::set<std::string> live;
  for (const auto& name : names) {
    if (ValidSandboxId(name)) {
      links_of(state_dir + "/" + name, live);
    }
  }
  return network->Sweep(live);
}

}  // namespace agentbox::egress
