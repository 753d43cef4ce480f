#include "images/manifest.h"

#include "common/json_util.h"
#include "images/digest.h"

namespace agentbox::images {
namespace {

constexpr size_t kMaxLayers = 1000;  // docker's own limit is 127 (overlay2); be generous

Error Corrupt(std::string_view what, std::string_view why) {
  return Error(ErrorCode::kInvalidArgument,
               "corrupt image: " + std::string(what) + " " + std::string(why));
}

Result<Json> ParseDoc(std::string_view json, std::string_view what) {
  Json j = ParseUntrustedJson(json);
  if (j.is_discarded()) {
    return Fail(Corrupt(what, "is not JSON"));
  }
  return j;
}

// A string member, "" when absent; an error when present with another type.
Result<std::string> StringField(const Json& j, const char* key, std::string_view what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return std::string();
  }
  if (!it->is_string()) {
    return Fail(Corrupt(what, std::string("has a non-string \"") + key + "\""));
  }
  return it->get<std::string>();
}

Result<std::vector<std::string>> StringList(const Json& j, const char* key, std::string_view what) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return out;
  }
  if (!it->is_array()) {
    return Fail(Corrupt(what, std::string("has a non-array \"") + key + "\""));
  }
  for (const auto& v : *it) {
    if (!v.is_string()) {
      return Fail(Corrupt(what, std::string("has a non-string item in \"") + key + "\""));
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

// A blob path inside a source: relative, no "..", no empty or absolute names.
Result<void> CheckBlobPath(const std::string& path, std::string_view what) {
  if (path.empty() || path.size() > 4096 || path[0] == '/' ||
      path.find('\0') != std::string::npos) {
    return Fail(Corrupt(what, "names an invalid blob path '" + path.substr(0, 200) + "'"));
  }
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) {
      j = path.size();
    }
    if (path.compare(i, j - i, "..") == 0) {
      return Fail(Corrupt(what, "names a blob outside the image '" + path.substr(0, 200) + "'"));
    }
    i = j + 1;
  }
  return {};
}

Result<Descriptor> ParseDescriptor(const Json& j, std::string_view what) {
  if (!j.is_object()) {
    return Fail(Corrupt(what, "has a descriptor that is not an object"));
  }
  Descriptor d;
  auto media = StringField(j, "mediaType", what);
  auto digest = StringField(j, "digest", what);
  if (!media || !digest) {
    return Fail(!media ? media.error() : digest.error());
  }
  d.media_type = *media;
  d.digest = *digest;
  if (auto hex = DigestHex(d.digest, what); !hex) {
    return Fail(Corrupt(what, hex.error().message.substr(std::string(what).size() + 1)));
  }
  if (auto it = j.find("size"); it != j.end() && it->is_number_unsigned()) {
    d.size = it->get<uint64_t>();
  }
  if (auto p = j.find("platform"); p != j.end() && p->is_object()) {
    auto os = StringField(*p, "os", what);
    auto arch = StringField(*p, "architecture", what);
    if (!os || !arch) {
      return Fail(!os ? os.error() : arch.error());
    }
    d.os = *os;
    d.architecture = *arch;
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    auto ref = StringField(*a, "org.opencontainers.image.ref.name", what);
    if (!ref) {
      return Fail(ref.error());
    }
    d.ref_name = *ref;
  }
  return d;
}

}  // namespace

Result<std::string> BlobPath(std::string_view digest) {
  auto hex = DigestHex(digest, "blob");
  if (!hex) {
    return Fail(hex.error());
  }
  return "blobs/sha256/" + *hex;
}

