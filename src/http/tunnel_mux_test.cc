#include "http/tunnel_mux.h"

#include <gtest/gtest.h>

namespace agentbox::http::tunnel {
namespace {

TEST(TunnelFrame, RoundTripsEveryType) {
  const std::string bytes("a\0b\xff", 4);
  for (auto type : {FrameType::kOpen, FrameType::kData, FrameType::kEof, FrameType::kReset}) {
    const std::string msg = EncodeFrame(type, 0x01020304u, bytes);
    ASSERT_EQ(msg.size(), 5 + bytes.size());
    EXPECT_EQ(msg.substr(1, 4), std::string("\x01\x02\x03\x04", 4));  // big-endian id
    auto f = DecodeFrame(msg);
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_EQ(f->type, type);
    EXPECT_EQ(f->stream, 0x01020304u);
    EXPECT_EQ(f->payload, bytes);
  }
  auto w = DecodeFrame(EncodeFrame(FrameType::kWindow, 7, std::string("\0\0\1\0", 4)));
  ASSERT_TRUE(w);
  EXPECT_EQ(w->stream, 7u);
}

TEST(TunnelFrame, RefusesWhatIsNotAFrame) {
  EXPECT_FALSE(DecodeFrame(""));
  EXPECT_FALSE(DecodeFrame(std::string("\x02\0\0\0", 4)));      // too short for the id
  EXPECT_FALSE(DecodeFrame(std::string("\x09\0\0\0\1", 5)));    // unknown type
  EXPECT_FALSE(DecodeFrame(std::string("\x05\0\0\0\1\1", 6)));  // window without 4 bytes
  EXPECT_FALSE(DecodeFrame(std::string("\0\0\0\0\1", 5)));      // type 0
}

TEST(TunnelFrame, CannedResponseIsACompleteHttpResponse) {
  const std::string r = CannedResponse(502, "the tunnel broke");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 502 Bad Gateway\r\n")) << r;
  EXPECT_NE(r.find("Connection: close\r\n"), std::string::npos);
  const size_t body = r.find("\r\n\r\n") + 4;
  EXPECT_NE(r.find("Content-Length: " + std::to_string(r.size() - body) + "\r\n"),
            std::string::npos)
      << r;
  EXPECT_NE(r.find("\"success\":false"), std::string::npos) << r;
  EXPECT_NE(r.find("the tunnel broke"), std::string::npos) << r;
}

}  // namespace
}  // namespace agentbox::http::tunnel
