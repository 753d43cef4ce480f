// Image archives and their documents (images/source.h, images/manifest.h): a `docker save` or
// OCI archive comes from whoever names it, and its manifest.json, index.json, manifests and
// configuration are untrusted. The input is read as a tar (ScanTar); its members then go through
// LoadImage (every document parser, digest checks, link resolution) over an in-memory source.
// The whole input is also fed to each document parser on its own.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "images/manifest.h"
#include "images/source.h"

namespace {

using namespace agentbox;
using namespace agentbox::images;

class MemorySource final : public BlobSource {
 public:
  MemorySource(std::string_view data, std::map<std::string, TarMember> members)
      : data_(data), members_(std::move(members)) {}
  Result<std::string> ReadSmall(const std::string& path, size_t max_bytes) override {
    auto m = Find(path);
    if (!m) {
      return Fail(m.error());
    }
    if (m->size > max_bytes) {
      return Fail(ErrorCode::kTooLarge, "too large");
    }
    return std::string(data_.substr(m->offset, m->size));
  }
  Result<archive::Source> Open(const std::string& path) override {
    auto m = Find(path);
    if (!m) {
      return Fail(m.error());
    }
    return archive::Source([](char*, size_t) -> Result<size_t> { return 0; });
  }
  bool Exists(const std::string& path) override { return Find(path).has_value(); }

 private:
  Result<TarMember> Find(const std::string& path) const {
    std::string p = path;
    for (int hops = 0; hops < 4; ++hops) {
      auto it = members_.find(p);
      if (it == members_.end()) {
        return Fail(ErrorCode::kNotFound, "missing");
      }
      if (it->second.link.empty()) {
        if (it->second.offset + it->second.size > data_.size()) {
          __builtin_trap();  // ScanTar promised a member inside the input
        }
        return it->second;
      }
      p = it->second.link;
    }
    return Fail(ErrorCode::kInvalidArgument, "loop");
  }
  std::string_view data_;
  std::map<std::string, TarMember> members_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  const std::string_view data(reinterpret_cast<const char*>(bytes), size);
  auto members = ScanTar(
      [data](uint64_t off, char* buf, size_t n) -> Result<size_t> {
        if (off >= data.size()) {
          return 0;
        }
        const size_t k = std::min<size_t>(n, data.size() - off);
        std::memcpy(buf, data.data() + off, k);
        return k;
      },
      data.size(), 10000);
  if (members) {
    MemorySource source(data, *members);
    auto image = LoadImage(source, "fuzz");
    if (image) {
      if (image->layers.size() != image->config.diff_ids.size()) {
        __builtin_trap();
      }
    } else {
      (void)image.error().message;
    }
  }
  (void)ParseDockerSaveManifest(data);
  (void)ParseOciIndex(data);
  (void)ParseOciManifest(data);
  (void)ParseImageConfig(data);
  return 0;
}
