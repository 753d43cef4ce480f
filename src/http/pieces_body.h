#pragma once

#include <boost/beast/core/buffer_traits.hpp>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/optional.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace agentbox::http {

// A Beast body (read side only) for answers of untrusted servers (guests): a body of announced
// length is read into one string reserved once; a body of unannounced length (chunked, or up to
// the end of the connection) into pieces of at most kPiece bytes, joined when it is complete.
// beast::http::string_body grows a string by doubling, so an endless chunked answer made one
// handler copy 32 MiB and fault in 64 MiB of new pages at once, stalling the daemon's I/O thread
// and every other sandbox's call queued behind it; pieces never copy what they hold until the
// answer is complete, and a refused answer never.
struct PiecesBody {
  static constexpr size_t kPiece = 1 << 20;

  struct value_type {
    std::vector<std::string> pieces;

    // Bytes allocated: what the body holds in memory.
    uint64_t capacity() const {
      uint64_t n = 0;
      for (const auto& p : pieces) {
        n += p.capacity();
      }
      return n;
    }
    // The whole body, taking it.
    std::string Take() {
      if (pieces.size() == 1) {
        std::string one = std::move(pieces.front());
        pieces.clear();
        return one;
      }
      size_t total = 0;
      for (const auto& p : pieces) {
        total += p.size();
      }
      std::string out;
      out.reserve(total);
      for (const auto& p : pieces) {
        out += p;
      }
      pieces.clear();
      return out;
    }
  };

  class reader {
   public:
    template <bool isRequest, class Fields>
    explicit reader(boost::beast::http::header<isRequest, Fields>&, value_type& b) : body_(b) {}

    void init(const boost::optional<std::uint64_t>& length, boost::beast::error_code& ec) {
      ec = {};
      if (length) {
        if (*length > std::string().max_size()) {
          ec = boost::beast::http::error::buffer_overflow;
          return;
        }
        // The parser's body limit was checked against the length before init.
        body_.pieces.emplace_back().reserve(static_cast<size_t>(*length));
        announced_ = true;
      }
    }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
      ec = {};
      size_t put = 0;
      for (auto b : boost::beast::buffers_range_ref(buffers)) {
        const char* data = static_cast<const char*>(b.data());
        size_t left = b.size();
        while (left > 0) {
          if (body_.pieces.empty() || (!announced_ && body_.pieces.back().size() >= kPiece)) {
            body_.pieces.emplace_back().reserve(kPiece);
          }
          std::string& last = body_.pieces.back();
          const size_t n = announced_ ? left : std::min(left, kPiece - last.size());
          last.append(data, n);
          data += n;
          left -= n;
          put += n;
        }
      }
      return put;
    }

    void finish(boost::beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
    bool announced_ = false;
  };
};

}  // namespace agentbox::http
