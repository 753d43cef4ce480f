#include "archive/codec.h"

#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <string>
#include <vector>

namespace agentbox::archive {

namespace {

constexpr size_t kBlock = 1u << 20;

class PlainEncoder : public Encoder {
 public:
  explicit PlainEncoder(Sink sink) : sink_(std::move(sink)) {}
  Result<void> Write(std::string_view bytes) override { return sink_(bytes); }
  Result<void> Finish() override { return {}; }

 private:
  Sink sink_;
};

class GzipEncoder : public Encoder {
 public:
  explicit GzipEncoder(Sink sink) : sink_(std::move(sink)), out_(kBlock) {}
  ~GzipEncoder() override {
    if (init_) {
      deflateEnd(&z_);
    }
  }
  Result<void> Init() {
    // Level 1: archives move at link speed, and level 6 would cut that by four.
    if (deflateInit2(&z_, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      return Fail(ErrorCode::kInternal, "cannot initialise gzip");
    }
    init_ = true;
    return {};
  }
  Result<void> Write(std::string_view bytes) override { return Run(bytes, Z_NO_FLUSH); }
  Result<void> Finish() override { return Run({}, Z_FINISH); }

 private:
  Result<void> Run(std::string_view in, int flush) {
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      z_.next_out = reinterpret_cast<Bytef*>(out_.data());
      z_.avail_out = static_cast<uInt>(out_.size());
      const int rc = deflate(&z_, flush);
      if (rc == Z_STREAM_ERROR) {
        return Fail(ErrorCode::kInternal, "gzip compression failed");
      }
      const size_t n = out_.size() - z_.avail_out;
      if (n > 0) {
        if (auto w = sink_(std::string_view(out_.data(), n)); !w) {
          return w;
        }
      }
      if (flush == Z_FINISH ? rc == Z_STREAM_END : (z_.avail_in == 0 && z_.avail_out != 0)) {
        return {};
      }
    }
  }

  Sink sink_;
  z_stream z_{};
  bool init_ = false;
  std::vector<char> out_;
};

class ZstdEncoder : public Encoder {
 public:
  explicit ZstdEncoder(Sink sink) : sink_(std::move(sink)), out_(ZSTD_CStreamOutSize()) {
    cctx_ = ZSTD_createCCtx();
    if (cctx_) {
      ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, 1);
    }
  }
  ~ZstdEncoder() override { ZSTD_freeCCtx(cctx_); }
  Result<void> Write(std::string_view bytes) override { return Run(bytes, ZSTD_e_continue); }
  Result<void> Finish() override { return Run({}, ZSTD_e_end); }
  bool ok() const { return cctx_ != nullptr; }

 private:
  Result<void> Run(std::string_view bytes, ZSTD_EndDirective mode) {
    ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
    for (;;) {
      ZSTD_outBuffer out{out_.data(), out_.size(), 0};
      const size_t left = ZSTD_compressStream2(cctx_, &out, &in, mode);
      if (ZSTD_isError(left)) {
        return Fail(ErrorCode::kInternal,
                    std::string("zstd compression failed: ") + ZSTD_getErrorName(left));
      }
      if (out.pos > 0) {
        if (auto w = sink_(std::string_view(out_.data(), out.pos)); !w) {
          return w;
        }
      }
      if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) {
        return {};
      }
    }
  }

  Sink sink_;
  ZSTD_CCtx* cctx_ = nullptr;
  std::vector<char> out_;
};

// Decompresses on demand; detects the format from the first bytes.
class Decoder {
 public:
  explicit Decoder(Source source) : source_(std::move(source)), in_(kBlock) {}
  ~Decoder() {
    if (gz_init_) {
      inflateEnd(&z_);
    }
    ZSTD_freeDCtx(dctx_);
  }

  Result<size_t> Read(char* buf, size_t n) {
    if (!detected_) {
      if (auto d = Detect(); !d) {
        return Fail(d.error());
      }
    }
    switch (kind_) {
      case Compression::kNone:
        if (in_pos_ < in_len_) {
          const size_t k = std::min(n, in_len_ - in_pos_);
          std::memcpy(buf, in_.data() + in_pos_, k);
          in_pos_ += k;
          return k;
        }
        return source_(buf, n);
      case Compression::kGzip:
        return ReadGzip(buf, n);
      case Compression::kZstd:
        return ReadZstd(buf, n);
    }
    return 0;
  }

 private:
  // Reads more compressed input when all was consumed; false at its end.
  Result<bool> Refill() {
    if (in_pos_ < in_len_) {
      return true;
    }
    auto got = source_(in_.data(), in_.size());
    if (!got) {
      return Fail(got.error());
    }
    in_pos_ = 0;
    in_len_ = *got;
    return *got > 0;
  }

