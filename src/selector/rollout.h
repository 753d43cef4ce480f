#pragma once

#include <cstdint>
#include <string_view>

namespace agentbox::selector {

// MurmurHash3, x86 32-bit variant (Austin Appleby's reference), over `data` as bytes.
uint32_t Murmur3X86_32(std::string_view data, uint32_t seed = 0);

// Unleash's normalized hash: the bucket, 1..100, of `subject` within rollout group `group_id`:
// murmur3_x86_32("{group_id}:{subject}", 0) % 100 + 1. Stable across processes, builds and
// machines, so a subject stays in its bucket; distinct groups enrol independent subjects.
int NormalizedBucket(std::string_view group_id, std::string_view subject);

// A subject is enrolled in a rollout of `percentage` (0..100) iff percentage > 0 and its bucket
// is at most the percentage: raising the percentage never moves an enrolled subject out.
inline bool Enrolled(int percentage, int bucket) { return percentage > 0 && bucket <= percentage; }

}  // namespace agentbox::selector
