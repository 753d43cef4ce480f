#pragma once

// Decodes an 8-bit RGB or RGBA PNG (what Chromium's --screenshot writes) into pixels, with zlib:
// enough for the port suite to check the colour a page painted.

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace agentbox::ports_test {

struct Image {
  uint32_t width = 0;
  uint32_t height = 0;
  std::vector<uint8_t> rgb;  // width * height * 3
};

inline uint32_t Be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
         (uint32_t(uint8_t(s[at + 2])) << 8) | uint8_t(s[at + 3]);
}

// Nothing when the file is not an 8-bit, non-interlaced RGB/RGBA PNG.
inline std::optional<Image> ReadPng(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string f = ss.str();
  if (f.size() < 8 || f.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) {
    return std::nullopt;
  }
  Image img;
  int channels = 0;
  std::string idat;
  for (size_t at = 8; at + 8 <= f.size();) {
    const uint32_t len = Be32(f, at);
    const std::string type = f.substr(at + 4, 4);
    if (at + 12 + len > f.size()) {
      return std::nullopt;
    }
    const std::string data = f.substr(at + 8, len);
    if (type == "IHDR") {
      img.width = Be32(data, 0);
      img.height = Be32(data, 4);
      const int depth = uint8_t(data[8]);
      const int color = uint8_t(data[9]);
      if (depth != 8 || (color != 2 && color != 6) || data[12] != 0) {
        return std::nullopt;
      }
      channels = color == 2 ? 3 : 4;
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      break;
    }
    at += 12 + len;
  }
  if (channels == 0) {
    return std::nullopt;
  }
  const size_t stride = size_t(img.width) * channels;
  std::vector<uint8_t> raw((stride + 1) * img.height);
  uLongf raw_len = raw.size();
  if (uncompress(raw.data(), &raw_len, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) !=
          Z_OK ||
      raw_len != raw.size()) {
    return std::nullopt;
  }
  std::vector<uint8_t> px(stride * img.height);
  for (uint32_t y = 0; y < img.height; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    const uint8_t* src = &raw[y * (stride + 1) + 1];
    uint8_t* row = &px[y * stride];
    const uint8_t* prev = y > 0 ? &px[(y - 1) * stride] : nullptr;
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= size_t(channels) ? row[x - channels] : 0;
      const int b = prev ? prev[x] : 0;
      const int c = prev && x >= size_t(channels) ? prev[x - channels] : 0;
      int v = src[x];
      switch (filter) {
        case 0:
          break;
        case 1:
          v += a;
          break;
        case 2:
          v += b;
          break;
        case 3:
          v += (a + b) / 2;
          break;
        case 4: {
          const int p = a + b - c;
          const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          v += (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
          break;
        }
        default:
          return std::nullopt;
      }
      row[x] = static_cast<uint8_t>(v);
    }
  }
  img.rgb.resize(size_t(img.width) * img.height * 3);
  for (size_t i = 0; i < size_t(img.width) * img.height; ++i) {
    for (int k = 0; k < 3; ++k) {
      img.rgb[i * 3 + k] = px[i * channels + k];
    }
  }
  return img;
}

}  // namespace agentbox::ports_test
