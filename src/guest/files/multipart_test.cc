#include "guest/files/multipart.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace agentbox::guest {
namespace {

struct Part {
  PartHeaders headers;
  std::string data;
  bool ended = false;
};

bool operator==(const Part& a, const Part& b) {
  return a.headers.name == b.headers.name && a.headers.filename == b.headers.filename &&
         a.headers.has_filename == b.headers.has_filename &&
         a.headers.content_type == b.headers.content_type && a.data == b.data && a.ended == b.ended;
}

// Parses `body` fed in the chunk sizes `sizes` (cycled); returns the parts or the first error.
struct Outcome {
  std::vector<Part> parts;
  std::optional<Error> error;
  int empty_data_calls = 0;
};

Outcome Parse(const std::string& boundary, const std::string& body,
              const std::function<size_t()>& next_size) {
  Outcome out;
  MultipartParser parser(boundary);
  parser.on_part_begin = [&](const PartHeaders& h) -> Result<void> {
    out.parts.push_back(Part{h, "", false});
    return {};
  };
  parser.on_part_data = [&](std::string_view d) -> Result<void> {
    if (d.empty()) {
      ++out.empty_data_calls;
    }
    out.parts.back().data.append(d);
    return {};
  };
  parser.on_part_end = [&]() -> Result<void> {
    out.parts.back().ended = true;
    return {};
  };
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t n = std::min(next_size(), body.size() - pos);
    if (auto r = parser.Feed(std::string_view(body).substr(pos, n)); !r) {
      out.error = r.error();
      return out;
    }
    pos += n;
  }
  if (auto r = parser.Finish(); !r) {
    out.error = r.error();
  }
  return out;
}

Outcome ParseWhole(const std::string& boundary, const std::string& body) {
  return Parse(boundary, body, [&] { return body.size() + 1; });
}

const std::string kBoundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

// A body with a text field, a file containing boundary look-alikes and CRs, and an empty file.
std::string SampleBody() {
  const std::string d = "--" + kBoundary;
  std::string tricky = "line1\r\nline2\r\n--" + kBoundary.substr(0, 10) + "\r\n-\r\r\n--";
  tricky += std::string("\0\xff binary", 9) + "\r";
  return "preamble to ignore\r\n" + d +
         "\r\n"
         "Content-Disposition: form-data; name=\"path\"\r\n"
         "\r\n"
         "/home/user/out.txt\r\n" +
         d +
         "\r\n"
         "content-disposition: form-data; name=\"file\"; filename=\"my file; v2.txt\"\r\n"
         "Content-Type: application/octet-stream\r\n"
         "\r\n" +
         tricky + "\r\n" + d +
         "\r\n"
         "Content-Disposition: form-data; name=\"empty\"; filename=\"\"\r\n"
         "\r\n"
         "\r\n" +
         d + "--\r\nepilogue " + d + "\r\n";
}

TEST(MultipartTest, ParsesFieldsAndFiles) {
  const Outcome out = ParseWhole(kBoundary, SampleBody());
  ASSERT_FALSE(out.error) << out.error->message;
  ASSERT_EQ(out.parts.size(), 3u);
  EXPECT_EQ(out.parts[0].headers.name, "path");
  EXPECT_FALSE(out.parts[0].headers.has_filename);
  EXPECT_EQ(out.parts[0].data, "/home/user/out.txt");
  EXPECT_EQ(out.parts[1].headers.name, "file");
  EXPECT_EQ(out.parts[1].headers.filename, "my file; v2.txt");
  EXPECT_EQ(out.parts[1].headers.content_type, "application/octet-stream");
  EXPECT_EQ(out.parts[1].data.substr(0, 14), "line1\r\nline2\r\n");
  EXPECT_EQ(out.parts[1].data.back(), '\r');
  EXPECT_EQ(out.parts[2].headers.filename, "");
  EXPECT_TRUE(out.parts[2].headers.has_filename);
  EXPECT_EQ(out.parts[2].data, "");
  for (const Part& p : out.parts) {
    EXPECT_TRUE(p.ended);
  }
  EXPECT_EQ(out.empty_data_calls, 0);
}

