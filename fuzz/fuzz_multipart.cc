// multipart/form-data uploads (POST /api/v1/file/upload on the guest). Input: a Content-Type
// line, then the body. The body is fed in chunks whose sizes come from the first byte, so that a
// delimiter split across chunks is exercised. The parser's documented contract is checked too:
// part data only between a part's begin and end, never an empty view.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "guest/files/multipart.h"

using agentbox::Result;
using agentbox::guest::MultipartParser;
using agentbox::guest::PartHeaders;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const size_t chunk = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t nl = in.find('\n');
  if (nl == std::string_view::npos) {
    return 0;
  }
  auto boundary = MultipartParser::BoundaryFromContentType(in.substr(0, nl));
  if (!boundary) {
    return 0;
  }
  const std::string_view body = in.substr(nl + 1);
  MultipartParser parser(*boundary);
  bool in_part = false;
  parser.on_part_begin = [&](const PartHeaders& h) -> Result<void> {
    if (in_part) {
      __builtin_trap();
    }
    in_part = true;
    (void)h.name.size();
    return {};
  };
  parser.on_part_data = [&](std::string_view d) -> Result<void> {
    if (!in_part || d.empty()) {
      __builtin_trap();
    }
    return {};
  };
  parser.on_part_end = [&]() -> Result<void> {
    if (!in_part) {
      __builtin_trap();
    }
    in_part = false;
    return {};
  };
  for (size_t pos = 0; pos < body.size(); pos += chunk) {
    if (!parser.Feed(body.substr(pos, chunk))) {
      return 0;
    }
  }
  if (parser.Finish() && in_part) {
    __builtin_trap();  // a finished body has closed its last part
  }
  return 0;
}
