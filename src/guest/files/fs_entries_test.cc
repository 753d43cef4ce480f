#include "guest/files/fs_entries.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

namespace agentbox::guest {
namespace {

class FsEntriesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-fs-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cfg_.base_dir = dir_;
  }
  void TearDown() override { ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0); }
  std::string dir_;
  FileConfig cfg_;
};

TEST_F(FsEntriesTest, StatListMakeDirMove) {
  std::ofstream(dir_ + "/a.txt") << "hello";
  ::chmod((dir_ + "/a.txt").c_str(), 0640);
  auto st = FsStat({{"path", "a.txt"}}, cfg_);
  ASSERT_TRUE(st) << st.error().message;
  const Json& e = (*st)["entry"];
  EXPECT_EQ(e["name"], "a.txt");
  EXPECT_EQ(e["path"], dir_ + "/a.txt");
  EXPECT_EQ(e["type"], "file");
  EXPECT_EQ(e["size"], 5);
  EXPECT_EQ(e["mode"], 0640);
  EXPECT_EQ(e["permissions"], "-rw-r-----");
  EXPECT_GT(e["mtime"].get<double>(), 1e9);
  EXPECT_EQ(FsStat({{"path", "missing"}}, cfg_).error().code, ErrorCode::kNotFound);

  auto mk = FsMakeDir({{"path", dir_ + "/x/y/"}}, cfg_);
  ASSERT_TRUE(mk) << mk.error().message;
  EXPECT_EQ((*mk)["created"], true);
  EXPECT_EQ((*mk)["entry"]["type"], "directory");
  EXPECT_EQ((*FsMakeDir({{"path", dir_ + "/x/y"}}, cfg_))["created"], false);
  EXPECT_EQ(FsMakeDir({{"path", dir_ + "/a.txt"}}, cfg_).error().code, ErrorCode::kConflict);

  auto one = FsList({{"path", dir_}}, cfg_);
  ASSERT_TRUE(one);
  ASSERT_EQ((*one)["entries"].size(), 2u);  // a.txt, x
  auto two = FsList({{"path", dir_}, {"depth", 2}}, cfg_);
  ASSERT_EQ((*two)["entries"].size(), 3u);  // a.txt, x, x/y
  EXPECT_EQ(FsList({{"path", dir_ + "/a.txt"}}, cfg_).error().code, ErrorCode::kInvalidArgument);

  auto mv = FsMove({{"source", "a.txt"}, {"destination", dir_ + "/x/b.txt"}}, cfg_);
  ASSERT_TRUE(mv) << mv.error().message;
  EXPECT_EQ((*mv)["entry"]["path"], dir_ + "/x/b.txt");
  EXPECT_EQ(FsMove({{"source", "a.txt"}, {"destination", "c"}}, cfg_).error().code,
            ErrorCode::kNotFound);
}

}  // namespace
}  // namespace agentbox::guest