TEST(MultipartTest, ChunkingNeverChangesTheResult) {
  const std::string body = SampleBody();
  const Outcome whole = ParseWhole(kBoundary, body);
  ASSERT_FALSE(whole.error);
  const Outcome bytewise = Parse(kBoundary, body, [] { return size_t{1}; });
  ASSERT_FALSE(bytewise.error) << bytewise.error->message;
  EXPECT_EQ(bytewise.parts, whole.parts);
  EXPECT_EQ(bytewise.empty_data_calls, 0);
  std::mt19937 rng(12345);
  for (int round = 0; round < 300; ++round) {
    const size_t max_chunk = 1 + rng() % 80;
    const Outcome chunked = Parse(kBoundary, body, [&] { return 1 + rng() % max_chunk; });
    ASSERT_FALSE(chunked.error) << chunked.error->message;
    ASSERT_EQ(chunked.parts, whole.parts) << "round " << round;
  }
}

TEST(MultipartTest, LargePartStreamsInPieces) {
  const std::string data(1 << 20, 'q');
  const std::string body =
      "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n" + data + "\r\n--b--";
  MultipartParser parser("b");
  size_t calls = 0;
  size_t total = 0;
  size_t largest = 0;
  parser.on_part_data = [&](std::string_view d) -> Result<void> {
    ++calls;
    total += d.size();
    largest = std::max(largest, d.size());
    return {};
  };
  for (size_t pos = 0; pos < body.size(); pos += 4096) {
    ASSERT_TRUE(parser.Feed(std::string_view(body).substr(pos, 4096)));
  }
  ASSERT_TRUE(parser.Finish());
  EXPECT_EQ(total, data.size());
  EXPECT_GT(calls, 200u);
  EXPECT_LE(largest, 4096u + 8);
}

TEST(MultipartTest, OddButValidShapes) {
  // No preamble, a part without headers, transport padding after boundaries, no epilogue CRLF.
  const std::string body =
      "--b  \r\n\r\nraw\r\n--b\t\r\nContent-Disposition: form-data; "
      "name=a; filename*=UTF-8''na%C3%AFve%20x.txt; "
      "filename=\"fallback\"\r\n\r\n\r\n--b--";
  const Outcome out = ParseWhole("b", body);
  ASSERT_FALSE(out.error) << out.error->message;
  ASSERT_EQ(out.parts.size(), 2u);
  EXPECT_EQ(out.parts[0].headers.name, "");
  EXPECT_EQ(out.parts[0].data, "raw");
  EXPECT_EQ(out.parts[1].headers.name, "a");
  EXPECT_EQ(out.parts[1].headers.filename, "na\xC3\xAFve x.txt");
  EXPECT_EQ(out.parts[1].data, "");

  const Outcome quoted = ParseWhole(
      "b",
      "--b\r\nContent-Disposition: form-data; name=\"q\\\"x\"; filename=\"C:\\dir\\f.txt\""
      "\r\n X-Folded: yes\r\n\r\nv\r\n--b--\r\n");
  ASSERT_FALSE(quoted.error) << quoted.error->message;
  EXPECT_EQ(quoted.parts[0].headers.name, "q\"x");
  EXPECT_EQ(quoted.parts[0].headers.filename, "C:\\dir\\f.txt");

  const Outcome no_parts = ParseWhole("b", "--b--");
  EXPECT_FALSE(no_parts.error);
  EXPECT_TRUE(no_parts.parts.empty());
}

