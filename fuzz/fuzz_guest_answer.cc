// A guest's answers to the daemon's buffered calls (http/client.cc): the response parser with
// PiecesBody (http/pieces_body.h), whose bytes a sandbox controls. Fed in chunks of fuzzed
// sizes, with the client's limits; differential: whatever Beast's own string_body makes of the
// same bytes, PiecesBody must make too (same outcome, same body).

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "http/pieces_body.h"

namespace bhttp = boost::beast::http;

namespace {

struct Outcome {
  bool done = false;
  boost::beast::error_code ec;
  std::string body;
};

template <class Body, class Take>
Outcome Parse(const uint8_t* data, size_t size, size_t step, Take take) {
  bhttp::response_parser<Body> p;
  p.header_limit(8 * 1024);
  p.body_limit(1 << 20);
  // As the client reads: the header on its own first (Boost 1.74's eager parser goes on into
  // the body after refusing a Content-Length over the limit, and reserves it), then the body.
  p.eager(false);
  Outcome o;
  std::string pending;  // bytes fed but not yet consumed by the parser
  size_t at = 0;
  while (!p.is_done()) {
    if (at < size) {
      const size_t n = std::min(step, size - at);
      pending.append(reinterpret_cast<const char*>(data) + at, n);
      at += n;
    }
    const size_t used = p.put(boost::asio::buffer(pending), o.ec);
    pending.erase(0, used);
    if (!o.ec && p.is_header_done()) {
      p.eager(true);
    }
    if (o.ec == bhttp::error::need_more) {
      o.ec = {};
      if (at >= size) {
        p.put_eof(o.ec);  // the guest closed the connection
        break;
      }
      continue;
    }
    if (o.ec) {
      break;
    }
    if (used == 0 && at >= size) {
      if (!pending.empty() && p.is_header_done()) {
        continue;  // the header was just done: the body's bytes are still pending
      }
      p.put_eof(o.ec);
      break;
    }
  }
  o.done = p.is_done();
  if (o.done) {
    o.body = take(p.get().body());
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const size_t step = 1 + data[0] % 64;
  ++data;
  --size;
  const Outcome pieces = Parse<agentbox::http::PiecesBody>(
      data, size, step, [](agentbox::http::PiecesBody::value_type& b) { return b.Take(); });
  const Outcome strings =
      Parse<bhttp::string_body>(data, size, step, [](std::string& b) { return std::move(b); });
  if (pieces.done != strings.done || pieces.ec != strings.ec || pieces.body != strings.body) {
    __builtin_trap();
  }
  return 0;
}
