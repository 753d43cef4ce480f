#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace agentbox {

// A byte log that keeps only the newest `capacity` bytes while counting every byte ever
// appended. Offsets are absolute (0 = first byte ever written), so readers can resume with the
// offset they were given and learn whether they missed bytes that were dropped.
// Not thread-safe.
class RingBuffer {
 public:
  explicit RingBuffer(size_t capacity) : capacity_(capacity) {}

  void Append(std::string_view bytes);

  // Absolute offset one past the newest byte.
  uint64_t end_offset() const { return total_; }
  // Absolute offset of the oldest byte still kept.
  uint64_t start_offset() const { return total_ - (data_.size() - head_); }
  // True once any byte has been dropped.
  bool truncated() const { return start_offset() > 0; }
  size_t capacity() const { return capacity_; }
  size_t size() const { return data_.size() - head_; }

  struct Slice {
    std::string bytes;
    uint64_t offset = 0;       // absolute offset of bytes[0]
    uint64_t next_offset = 0;  // where to resume
    bool missed = false;       // bytes between the requested offset and `offset` were dropped
  };
  // Bytes from absolute `from` (clamped to what is kept) up to at most `max` bytes.
  Slice Read(uint64_t from, size_t max = SIZE_MAX) const;

 private:
  size_t capacity_;
  std::string data_;
  size_t head_ = 0;
  uint64_t total_ = 0;
};

}  // namespace agentbox
