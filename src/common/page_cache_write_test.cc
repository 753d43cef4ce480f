#include "common/page_cache_write.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"

namespace agentbox {
namespace {

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 131 + i / 4096) & 0xff);
  }
  return s;
}

// A SOCK_SEQPACKET socket keeps every write(2) as one packet, so the reader sees the size of
// each write: none may exceed kPageCacheWriteBlock, and together they are the data, in order.
TEST(PageCacheWrite, NoWriteIsLargerThanTheBlock) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd w(sv[0]);
  UniqueFd r(sv[1]);
  const int big = 4 << 20;  // room for a whole packet of any size the writer might send
  ::setsockopt(w.Get(), SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  const std::string data = Pattern((3u << 20) + 12345);
  std::vector<size_t> sizes;
  std::string got;
  std::thread reader([&] {
    std::vector<char> buf(8u << 20);
    for (;;) {
      const ssize_t n = ::recv(r.Get(), buf.data(), buf.size(), 0);
      if (n <= 0) {
        return;
      }
      sizes.push_back(static_cast<size_t>(n));
      got.append(buf.data(), static_cast<size_t>(n));
    }
  });
  auto written = WriteInBlocks(w.Get(), data, "the test socket");
  w.Reset();
  reader.join();
  ASSERT_TRUE(written) << written.error().message;
  EXPECT_EQ(got, data);
  ASSERT_FALSE(sizes.empty());
  for (size_t s : sizes) {
    EXPECT_LE(s, kPageCacheWriteBlock);
  }
  EXPECT_GE(sizes.size(), data.size() / kPageCacheWriteBlock);
}

TEST(PageCacheWrite, AFileGetsEveryByte) {
  char tmpl[] = "/tmp/page-cache-write-XXXXXX";
  UniqueFd fd(::mkstemp(tmpl));
  ASSERT_TRUE(fd);
  ::unlink(tmpl);
  const std::string data = Pattern((1u << 20) + 7);
  ASSERT_TRUE(WriteInBlocks(fd.Get(), data, "the test file"));
  ASSERT_TRUE(WriteInBlocks(fd.Get(), "", "the test file"));  // nothing to write: fine
  std::string back(data.size() + 1, '\0');
  ASSERT_EQ(::pread(fd.Get(), back.data(), back.size(), 0), static_cast<ssize_t>(data.size()));
  back.resize(data.size());
  EXPECT_EQ(back, data);
}

TEST(PageCacheWrite, AFailedWriteNamesWhatItWrote) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]);
  r.Reset();  // no reader: EPIPE (SIGPIPE ignored below)
  UniqueFd w(p[1]);
  auto old = std::signal(SIGPIPE, SIG_IGN);
  auto written = WriteInBlocks(w.Get(), Pattern(100), "the upload of x.bin");
  std::signal(SIGPIPE, old);
  ASSERT_FALSE(written);
  EXPECT_NE(written.error().message.find("the upload of x.bin"), std::string::npos)
      << written.error().message;
}

}  // namespace
}  // namespace agentbox