Result<std::vector<ManifestEntry>> ParseDockerSaveManifest(std::string_view json) {
  constexpr std::string_view kWhat = "manifest.json";
  auto j = ParseDoc(json, kWhat);
  if (!j) {
    return Fail(j.error());
  }
  if (!j->is_array() || j->empty()) {
    return Fail(Corrupt(kWhat, "is not a non-empty array"));
  }
  std::vector<ManifestEntry> out;
  for (const auto& item : *j) {
    if (!item.is_object()) {
      return Fail(Corrupt(kWhat, "has an entry that is not an object"));
    }
    ManifestEntry e;
    auto config = StringField(item, "Config", kWhat);
    auto tags = StringList(item, "RepoTags", kWhat);
    auto layers = StringList(item, "Layers", kWhat);
    if (!config || !tags || !layers) {
      return Fail(!config ? config.error() : !tags ? tags.error() : layers.error());
    }
    if (auto r = CheckBlobPath(*config, kWhat); !r) {
      return Fail(r.error());
    }
    if (layers->size() > kMaxLayers) {
      return Fail(Corrupt(kWhat, "lists more than " + std::to_string(kMaxLayers) + " layers"));
    }
    e.config_blob = *config;
    // "<hex>.json" (Docker < 25) or "blobs/sha256/<hex>" (Docker 25+): the digest of the config.
    std::string base = e.config_blob.substr(e.config_blob.rfind('/') + 1);
    if (base.size() > 5 && base.ends_with(".json")) {
      base.resize(base.size() - 5);
    }
    if (DigestHex("sha256:" + base, kWhat)) {
      e.config_digest = "sha256:" + base;
    }
    for (const auto& l : *layers) {
      if (auto r = CheckBlobPath(l, kWhat); !r) {
        return Fail(r.error());
      }
      e.layer_blobs.push_back(l);
      // Docker 25+ stores layers as blobs/sha256/<hex>: the path is the blob's digest.
      const std::string prefix = "blobs/sha256/";
      const std::string maybe = "sha256:" + (l.starts_with(prefix) ? l.substr(prefix.size()) : "");
      e.layer_digests.push_back(DigestHex(maybe, kWhat) ? maybe : "");
    }
    e.tags = *tags;
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<Descriptor>> ParseOciIndex(std::string_view json) {
  constexpr std::string_view kWhat = "index.json";
  auto j = ParseDoc(json, kWhat);
  if (!j) {
    return Fail(j.error());
  }
  if (!j->is_object()) {
    return Fail(Corrupt(kWhat, "is not an object"));
  }
  auto it = j->find("manifests");
  if (it == j->end() || !it->is_array()) {
    return Fail(Corrupt(kWhat, "has no \"manifests\" array"));
  }
  std::vector<Descriptor> out;
  for (const auto& m : *it) {
    auto d = ParseDescriptor(m, kWhat);
    if (!d) {
      return Fail(d.error());
    }
    out.push_back(std::move(*d));
    if (out.size() > kMaxLayers) {
      return Fail(Corrupt(kWhat, "lists too many manifests"));
    }
  }
  return out;
}

Result<ManifestEntry> ParseOciManifest(std::string_view json) {
  constexpr std::string_view kWhat = "image manifest";
  auto j = ParseDoc(json, kWhat);
  if (!j) {
    return Fail(j.error());
  }
  if (!j->is_object()) {
    return Fail(Corrupt(kWhat, "is not an object"));
  }
  auto config = j->find("config");
  auto layers = j->find("layers");
  if (config == j->end() || layers == j->end() || !layers->is_array()) {
    return Fail(Corrupt(kWhat, "has no \"config\" or no \"layers\" array"));
  }
  if (layers->size() > kMaxLayers) {
    return Fail(Corrupt(kWhat, "lists more than " + std::to_string(kMaxLayers) + " layers"));
  }
  auto cd = ParseDescriptor(*config, kWhat);
  if (!cd) {
    return Fail(cd.error());
  }
  ManifestEntry e;
  e.config_digest = cd->digest;
  e.config_blob = *BlobPath(cd->digest);
  for (const auto& l : *layers) {
    auto d = ParseDescriptor(l, kWhat);
    if (!d) {
      return Fail(d.error());
    }
    if (d->media_type.find("nondistributable") != std::string::npos ||
        d->media_type.find("foreign") != std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument, "image layer " + d->digest +
                                                   " is a foreign layer (" + d->media_type +
                                                   "), which is not in the image");
    }
    e.layer_blobs.push_back(*BlobPath(d->digest));
    e.layer_digests.push_back(d->digest);
  }
  return e;
}

Result<ParsedConfig> ParseImageConfig(std::string_view json) {
  constexpr std::string_view kWhat = "image configuration";
  auto j = ParseDoc(json, kWhat);
  if (!j) {
    return Fail(j.error());
  }
  if (!j->is_object()) {
    return Fail(Corrupt(kWhat, "is not an object"));
  }
  ParsedConfig out;
  auto os = StringField(*j, "os", kWhat);
  auto arch = StringField(*j, "architecture", kWhat);
  if (!os || !arch) {
    return Fail(!os ? os.error() : arch.error());
  }
  out.os = *os;
  out.architecture = *arch;
  if (auto c = j->find("config"); c != j->end() && c->is_object()) {
    auto env = StringList(*c, "Env", kWhat);
    auto wd = StringField(*c, "WorkingDir", kWhat);
    auto user = StringField(*c, "User", kWhat);
    if (!env || !wd || !user) {
      return Fail(!env ? env.error() : !wd ? wd.error() : user.error());
    }
    for (const auto& e : *env) {
      const size_t eq = e.find('=');
      if (eq == 0 || eq == std::string::npos || e.find('\0') != std::string::npos) {
        return Fail(Corrupt(kWhat, "has a malformed Env entry '" + e.substr(0, 100) + "'"));
      }
    }
    if (!wd->empty() && (*wd)[0] != '/') {
      return Fail(Corrupt(kWhat, "has a relative WorkingDir '" + wd->substr(0, 100) + "'"));
    }
    out.config.env = *env;
    out.config.working_dir = *wd;
    out.config.user = *user;
  }
  auto rootfs = j->find("rootfs");
  if (rootfs == j->end() || !rootfs->is_object()) {
    return Fail(Corrupt(kWhat, "has no \"rootfs\""));
  }
  auto ids = StringList(*rootfs, "diff_ids", kWhat);
  if (!ids) {
    return Fail(ids.error());
  }
  if (ids->size() > kMaxLayers) {
    return Fail(Corrupt(kWhat, "lists more than " + std::to_string(kMaxLayers) + " layers"));
  }
  for (const auto& id : *ids) {
    if (auto hex = DigestHex(id, "a diff_id"); !hex) {
      return Fail(Corrupt(kWhat, hex.error().message));
    }
  }
  out.diff_ids = *ids;
  return out;
}

}  // namespace agentbox::images
