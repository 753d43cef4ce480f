#pragma once

// Streaming gzip and zstd for archive streams (internal to the archive library).

#include <memory>

#include "archive/archive.h"

namespace agentbox::archive {

// Compresses what it is given into `sink` (a pass-through for kNone). Not thread-safe.
class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual Result<void> Write(std::string_view bytes) = 0;
  // Flushes the compressor's tail; call once, after the last Write().
  virtual Result<void> Finish() = 0;
};
Result<std::unique_ptr<Encoder>> MakeEncoder(Compression c, const Sink& sink);

// Reads `source`, decompressing gzip or zstd (detected from the magic bytes) and passing
// anything else through unchanged.
Source MakeDecoder(Source source);

}  // namespace agentbox::archive
