#include "common/ring_buffer.h"

#include <algorithm>

namespace agentbox {

void RingBuffer::Append(std::string_view bytes) {
  total_ += bytes.size();
  if (bytes.size() >= capacity_) {
    data_.assign(bytes.substr(bytes.size() - capacity_));
    head_ = 0;
    return;
  }
  data_.append(bytes);
  if (data_.size() - head_ > capacity_) {
    head_ = data_.size() - capacity_;
  }
  // Compact once the dead prefix is as large as the live part, so memory stays <= 2 * capacity
  // and the amortised cost per byte is constant.
  if (head_ > 0 && head_ >= capacity_) {
    data_.erase(0, head_);
    head_ = 0;
  }
}

RingBuffer::Slice RingBuffer::Read(uint64_t from, size_t max) const {
  Slice s;
  const uint64_t start = start_offset();
  s.missed = from < start;
  const uint64_t begin = std::clamp<uint64_t>(from, start, total_);
  const size_t pos = head_ + static_cast<size_t>(begin - start);
  const size_t len = std::min<size_t>(max, data_.size() - pos);
  s.bytes.assign(data_, pos, len);
  s.offset = begin;
  s.next_offset = begin + len;
  return s;
}

}  // namespace agentbox
