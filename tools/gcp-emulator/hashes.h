#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

// The checksums Cloud Storage reports for every object (crc32c and md5, base64 of the big-endian
// bytes) and the base64 codecs they and JWTs need.
namespace agentbox::gcpemu {

// Incremental CRC-32C (Castagnoli) and MD5 of a byte stream. Not thread-safe.
class ObjectHasher {
 public:
  ObjectHasher();
  ~ObjectHasher();
  ObjectHasher(const ObjectHasher&) = delete;
  ObjectHasher& operator=(const ObjectHasher&) = delete;

  void Update(std::string_view bytes);
  uint64_t size() const { return size_; }
  // base64 of the 4 big-endian bytes of the CRC-32C, as in the object resource's `crc32c`.
  std::string Crc32cBase64() const;
  // base64 of the 16 MD5 bytes, as in `md5Hash`. Ends the MD5: call once, after every Update.
  std::string Md5Base64();

 private:
  uint32_t crc_ = 0;
  uint64_t size_ = 0;
  struct Md5;
  std::unique_ptr<Md5> md5_;
};

uint32_t Crc32cExtend(uint32_t crc, std::string_view bytes);

struct FileHashes {
  uint64_t size = 0;
  std::string crc32c;
  std::string md5;
};
// Reads the whole file at `path` and hashes it.
Result<FileHashes> HashFile(const std::string& path);

std::string Base64Encode(std::string_view bytes);
std::string Base64UrlEncode(std::string_view bytes);  // no padding
// Standard or URL alphabet, padding optional; nullopt on any other character.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace agentbox::gcpemu
