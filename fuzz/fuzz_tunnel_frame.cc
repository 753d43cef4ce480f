// Tunnel frames (http/tunnel_mux): each binary WebSocket message from the guest is decoded by the
// daemon, so its bytes are untrusted. A frame that decodes must encode back to the same bytes.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/tunnel_mux.h"

namespace tunnel = agentbox::http::tunnel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view message(reinterpret_cast<const char*>(data), size);
  auto frame = tunnel::DecodeFrame(message);
  if (!frame) {
    return 0;
  }
  if (tunnel::EncodeFrame(frame->type, frame->stream, frame->payload) != message) {
    __builtin_trap();
  }
  return 0;
}
