// inotify-backed directory watches (fs/watch) against a real temporary directory.
#include "guest/files/dir_watch.h"

#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/json_util.h"

namespace agentbox::guest {
namespace {

class DirWatchTest : public ::testing::Test {
 protected:
  DirWatchTest() : watches_(io_) {
    char tmpl[] = "/tmp/dirwatch.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~DirWatchTest() override { std::filesystem::remove_all(dir_); }

  // Pulls lines from `source` (running the io loop) until `want` has been seen or 10 s pass.
  std::vector<std::string> Until(const std::shared_ptr<http::QueueSource>& source,
                                 const std::vector<std::string>& want) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    auto done = [&] {
      for (const auto& w : want) {
        if (std::find(seen_.begin(), seen_.end(), w) == seen_.end()) {
          return false;
        }
      }
      return true;
    };
    bool waiting = false;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      if (!waiting) {
        waiting = true;
        source->Next([&](Result<std::string_view> bytes, bool) {
          waiting = false;
          pending_.append(bytes ? *bytes : "");
          size_t nl;
          while ((nl = pending_.find('\n')) != std::string::npos) {
            const Json j = Json::parse(pending_.substr(0, nl));
            pending_.erase(0, nl + 1);
            seen_.push_back(j["event"] == "fs" ? j["type"].get<std::string>() + " " +
                                                     j["name"].get<std::string>()
                                               : j["event"].get<std::string>());
          }
        });
      }
      io_.run_for(std::chrono::milliseconds(10));
      io_.restart();
    }
    return seen_;
  }

  boost::asio::io_context io_;
  DirWatches watches_;
  std::string dir_;
  std::string pending_;
  std::vector<std::string> seen_;
};

TEST_F(DirWatchTest, ReportsCreateWriteRenameChmodRemove) {
  auto src = std::make_shared<http::QueueSource>();
  ASSERT_TRUE(watches_.Start(dir_, false, src));
  std::ofstream(dir_ + "/a") << "x";
  std::rename((dir_ + "/a").c_str(), (dir_ + "/b").c_str());
  ::chmod((dir_ + "/b").c_str(), 0600);
  ::unlink((dir_ + "/b").c_str());
  ::mkdir((dir_ + "/sub").c_str(), 0755);
  std::ofstream(dir_ + "/sub/deep") << "x";
  auto seen = Until(src, {"start", "create a", "write a", "rename a", "create b", "chmod b",
                          "remove b", "create sub"});
  EXPECT_EQ(seen.front(), "start");
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "create sub/deep"), 0);  // not recursive
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "remove b"), 1);
}

TEST_F(DirWatchTest, RecursiveFollowsNewDirectories) {
  ::mkdir((dir_ + "/old").c_str(), 0755);
  auto src = std::make_shared<http::QueueSource>();
  ASSERT_TRUE(watches_.Start(dir_, true, src));
  std::ofstream(dir_ + "/old/f") << "x";
  Until(src, {"create old/f"});  // the new directory's watch is added on its create event
  ::mkdir((dir_ + "/new").c_str(), 0755);
  Until(src, {"create new"});
  std::ofstream(dir_ + "/new/g") << "y";
  auto seen = Until(src, {"create old/f", "create new", "create new/g", "write new/g"});
  EXPECT_NE(std::find(seen.begin(), seen.end(), "write new/g"), seen.end());
  // Made faster than a watch can be added: what is already inside is reported when it is.
  std::filesystem::create_directories(dir_ + "/fast/a/b");
  std::ofstream(dir_ + "/fast/a/b/f") << "z";
  seen = Until(src, {"create fast", "create fast/a", "create fast/a/b", "create fast/a/b/f"});
  EXPECT_NE(std::find(seen.begin(), seen.end(), "create fast/a/b/f"), seen.end());
}

TEST_F(DirWatchTest, StopsWhenTheClientIsGone) {
  auto src = std::make_shared<http::QueueSource>();
  ASSERT_TRUE(watches_.Start(dir_, false, src));
  EXPECT_EQ(watches_.Active(), 1u);
  src.reset();
  std::ofstream(dir_ + "/after") << "x";
  for (int i = 0; i < 100 && watches_.Active() > 0; ++i) {
    io_.run_for(std::chrono::milliseconds(10));
    io_.restart();
  }
  EXPECT_EQ(watches_.Active(), 0u);
}

TEST_F(DirWatchTest, RefusesMissingPathsAndFiles) {
  auto src = std::make_shared<http::QueueSource>();
  auto missing = watches_.Start(dir_ + "/nope", false, src);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  std::ofstream(dir_ + "/file") << "x";
  auto file = watches_.Start(dir_ + "/file", false, src);
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error().code, ErrorCode::kInvalidArgument);
}

TEST(WatchEventType, MapsInotifyMasks) {
  EXPECT_STREQ(WatchEventType(IN_CREATE), "create");
  EXPECT_STREQ(WatchEventType(IN_MOVED_TO | IN_ISDIR), "create");
  EXPECT_STREQ(WatchEventType(IN_MODIFY), "write");
  EXPECT_STREQ(WatchEventType(IN_DELETE), "remove");
  EXPECT_STREQ(WatchEventType(IN_MOVED_FROM), "rename");
  EXPECT_STREQ(WatchEventType(IN_ATTRIB), "chmod");
  EXPECT_EQ(WatchEventType(IN_OPEN), nullptr);
}

}  // namespace
}  // namespace agentbox::guest
