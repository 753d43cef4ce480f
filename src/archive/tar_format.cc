#include "archive/tar_format.h"

#include <cstdio>
#include <cstring>

namespace agentbox::archive::tar {

bool PutOctal(char* block, Field f, uint64_t v) {
  // len-1 digits and a NUL.
  char tmp[32];
  const int n = std::snprintf(tmp, sizeof(tmp), "%0*llo", static_cast<int>(f.len - 1),
                              static_cast<unsigned long long>(v));
  if (n < 0 || static_cast<size_t>(n) > f.len - 1) {
    return false;
  }
  std::memcpy(block + f.off, tmp, f.len - 1);
  block[f.off + f.len - 1] = '\0';
  return true;
}

std::optional<uint64_t> GetNumber(const char* block, Field f) {
  const auto* p = reinterpret_cast<const unsigned char*>(block + f.off);
  if (p[0] & 0x80) {  // GNU base-256: big-endian, top bit of the first byte set
    if (p[0] & 0x40) {
      return std::nullopt;  // negative
    }
    uint64_t v = p[0] & 0x3f;
    for (size_t i = 1; i < f.len; ++i) {
      if (v >> 56) {
        return std::nullopt;
      }
      v = (v << 8) | p[i];
    }
    return v;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < f.len && (p[i] == ' ' || p[i] == '\0')) {
    ++i;
  }
  bool any = false;
  for (; i < f.len && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (v >> 60) {
      return std::nullopt;
    }
    v = v * 8 + (p[i] - '0');
    any = true;
  }
  for (; i < f.len; ++i) {
    if (p[i] != ' ' && p[i] != '\0') {
      return std::nullopt;
    }
  }
  return any ? std::optional(v) : std::optional<uint64_t>(0);
}

std::string GetString(const char* block, Field f) {
  const char* p = block + f.off;
  return std::string(p, strnlen(p, f.len));
}

void SetChecksum(char* block) {
  std::memset(block + kChksum.off, ' ', kChksum.len);
  unsigned sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    sum += static_cast<unsigned char>(block[i]);
  }
  std::snprintf(block + kChksum.off, kChksum.len, "%06o", sum);
  block[kChksum.off + 7] = ' ';
}

bool ChecksumOk(const char* block) {
  auto want = GetNumber(block, kChksum);
  if (!want) {
    return false;
  }
  uint64_t u = 0;
  int64_t s = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    const bool in_field = i >= kChksum.off && i < kChksum.off + kChksum.len;
    u += in_field ? ' ' : static_cast<unsigned char>(block[i]);
    s += in_field ? ' ' : static_cast<signed char>(block[i]);
  }
  return *want == u || static_cast<int64_t>(*want) == s;
}

std::string PaxRecord(std::string_view key, std::string_view value) {
  const size_t body = 1 + key.size() + 1 + value.size() + 1;  // " key=value\n"
  size_t len = body + 1;
  while (std::to_string(len).size() + body != len) {
    len = std::to_string(len).size() + body;
  }
  std::string r = std::to_string(len);
  r += ' ';
  r += key;
  r += '=';
  r += value;
  r += '\n';
  return r;
}

}  // namespace agentbox::archive::tar