TEST(MultipartTest, MalformedBodies) {
  const auto error_of = [](const std::string& body) {
    const Outcome out = ParseWhole("b", body);
    EXPECT_TRUE(out.error) << body;
    return out.error ? out.error->code : ErrorCode::kInternal;
  };
  // Missing closing boundary, truncated in each state.
  EXPECT_EQ(error_of(""), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_of("just a preamble"), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_of("--b\r\nContent-Disposition: form-data; name=x"), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_of("--b\r\n\r\ndata without end"), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_of("--b\r\n\r\ndata\r\n--b"), ErrorCode::kInvalidArgument);
  // Garbage after a boundary, a header line without a colon.
  EXPECT_EQ(error_of("--bX\r\n\r\n\r\n--b--"), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_of("--b\r\nno colon here\r\n\r\nx\r\n--b--"), ErrorCode::kInvalidArgument);
  // Header section over the cap, with and without its terminating blank line.
  const std::string huge = "X-Pad: " + std::string(MultipartParser::kMaxHeaderBytes, 'p');
  EXPECT_EQ(error_of("--b\r\n" + huge), ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_of("--b\r\n" + huge + "\r\n\r\nx\r\n--b--"), ErrorCode::kInvalidArgument);
}

TEST(MultipartTest, HeaderCapHoldsWhenFedByteByByte) {
  const std::string body = "--b\r\nX-Pad: " + std::string(100000, 'p');
  const Outcome out = Parse("b", body, [] { return size_t{1}; });
  ASSERT_TRUE(out.error);
  EXPECT_NE(out.error->message.find("16384"), std::string::npos);
}

TEST(MultipartTest, CallbackErrorsAbortAndStick) {
  MultipartParser parser("b");
  parser.on_part_data = [](std::string_view) -> Result<void> {
    return Fail(ErrorCode::kTooLarge, "upload exceeds the limit");
  };
  auto r = parser.Feed("--b\r\n\r\nsome data\r\n--b--");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
  r = parser.Feed("more");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
  EXPECT_EQ(parser.Finish().error().code, ErrorCode::kTooLarge);

  MultipartParser begin_fails("b");
  begin_fails.on_part_begin = [](const PartHeaders& h) -> Result<void> {
    return Fail(ErrorCode::kValidation, "unexpected field " + h.name);
  };
  EXPECT_EQ(
      begin_fails.Feed("--b\r\nContent-Disposition: form-data; name=zz\r\n\r\n").error().message,
      "unexpected field zz");
}

TEST(MultipartTest, MutatedBodiesNeverCrash) {
  const std::string body = SampleBody();
  std::mt19937 rng(777);
  for (int round = 0; round < 2000; ++round) {
    std::string mutated = body;
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits && !mutated.empty(); ++e) {
      const size_t at = rng() % mutated.size();
      switch (rng() % 3) {
        case 0:
          mutated[at] = static_cast<char>(rng());
          break;
        case 1:
          mutated.erase(at, 1 + rng() % 16);
          break;
        default:
          mutated.insert(at, std::string(1 + rng() % 4, "\r\n-"[rng() % 3]));
      }
    }
    const Outcome whole = ParseWhole(kBoundary, mutated);
    const Outcome chunked = Parse(kBoundary, mutated, [&] { return 1 + rng() % 7; });
    ASSERT_EQ(whole.error.has_value(), chunked.error.has_value()) << "round " << round;
    if (!whole.error) {
      ASSERT_EQ(whole.parts, chunked.parts) << "round " << round;
    }
  }
}

TEST(MultipartTest, BoundaryFromContentType) {
  EXPECT_EQ(*MultipartParser::BoundaryFromContentType("multipart/form-data; boundary=abc"), "abc");
  EXPECT_EQ(*MultipartParser::BoundaryFromContentType(
                "Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a b:c\""),
            "a b:c");
  EXPECT_EQ(*MultipartParser::BoundaryFromContentType("multipart/form-data;boundary=x;foo=bar"),
            "x");
  for (const char* bad : {"application/json", "multipart/form-data", "multipart/mixed; boundary=x",
                          "multipart/form-data; boundary=", "multipart/form-data; boundary=\"x \"",
                          "multipart/form-data; boundary=\"a\x01\"", ""}) {
    auto r = MultipartParser::BoundaryFromContentType(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    }
  }
  EXPECT_FALSE(MultipartParser::BoundaryFromContentType("multipart/form-data; boundary=" +
                                                        std::string(71, 'x')));
  EXPECT_TRUE(MultipartParser::BoundaryFromContentType("multipart/form-data; boundary=" +
                                                       std::string(70, 'x')));
}

}  // namespace
}  // namespace agentbox::guest
