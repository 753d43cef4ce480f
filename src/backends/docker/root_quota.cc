#include "backends/docker/root_quota.h"

#include <sys/statvfs.h>

#include <cstdlib>

namespace agentbox::docker {

RootQuota ProbeRootQuota(const EngineClient& engine, const std::string& image,
                         std::chrono::milliseconds timeout) {
  RootQuota q;
  const Json body = {{"Image", image},
                     {"Cmd", Json::array({"true"})},
                     {"Labels", {{"agentbox.probe", "storage-opt"}}},
                     {"HostConfig", {{"StorageOpt", {{"size", "16M"}}}, {"NetworkMode", "none"}}}};
  auto r = engine.Call("POST", "/containers/create", body.dump(), timeout);
  if (!r) {
    q.why_not = "the Docker engine at " + engine.socket_path() + " did not answer";
    return q;
  }
  // A missing image says nothing about the storage: asked again once it is there.
  q.answered = r->status != 404;
  if (r->status == 201) {
    const Json c = Json::parse(r->body, nullptr, false);
    const std::string id = c.is_object() ? c.value("Id", "") : "";
    if (!id.empty()) {
      (void)engine.Call("DELETE", "/containers/" + id + "?force=1&v=1", {}, timeout);
    }
    q.supported = true;
    return q;
  }
  q.why_not = "the Docker engine at " + engine.socket_path() +
              " cannot bound a container's writable layer (" + EngineMessage(r->body) +
              "); scripts/start-dockerd.sh with AGENTBOX_DOCKERD_XFS_BYTES runs an engine that can";
  return q;
}

std::optional<uint64_t> StorageSizeOf(const Json& c) {
  if (!c.is_object() || !c.contains("HostConfig") || !c["HostConfig"].is_object()) {
    return std::nullopt;
  }
  const Json& h = c["HostConfig"];
  auto it = h.find("StorageOpt");
  if (it == h.end() || !it->is_object() || !it->contains("size") || !(*it)["size"].is_string()) {
    return std::nullopt;
  }
  const std::string& s = (*it)["size"].get_ref<const std::string&>();
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0' || v == 0) {
    return std::nullopt;
  }
  return v;
}

std::optional<uint64_t> WritableLayerUsed(const Json& c) {
  if (!c.is_object() || !c.contains("GraphDriver") || !c["GraphDriver"].is_object() ||
      !c["GraphDriver"].contains("Data") || !c["GraphDriver"]["Data"].is_object()) {
    return std::nullopt;
  }
  const Json& data = c["GraphDriver"]["Data"];
  auto it = data.find("UpperDir");
  if (it == data.end() || !it->is_string()) {
    return std::nullopt;
  }
  struct statvfs st {};
  if (::statvfs(it->get_ref<const std::string&>().c_str(), &st) != 0) {
    return std::nullopt;
  }
  return static_cast<uint64_t>(st.f_blocks - st.f_bfree) * st.f_frsize;
}

}  // namespace agentbox::docker