  Result<void> Detect() {
    detected_ = true;
    while (in_len_ < 4) {
      auto got = source_(in_.data() + in_len_, 4 - in_len_);
      if (!got) {
        return Fail(got.error());
      }
      if (*got == 0) {
        break;
      }
      in_len_ += *got;
    }
    const auto* b = reinterpret_cast<const unsigned char*>(in_.data());
    if (in_len_ >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
      kind_ = Compression::kGzip;
      if (inflateInit2(&z_, 15 + 16) != Z_OK) {
        return Fail(ErrorCode::kInternal, "cannot initialise gzip");
      }
      gz_init_ = true;
    } else if (in_len_ >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
      kind_ = Compression::kZstd;
      dctx_ = ZSTD_createDCtx();
      if (!dctx_) {
        return Fail(ErrorCode::kInternal, "cannot initialise zstd");
      }
    }
    return {};
  }

  Result<size_t> ReadGzip(char* buf, size_t n) {
    for (;;) {
      if (gz_end_) {
        return 0;
      }
      auto more = Refill();
      if (!more) {
        return Fail(more.error());
      }
      if (!*more) {
        return Fail(ErrorCode::kInvalidArgument, "the gzip stream ends early");
      }
      z_.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
      z_.avail_in = static_cast<uInt>(in_len_ - in_pos_);
      z_.next_out = reinterpret_cast<Bytef*>(buf);
      z_.avail_out = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
      const int rc = inflate(&z_, Z_NO_FLUSH);
      in_pos_ = in_len_ - z_.avail_in;
      const size_t produced = std::min<size_t>(n, 1u << 30) - z_.avail_out;
      if (rc == Z_STREAM_END) {
        // Concatenated members are one stream (gzip -c a b).
        auto again = Refill();
        if (!again) {
          return Fail(again.error());
        }
        if (*again) {
          inflateReset(&z_);
        } else {
          gz_end_ = true;
        }
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return Fail(ErrorCode::kInvalidArgument,
                    std::string("corrupt gzip stream: ") + (z_.msg ? z_.msg : "inflate failed"));
      }
      if (produced > 0) {
        return produced;
      }
    }
  }

  Result<size_t> ReadZstd(char* buf, size_t n) {
    for (;;) {
      if (zstd_end_ && in_pos_ >= in_len_) {
        auto more = Refill();
        if (!more) {
          return Fail(more.error());
        }
        if (!*more) {
          return 0;
        }
      }
      auto more = Refill();
      if (!more) {
        return Fail(more.error());
      }
      if (!*more) {
        return Fail(ErrorCode::kInvalidArgument, "the zstd stream ends early");
      }
      ZSTD_inBuffer in{in_.data() + in_pos_, in_len_ - in_pos_, 0};
      ZSTD_outBuffer out{buf, n, 0};
      const size_t rc = ZSTD_decompressStream(dctx_, &out, &in);
      in_pos_ += in.pos;
      if (ZSTD_isError(rc)) {
        return Fail(ErrorCode::kInvalidArgument,
                    std::string("corrupt zstd stream: ") + ZSTD_getErrorName(rc));
      }
      zstd_end_ = rc == 0;
      if (out.pos > 0) {
        return out.pos;
      }
    }
  }

  Source source_;
  std::vector<char> in_;
  size_t in_pos_ = 0;
  size_t in_len_ = 0;
  bool detected_ = false;
  Compression kind_ = Compression::kNone;
  z_stream z_{};
  bool gz_init_ = false;
  bool gz_end_ = false;
  ZSTD_DCtx* dctx_ = nullptr;
  bool zstd_end_ = false;
};

}  // namespace

Result<std::unique_ptr<Encoder>> MakeEncoder(Compression c, const Sink& sink) {
  switch (c) {
    case Compression::kNone:
      return std::make_unique<PlainEncoder>(sink);
    case Compression::kGzip: {
      auto e = std::make_unique<GzipEncoder>(sink);
      if (auto i = e->Init(); !i) {
        return Fail(i.error());
      }
      return e;
    }
    case Compression::kZstd: {
      auto e = std::make_unique<ZstdEncoder>(sink);
      if (!e->ok()) {
        return Fail(ErrorCode::kInternal, "cannot initialise zstd");
      }
      return e;
    }
  }
  return Fail(ErrorCode::kInternal, "unknown compression");
}

Source MakeDecoder(Source source) {
  auto d = std::make_shared<Decoder>(std::move(source));
  return [d](char* buf, size_t n) { return d->Read(buf, n); };
}

}  // namespace agentbox::archive
