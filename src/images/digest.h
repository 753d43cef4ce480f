#pragma once

// Content digests of OCI blobs ("sha256:<64 lowercase hex>").

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/error.h"

namespace agentbox::images {

// Incremental SHA-256. Not thread-safe; movable.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  void Update(std::string_view bytes);
  // "sha256:<hex>"; call once.
  std::string Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// "sha256:<hex>" of `bytes`.
std::string Sha256Digest(std::string_view bytes);

// The hex part of a well-formed "sha256:<64 lowercase hex>"; kInvalidArgument naming `what`
// otherwise (other algorithms are refused: every image tool writes sha256).
Result<std::string> DigestHex(std::string_view digest, std::string_view what);

}  // namespace agentbox::images
