// DockerBackend::ListRootChanges: the engine's own diff of the container's writable layer
// against its image (GET /containers/{id}/changes, what `docker diff` prints).
#include "backends/docker/container_request.h"
#include "backends/docker/docker_backend.h"
#include "common/json_util.h"

namespace agentbox::docker {

Result<RootChanges> DockerBackend::ListRootChanges(const std::string& id, size_t limit) {
  auto c = InspectOurs(id);  // kNotFound unless it is this state directory's sandbox
  if (!c) {
    return Fail(c.error());
  }
  const std::string container = ValueOr(*c, "Id", ContainerName(id));
  auto r =
      engine_.Call("GET", "/containers/" + container + "/changes", {}, std::chrono::seconds(60));
  if (!r) {
    return Fail(r.error());
  }
  if (r->status != 200) {
    return Fail(EngineError(*r, "list the changes of container " + ContainerName(id)));
  }
  const Json list = ParseUntrustedJson(r->body);  // null when nothing changed
  std::vector<RootChange> all;
  for (const auto& row : list.is_array() ? list : Json::array()) {
    if (!row.is_object() || !row.contains("Path") || !row["Path"].is_string()) {
      continue;
    }
    const int kind = row.contains("Kind") && row["Kind"].is_number_integer()
                         ? row["Kind"].get<int>()
                         : 0;  // 0 modified, 1 added, 2 deleted
    all.push_back({row["Path"].get<std::string>(), kind == 1   ? "added"
                                                   : kind == 2 ? "deleted"
                                                               : "changed"});
  }
  return CollapseRootChanges(std::move(all), limit);
}

}  // namespace agentbox::docker
