#pragma once

// Test helpers: tar streams, layers and image archives built in memory.

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "archive/tar_format.h"
#include "common/json_util.h"
#include "images/digest.h"

namespace agentbox::images::testing {

struct TarEntry {
  std::string name;
  char type = '0';
  std::string data;  // regular files
  std::string link;  // symlinks, hard links
  unsigned mode = 0644;
  unsigned uid = 0;
  unsigned gid = 0;
};

inline TarEntry File(std::string name, std::string data, unsigned mode = 0644) {
  return {std::move(name), '0', std::move(data), "", mode};
}
inline TarEntry Dir(std::string name, unsigned mode = 0755) {
  return {std::move(name), '5', "", "", mode};
}
inline TarEntry Symlink(std::string name, std::string target) {
  return {std::move(name), '2', "", std::move(target), 0777};
}
inline TarEntry HardLink(std::string name, std::string target) {
  return {std::move(name), '1', "", std::move(target), 0644};
}

// A ustar stream with the end marker.
inline std::string Tar(const std::vector<TarEntry>& entries) {
  namespace tar = archive::tar;
  std::string out;
  for (const auto& e : entries) {
    char h[tar::kBlock] = {};
    std::memcpy(h + tar::kName.off, e.name.data(), std::min<size_t>(e.name.size(), 99));
    tar::PutOctal(h, tar::kMode, e.mode);
    tar::PutOctal(h, tar::kUid, e.uid);
    tar::PutOctal(h, tar::kGid, e.gid);
    tar::PutOctal(h, tar::kSize, e.type == '0' ? e.data.size() : 0);
    tar::PutOctal(h, tar::kMtime, 1700000000);
    h[tar::kType.off] = e.type;
    std::memcpy(h + tar::kLinkname.off, e.link.data(), std::min<size_t>(e.link.size(), 99));
    std::memcpy(h + tar::kMagic.off, "ustar", 6);
    std::memcpy(h + tar::kVersion.off, "00", 2);
    tar::SetChecksum(h);
    out.append(h, sizeof(h));
    if (e.type == '0') {
      out += e.data;
      out.append((tar::kBlock - e.data.size() % tar::kBlock) % tar::kBlock, '\0');
    }
  }
  out.append(2 * tar::kBlock, '\0');
  return out;
}

// A `docker save` archive (Docker < 25 layout) of one image made of `layers` (tar streams,
// bottom first) with `config` merged into its configuration.
inline std::string DockerSaveArchive(const std::vector<std::string>& layers,
                                     const Json& config = Json::object(),
                                     const std::string& tag = "test/image:latest") {
  Json diff_ids = Json::array();
  std::vector<TarEntry> entries;
  Json layer_paths = Json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string id = Sha256Digest(layers[i]);
    diff_ids.push_back(id);
    const std::string dir = id.substr(7, 20) + std::to_string(i);
    entries.push_back(Dir(dir));
    entries.push_back(File(dir + "/layer.tar", layers[i]));
    layer_paths.push_back(dir + "/layer.tar");
  }
  Json cfg = {{"architecture", "amd64"},
              {"os", "linux"},
              {"config", config},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
  const std::string cfg_text = cfg.dump();
  const std::string cfg_name = Sha256Digest(cfg_text).substr(7) + ".json";
  entries.push_back(File(cfg_name, cfg_text));
  Json manifest = Json::array(
      {{{"Config", cfg_name}, {"RepoTags", Json::array({tag})}, {"Layers", layer_paths}}});
  entries.push_back(File("manifest.json", manifest.dump()));
  return Tar(entries);
}

}  // namespace agentbox::images::testing
