#include "guest/files/file_ops.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace agentbox::guest {
namespace {

namespace fs = std::filesystem;
using V = std::vector<std::string>;

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& parent = "") {
    std::string base = parent;
    if (base.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp";
    }
    std::string templ = base + "/agentbox_files_test.XXXXXX";
    if (::mkdtemp(templ.data()) != nullptr) {
      path_ = templ;
    }
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> DirNames(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

class FileOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    cfg_.base_dir = dir_.path();
  }
  std::string P(const std::string& rel) const { return dir_ / rel; }

  TempDir dir_;
  FileConfig cfg_;
};

// ---------------------------------------------------------------------------------------------
// ResolvePath

TEST_F(FileOpsTest, ResolvePathNormalisesAndJoinsRelative) {
  EXPECT_EQ(*ResolvePath("/a//b/./c/../d/", cfg_), "/a/b/d");
  EXPECT_EQ(*ResolvePath("/../..", cfg_), "/");
  EXPECT_EQ(*ResolvePath("x/y", cfg_), dir_.path() + "/x/y");
  EXPECT_EQ(ResolvePath("", cfg_).error().code, ErrorCode::kValidation);
  EXPECT_EQ(ResolvePath(std::string("a\0b", 3), cfg_).error().code, ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// read

TEST_F(FileOpsTest, ReadWholeFile) {
  WriteFile(P("f.txt"), "one\ntwo\n");
  auto r = FileRead({{"file", P("f.txt")}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["content"], "one\ntwo\n");
  EXPECT_EQ((*r)["file"], P("f.txt"));
  EXPECT_EQ((*r)["truncated"], false);
}

TEST_F(FileOpsTest, ReadRelativePathUsesBaseDir) {
  WriteFile(P("sub/f.txt"), "x");
  auto r = FileRead({{"file", "sub/f.txt"}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["content"], "x");
  EXPECT_EQ((*r)["file"], P("sub/f.txt"));
}

TEST_F(FileOpsTest, ReadLineRangesLikePythonSlices) {
  // As ai-manus: '\n'.join(content.splitlines()[start:end]), line endings dropped.
  WriteFile(P("f"), "a\nb\r\nc\nd\n");
  const auto read = [&](Json req) {
    req["file"] = P("f");
    auto r = FileRead(req, cfg_);
    EXPECT_TRUE(r) << r.error().message;
    return r ? (*r)["content"].get<std::string>() : "";
  };
  EXPECT_EQ(read({{"start_line", 1}, {"end_line", 3}}), "b\nc");
  EXPECT_EQ(read({{"start_line", 2}}), "c\nd");
  EXPECT_EQ(read({{"end_line", 1}}), "a");
  EXPECT_EQ(read({{"start_line", -2}}), "c\nd");
  EXPECT_EQ(read({{"end_line", -1}}), "a\nb\nc");
  EXPECT_EQ(read({{"start_line", -3}, {"end_line", -1}}), "b\nc");
  EXPECT_EQ(read({{"start_line", -100}, {"end_line", 1}}), "a");
  EXPECT_EQ(read({{"start_line", 10}}), "");
  EXPECT_EQ(read({{"start_line", 3}, {"end_line", 1}}), "");
  EXPECT_EQ(read({{"start_line", 1}, {"end_line", -100}}), "");
  EXPECT_EQ(read({{"start_line", 0}, {"end_line", 100}}), "a\nb\nc\nd");
  // Without a range the file is read as it is, endings and all.
  EXPECT_EQ(read(Json::object()), "a\nb\r\nc\nd\n");
}

TEST_F(FileOpsTest, ReadLineRangeKeepsEmptyLinesAndJoinsAcrossChunks) {
  WriteFile(P("e"), "x\n\n\ny\n");
  auto r = FileRead({{"file", P("e")}, {"start_line", 0}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["content"], "x\n\n\ny");
  r = FileRead({{"file", P("e")}, {"start_line", 1}, {"end_line", 3}}, cfg_);
  EXPECT_EQ((*r)["content"], "\n");
  // Lines longer than one read chunk, with a CRLF ending split between chunks.
  const std::string long_line(70000, 'q');
  WriteFile(P("l"), long_line + "\r\n" + long_line + "\r\nend");
  r = FileRead({{"file", P("l")}, {"start_line", 0}, {"max_length", 1000000}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["content"], long_line + "\n" + long_line + "\nend");
  EXPECT_EQ((*r)["truncated"], false);
}

TEST_F(FileOpsTest, ReadLastLineWithoutNewline) {
  WriteFile(P("f"), "a\nb");
  auto r = FileRead({{"file", P("f")}, {"start_line", -1}}, cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["content"], "b");
}

TEST_F(FileOpsTest, ReadTruncatesWithoutSplittingUtf8) {
  WriteFile(P("f"), "h\xC3\xA9llo");  // "héllo": é is two bytes at offsets 1-2
  auto r = FileRead({{"file", P("f")}, {"max_length", 2}}, cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["content"], "h");
  EXPECT_EQ((*r)["truncated"], true);
  r = FileRead({{"file", P("f")}, {"max_length", 3}}, cfg_);
  EXPECT_EQ((*r)["content"], "h\xC3\xA9");
  EXPECT_EQ((*r)["truncated"], true);
  r = FileRead({{"file", P("f")}, {"max_length", 6}}, cfg_);
  EXPECT_EQ((*r)["content"], "h\xC3\xA9llo");
  EXPECT_EQ((*r)["truncated"], false);
  r = FileRead({{"file", P("f")}, {"max_length", 0}}, cfg_);
  EXPECT_EQ((*r)["content"], "");
  EXPECT_EQ((*r)["truncated"], true);
}

TEST_F(FileOpsTest, ReadDefaultMaxLengthIs10000) {
  WriteFile(P("f"), std::string(20000, 'x'));
  auto r = FileRead({{"file", P("f")}}, cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["content"].get<std::string>().size(), 10000u);
  EXPECT_EQ((*r)["truncated"], true);
}

TEST_F(FileOpsTest, ReadStreamsFilesLargerThanTheLoadLimit) {
  cfg_.max_file_bytes = 1024;
  std::string content;
  for (int i = 0; i < 1000; ++i) {
    content += "line " + std::to_string(i) + "\n";
  }
  WriteFile(P("big"), content);
  auto r = FileRead({{"file", P("big")}, {"start_line", -2}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["content"], "line 998\nline 999");
}

TEST_F(FileOpsTest, ReadErrors) {
  fs::create_directory(P("d"));
  auto r = FileRead({{"file", P("d")}}, cfg_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("is a directory"), std::string::npos);

  r = FileRead({{"file", P("missing")}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);

  ASSERT_EQ(::mkfifo(P("fifo").c_str(), 0644), 0);
  r = FileRead({{"file", P("fifo")}}, cfg_);  // must not block waiting for a writer
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);

  r = FileRead(Json::object(), cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kValidation);
  EXPECT_EQ(r.error().field, "file");

  r = FileRead({{"file", ""}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kValidation);
  EXPECT_EQ(r.error().field, "file");

  WriteFile(P("f"), "x");
  r = FileRead({{"file", P("f")}, {"start_line", "1"}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kValidation);
  EXPECT_EQ(r.error().field, "start_line");

  r = FileRead({{"file", P("f")}, {"max_length", -1}}, cfg_);
  EXPECT_EQ(r.error().field, "max_length");

  r = FileRead({{"file", std::string("a\0b", 3)}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(FileOpsTest, SudoIsForbiddenUnlessTheUserMayEscalate) {
  WriteFile(P("f"), "x");
  const Json req = {{"file", P("f")}, {"sudo", true}};
  auto r = FileRead(req, cfg_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  EXPECT_EQ(r.error().message.rfind("sudo is not available: ", 0), 0u);
  EXPECT_EQ(FileWrite({{"file", P("f")}, {"content", "y"}, {"sudo", true}}, cfg_).error().code,
            ErrorCode::kForbidden);
  EXPECT_EQ(ReadFile(P("f")), "x");
  cfg_.can_escalate = true;
  EXPECT_TRUE(FileRead(req, cfg_));
  EXPECT_EQ(FileRead({{"file", P("f")}, {"sudo", "yes"}}, cfg_).error().field, "sudo");
}

// ---------------------------------------------------------------------------------------------
// write

TEST_F(FileOpsTest, WriteCreatesParentsAtomically) {
  auto r = FileWrite({{"file", P("a/b/c.txt")}, {"content", "hello"}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["file"], P("a/b/c.txt"));
  EXPECT_EQ((*r)["bytes_written"], 5);
  EXPECT_EQ(ReadFile(P("a/b/c.txt")), "hello");
  EXPECT_EQ(ModeOf(P("a/b/c.txt")), 0644u);
  EXPECT_EQ(DirNames(P("a/b")), std::vector<std::string>{"c.txt"});  // no temp file left
}

TEST_F(FileOpsTest, WriteNewlineFlagsCountInBytesWritten) {
  auto r = FileWrite(
      {{"file", P("f")}, {"content", "abc"}, {"leading_newline", true}, {"trailing_newline", true}},
      cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["bytes_written"], 5);
  EXPECT_EQ(ReadFile(P("f")), "\nabc\n");
}

TEST_F(FileOpsTest, WriteReplacesAndAppends) {
  WriteFile(P("f"), "old content");
  ASSERT_TRUE(FileWrite({{"file", P("f")}, {"content", "new"}}, cfg_));
  EXPECT_EQ(ReadFile(P("f")), "new");
  auto r = FileWrite({{"file", P("f")}, {"content", "er"}, {"append", true}}, cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["bytes_written"], 2);
  EXPECT_EQ(ReadFile(P("f")), "newer");
  r = FileWrite(
      {{"file", P("g/h")}, {"content", "x"}, {"append", true}, {"trailing_newline", true}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(ReadFile(P("g/h")), "x\n");
  EXPECT_EQ(ModeOf(P("g/h")), 0644u);
  ASSERT_TRUE(FileWrite({{"file", P("empty")}, {"content", ""}}, cfg_));
  EXPECT_EQ(ReadFile(P("empty")), "");
}

TEST_F(FileOpsTest, WritePreservesTheExistingMode) {
  WriteFile(P("f"), "x");
  ASSERT_EQ(::chmod(P("f").c_str(), 0600), 0);
  ASSERT_TRUE(FileWrite({{"file", P("f")}, {"content", "y"}}, cfg_));
  EXPECT_EQ(ModeOf(P("f")), 0600u);
}

TEST_F(FileOpsTest, WriteIsAtomicForReaders) {
  const std::string a(256 * 1024, 'a');
  const std::string b(256 * 1024, 'b');
  WriteFile(P("f"), a);
  // A reader that opened the old file keeps seeing it whole.
  std::ifstream old_reader(P("f"), std::ios::binary);
  ASSERT_TRUE(FileWrite({{"file", P("f")}, {"content", b}}, cfg_));
  std::stringstream ss;
  ss << old_reader.rdbuf();
  EXPECT_EQ(ss.str(), a);

  // Concurrent readers only ever see one version or the other, never a mix or a short file.
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!stop.load()) {
      const std::string got = ReadFile(P("f"));
      if (got != a && got != b) {
        ++bad;
      }
    }
  });
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(FileWrite({{"file", P("f")}, {"content", i % 2 ? a : b}}, cfg_));
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(DirNames(dir_.path()), std::vector<std::string>{"f"});
}

TEST_F(FileOpsTest, WriteThroughSymlinkUpdatesTheTarget) {
  WriteFile(P("real"), "old");
  fs::create_symlink("real", P("link"));
  ASSERT_TRUE(FileWrite({{"file", P("link")}, {"content", "new"}}, cfg_));
  EXPECT_TRUE(fs::is_symlink(P("link")));
  EXPECT_EQ(ReadFile(P("real")), "new");
  fs::create_symlink("sub/created", P("dangling"));
  ASSERT_TRUE(FileWrite({{"file", P("dangling")}, {"content", "x"}}, cfg_));
  EXPECT_TRUE(fs::is_symlink(P("dangling")));
  EXPECT_EQ(ReadFile(P("sub/created")), "x");
}

TEST_F(FileOpsTest, WriteOntoAMountPointRewritesInPlace) {
  // Docker bind-mounts /etc/hosts: rename(2) onto it fails with EBUSY. Reproduce that in a
  // private mount namespace of a child process so the host's mounts are never touched.
  WriteFile(P("src"), "old");
  WriteFile(P("target"), "orig");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount(P("src").c_str(), P("target").c_str(), nullptr, MS_BIND, nullptr) != 0) {
      ::_exit(77);
    }
    auto r = FileWrite({{"file", P("target")}, {"content", "new"}}, cfg_);
    ::_exit(r ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    GTEST_SKIP() << "needs CAP_SYS_ADMIN to bind-mount in a new mount namespace";
  }
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(ReadFile(P("src")), "new");
  EXPECT_EQ(ReadFile(P("target")), "orig");
  EXPECT_EQ(DirNames(dir_.path()), (V{"src", "target"}));
}

TEST_F(FileOpsTest, WriteErrors) {
  fs::create_directory(P("d"));
  auto r = FileWrite({{"file", P("d")}, {"content", "x"}}, cfg_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("is a directory"), std::string::npos);
  r = FileWrite({{"file", P("d")}, {"content", "x"}, {"append", true}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);

  WriteFile(P("file"), "x");
  r = FileWrite({{"file", P("file/child")}, {"content", "x"}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("not a directory"), std::string::npos);

  cfg_.max_file_bytes = 4;
  r = FileWrite({{"file", P("big")}, {"content", "12345"}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
  r = FileWrite({{"file", P("big")}, {"content", "1234"}, {"trailing_newline", true}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
  EXPECT_FALSE(fs::exists(P("big")));

  r = FileWrite({{"file", P("x")}}, cfg_);
  EXPECT_EQ(r.error().field, "content");
  r = FileWrite({{"file", P("x")}, {"content", 3}}, cfg_);
  EXPECT_EQ(r.error().field, "content");
  r = FileWrite({{"file", P("x")}, {"content", "c"}, {"append", "no"}}, cfg_);
  EXPECT_EQ(r.error().field, "append");
}

// ---------------------------------------------------------------------------------------------
// exists

TEST_F(FileOpsTest, ExistsReportsTypes) {
  WriteFile(P("f"), "x");
  fs::create_directory(P("d"));
  fs::create_symlink("nowhere", P("l"));
  ASSERT_EQ(::mkfifo(P("p").c_str(), 0644), 0);
  const auto type = [&](const std::string& name) {
    auto r = FileExists({{"path", P(name)}}, cfg_);
    EXPECT_TRUE(r);
    return *r;
  };
  EXPECT_EQ(type("f")["type"], "file");
  EXPECT_EQ(type("d")["type"], "directory");
  EXPECT_EQ(type("l")["type"], "symlink");
  EXPECT_EQ(type("p")["type"], "other");
  EXPECT_EQ(type("f")["exists"], true);
  const Json missing = type("missing");
  EXPECT_EQ(missing["exists"], false);
  EXPECT_FALSE(missing.contains("type"));
  EXPECT_EQ(missing["path"], P("missing"));
  EXPECT_EQ(type("f/under-a-file")["exists"], false);
  EXPECT_EQ(FileExists(Json::object(), cfg_).error().field, "path");
}

// ---------------------------------------------------------------------------------------------
// delete

TEST_F(FileOpsTest, DeleteFileAndEmptyDirectory) {
  WriteFile(P("f"), "x");
  fs::create_directory(P("d"));
  auto r = FileDelete({{"path", P("f")}}, cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["deleted"], true);
  EXPECT_EQ((*r)["path"], P("f"));
  EXPECT_FALSE(fs::exists(P("f")));
  ASSERT_TRUE(FileDelete({{"path", P("d")}}, cfg_));
  EXPECT_FALSE(fs::exists(P("d")));
}

TEST_F(FileOpsTest, DeleteNonEmptyDirectoryNeedsRecursive) {
  WriteFile(P("d/a/b/c"), "x");
  WriteFile(P("d/top"), "y");
  auto r = FileDelete({{"path", P("d")}}, cfg_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("directory not empty; pass recursive:true"), std::string::npos);
  EXPECT_TRUE(fs::exists(P("d/a/b/c")));
  ASSERT_TRUE(FileDelete({{"path", P("d")}, {"recursive", true}}, cfg_));
  EXPECT_FALSE(fs::exists(P("d")));
}

TEST_F(FileOpsTest, DeleteNeverFollowsSymlinks) {
  WriteFile(P("outside/keep"), "precious");
  WriteFile(P("d/file"), "x");
  fs::create_directory_symlink(P("outside"), P("d/link_to_outside"));
  fs::create_directory_symlink(P("outside"), P("toplink"));
  // Deleting a link to a directory removes the link only, even with recursive.
  ASSERT_TRUE(FileDelete({{"path", P("toplink")}, {"recursive", true}}, cfg_));
  EXPECT_FALSE(fs::exists(fs::symlink_status(P("toplink"))));
  ASSERT_TRUE(FileDelete({{"path", P("d")}, {"recursive", true}}, cfg_));
  EXPECT_FALSE(fs::exists(P("d")));
  EXPECT_EQ(ReadFile(P("outside/keep")), "precious");
}

TEST_F(FileOpsTest, DeleteDeepTree) {
  std::string rel = "deep";
  for (int i = 0; i < 300; ++i) {
    rel += "/n";
  }
  WriteFile(P(rel + "/leaf"), "x");
  for (int i = 0; i < 50; ++i) {
    WriteFile(P("deep/wide/" + std::to_string(i) + "/f"), "x");
  }
  ASSERT_TRUE(FileDelete({{"path", P("deep")}, {"recursive", true}}, cfg_));
  EXPECT_FALSE(fs::exists(P("deep")));
}

TEST_F(FileOpsTest, DeleteErrors) {
  auto r = FileDelete({{"path", P("missing")}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  r = FileDelete({{"path", "/"}, {"recursive", true}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  r = FileDelete({{"path", "/tmp/../"}, {"recursive", true}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  r = FileDelete({{"path", P("x")}, {"recursive", 1}}, cfg_);
  EXPECT_EQ(r.error().field, "recursive");
}

// ---------------------------------------------------------------------------------------------
// list

TEST_F(FileOpsTest, ListDirectory) {
  WriteFile(P("b.txt"), "12345");
  ASSERT_EQ(::chmod(P("b.txt").c_str(), 0640), 0);
  WriteFile(P("a/inner"), "x");
  fs::create_symlink("b.txt", P("c"));
  auto r = FileList({{"path", dir_.path()}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["path"], dir_.path());
  EXPECT_EQ((*r)["truncated"], false);
  const Json& e = (*r)["entries"];
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0]["name"], "a");
  EXPECT_EQ(e[0]["type"], "directory");
  EXPECT_EQ(e[1]["name"], "b.txt");
  EXPECT_EQ(e[1]["type"], "file");
  EXPECT_EQ(e[1]["size"], 5);
  EXPECT_EQ(e[1]["mode"], "0640");
  EXPECT_TRUE(e[1]["mtime"].is_number_integer());
  EXPECT_GT(e[1]["mtime"].get<int64_t>(), 1600000000);
  EXPECT_EQ(e[2]["name"], "c");
  EXPECT_EQ(e[2]["type"], "symlink");
}

TEST_F(FileOpsTest, ListRecursiveDoesNotFollowSymlinkedDirectories) {
  WriteFile(P("a/b/c"), "x");
  WriteFile(P("a/d"), "x");
  WriteFile(P("z"), "x");
  fs::create_directory_symlink(P("a"), P("a/b/loop"));
  auto r = FileList({{"path", dir_.path()}, {"recursive", true}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  std::vector<std::string> names;
  for (const auto& e : (*r)["entries"]) {
    names.push_back(e["name"]);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"a", "a/b", "a/b/c", "a/b/loop", "a/d", "z"}));
}

TEST_F(FileOpsTest, ListTruncatesAtMaxEntries) {
  for (int i = 0; i < 10; ++i) {
    WriteFile(P("d/" + std::to_string(i)), "x");
  }
  cfg_.max_entries = 4;
  auto r = FileList({{"path", P("d")}}, cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["entries"].size(), 4u);
  EXPECT_EQ((*r)["truncated"], true);
}

TEST_F(FileOpsTest, ListErrors) {
  WriteFile(P("f"), "x");
  EXPECT_EQ(FileList({{"path", P("f")}}, cfg_).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(FileList({{"path", P("missing")}}, cfg_).error().code, ErrorCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// replace

TEST_F(FileOpsTest, ReplaceAllOccurrencesLiterally) {
  WriteFile(P("f"), "a.b a.b axb a.b");
  ASSERT_EQ(::chmod(P("f").c_str(), 0700), 0);
  auto r = FileReplace({{"file", P("f")}, {"old_str", "a.b"}, {"new_str", "[$1]"}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["replaced_count"], 3);
  EXPECT_EQ((*r)["file"], P("f"));
  EXPECT_EQ(ReadFile(P("f")), "[$1] [$1] axb [$1]");
  EXPECT_EQ(ModeOf(P("f")), 0700u);
  EXPECT_EQ(DirNames(dir_.path()), std::vector<std::string>{"f"});

  r = FileReplace({{"file", P("f")}, {"old_str", "absent"}, {"new_str", ""}}, cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["replaced_count"], 0);
  r = FileReplace({{"file", P("f")}, {"old_str", "[$1] "}, {"new_str", ""}}, cfg_);
  EXPECT_EQ((*r)["replaced_count"], 2);
  EXPECT_EQ(ReadFile(P("f")), "axb [$1]");
}

TEST_F(FileOpsTest, ReplaceErrors) {
  WriteFile(P("f"), "abc");
  auto r = FileReplace({{"file", P("f")}, {"old_str", ""}, {"new_str", "x"}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kValidation);
  EXPECT_EQ(r.error().field, "old_str");
  r = FileReplace({{"file", P("f")}, {"old_str", "a"}}, cfg_);
  EXPECT_EQ(r.error().field, "new_str");
  r = FileReplace({{"file", P("missing")}, {"old_str", "a"}, {"new_str", "b"}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  fs::create_directory(P("d"));
  r = FileReplace({{"file", P("d")}, {"old_str", "a"}, {"new_str", "b"}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  cfg_.max_file_bytes = 2;
  r = FileReplace({{"file", P("f")}, {"old_str", "a"}, {"new_str", "b"}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
  cfg_.max_file_bytes = 5;
  r = FileReplace({{"file", P("f")}, {"old_str", "a"}, {"new_str", "xyzxyz"}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
  EXPECT_EQ(ReadFile(P("f")), "abc");
}

// ---------------------------------------------------------------------------------------------
// search

TEST_F(FileOpsTest, SearchReturnsMatchingLinesAndNumbers) {
  WriteFile(P("f"), "alpha\r\nbeta\ngamma 42\n\ndelta 7");
  auto r = FileSearch({{"file", P("f")}, {"regex", "\\d+|^al"}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["file"], P("f"));
  EXPECT_EQ((*r)["matches"], (std::vector<std::string>{"alpha", "gamma 42", "delta 7"}));
  EXPECT_EQ((*r)["line_numbers"], (std::vector<int>{0, 2, 4}));
  r = FileSearch({{"file", P("f")}, {"regex", "^$"}}, cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["line_numbers"], (std::vector<int>{3}));
}

TEST_F(FileOpsTest, SearchRejectsAnInvalidRegex) {
  WriteFile(P("f"), "x\n");
  auto r = FileSearch({{"file", P("f")}, {"regex", "(unclosed"}}, cfg_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message.rfind("invalid regex: ", 0), 0u);
  r = FileSearch({{"file", P("f")}, {"regex", std::string(9000, 'a')}}, cfg_);
  EXPECT_EQ(r.error().field, "regex");
  r = FileSearch({{"file", P("f")}, {"regex", ""}}, cfg_);
  EXPECT_EQ(r.error().field, "regex");
  r = FileSearch({{"file", P("f")}, {"regex", "a{99999}"}}, cfg_);  // over the NFA state limit
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  r = FileSearch({{"file", dir_.path()}, {"regex", "x"}}, cfg_);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
}

TEST_F(FileOpsTest, SearchCutsOffCatastrophicBacktracking) {
  WriteFile(P("f"), "ok\n" + std::string(40, 'a') + "!\n");
  cfg_.search_timeout_ms = 200;
  const auto t0 = std::chrono::steady_clock::now();
  auto r = FileSearch({{"file", P("f")}, {"regex", "^(a+)+$"}}, cfg_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("time limit"), std::string::npos) << r.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST_F(FileOpsTest, SearchSurvivesRecursionOnLongLines) {
  // libstdc++ recurses once per character here; without the guard this overflows the stack.
  WriteFile(P("f"), std::string(400000, 'a') + "\n");
  auto r = FileSearch({{"file", P("f")}, {"regex", "(a|b)*c"}}, cfg_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("stack"), std::string::npos) << r.error().message;
  // A plain pattern on the same line is fine.
  r = FileSearch({{"file", P("f")}, {"regex", "aaa"}}, cfg_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)["line_numbers"], (std::vector<int>{0}));
}

TEST_F(FileOpsTest, SearchNeverCrashesOnHostilePatterns) {
  WriteFile(P("f"), "short line\n" + std::string(100000, 'a') + "\n" + std::string(5000, 'x') +
                        std::string(5000, 'y') + "\n");
  cfg_.search_timeout_ms = 300;
  const std::string nested = std::string(4000, '(') + "a" + std::string(4000, ')');
  for (const std::string& pattern :
       {std::string("(){30000}"), std::string("(?:a?){20000}"), nested, std::string("(a*)*b"),
        std::string("(a*)\\1$"), std::string("(?:\\b|a)*$"), std::string("(x+x+)+y"),
        std::string("[[:alpha:]]*[[:digit:]]"), std::string("(?=a)*"), std::string("(|a)*$")}) {
    auto r = FileSearch({{"file", P("f")}, {"regex", pattern}}, cfg_);
    if (!r) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << pattern.substr(0, 40);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// find

class FindTest : public FileOpsTest {
 protected:
  void SetUp() override {
    FileOpsTest::SetUp();
    for (const char* f :
         {"a.txt", "b.py", "sub/c.txt", "sub/deep/d.txt", "sub/.f.txt", ".hidden/e.txt"}) {
      WriteFile(P(f), "x");
    }
    fs::create_directory_symlink(P("sub"), P("link"));
    fs::create_directory_symlink(".", P("sub/loop"));
  }
  std::vector<std::string> Find(const std::string& glob) {
    auto r = FileFind({{"path", dir_.path()}, {"glob", glob}}, cfg_);
    EXPECT_TRUE(r) << r.error().message;
    if (!r) {
      return {};
    }
    EXPECT_EQ((*r)["path"], dir_.path());
    std::vector<std::string> rel;
    for (const auto& f : (*r)["files"]) {
      const std::string s = f;
      EXPECT_EQ(s.rfind(dir_.path() + "/", 0), 0u) << s;
      rel.push_back(s.substr(dir_.path().size() + 1));
    }
    return rel;
  }
};

TEST_F(FindTest, SingleSegmentWildcards) {
  EXPECT_EQ(Find("*.txt"), V{"a.txt"});
  EXPECT_EQ(Find("[ab].*"), (V{"a.txt", "b.py"}));
  EXPECT_EQ(Find("?.py"), V{"b.py"});
  EXPECT_EQ(Find("sub/*.txt"), V{"sub/c.txt"});
  EXPECT_EQ(Find("sub/.*.txt"), V{"sub/.f.txt"});
  EXPECT_EQ(Find(".hidden/*"), V{".hidden/e.txt"});
  EXPECT_EQ(Find("nothing*"), V{});
}

TEST_F(FindTest, DoubleStarMatchesAnyDepthWithoutFollowingLinks) {
  EXPECT_EQ(Find("**/*.txt"), (V{"a.txt", "sub/c.txt", "sub/deep/d.txt"}));
  EXPECT_EQ(Find("**/d.txt"), V{"sub/deep/d.txt"});
  // As in Python's glob, a trailing ** also matches zero directories: "sub" itself.
  EXPECT_EQ(Find("sub/**"), (V{"sub", "sub/c.txt", "sub/deep", "sub/deep/d.txt", "sub/loop"}));
  EXPECT_EQ(Find("**/deep/"), V{"sub/deep"});
  // An explicit segment may go through a link, once.
  EXPECT_EQ(Find("link/*.txt"), V{"link/c.txt"});
  EXPECT_EQ(Find("**/**/d.txt"), V{"sub/deep/d.txt"});
}

TEST_F(FindTest, TruncatesAndRejectsBadRoots) {
  cfg_.max_entries = 2;
  auto r = FileFind({{"path", dir_.path()}, {"glob", "**"}}, cfg_);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["files"].size(), 2u);
  EXPECT_EQ((*r)["truncated"], true);
  EXPECT_EQ(FileFind({{"path", P("a.txt")}, {"glob", "*"}}, cfg_).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(FileFind({{"path", P("missing")}, {"glob", "*"}}, cfg_).error().code,
            ErrorCode::kNotFound);
  EXPECT_EQ(FileFind({{"path", dir_.path()}}, cfg_).error().field, "glob");
}

// ---------------------------------------------------------------------------------------------
// download

TEST_F(FileOpsTest, OpenForDownload) {
  WriteFile(P("dir/report.bin"), "bytes");
  auto d = OpenForDownload(P("dir/report.bin"), cfg_);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->size, 5u);
  EXPECT_EQ(d->name, "report.bin");
  char buf[16];
  EXPECT_EQ(::read(d->fd.Get(), buf, sizeof(buf)), 5);
  EXPECT_EQ(std::string(buf, 5), "bytes");
  EXPECT_EQ(OpenForDownload(P("dir"), cfg_).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(OpenForDownload(P("missing"), cfg_).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(OpenForDownload("", cfg_).error().code, ErrorCode::kValidation);
}

// ---------------------------------------------------------------------------------------------
// upload

TEST_F(FileOpsTest, UploadCommitsAtomically) {
  WriteFile(P("up/existing"), "old");
  ASSERT_EQ(::chmod(P("up/existing").c_str(), 0600), 0);
  {
    auto sink = UploadSink::Open(P("up/existing"), cfg_);
    ASSERT_TRUE(sink) << sink.error().message;
    ASSERT_TRUE(sink->Write("new "));
    ASSERT_TRUE(sink->Write("content"));
    EXPECT_EQ(sink->bytes_written(), 11u);
    EXPECT_EQ(ReadFile(P("up/existing")), "old");  // untouched until Commit
    auto done = sink->Commit();
    ASSERT_TRUE(done) << done.error().message;
    EXPECT_EQ(*done, P("up/existing"));
    EXPECT_FALSE(sink->Commit());
  }
  EXPECT_EQ(ReadFile(P("up/existing")), "new content");
  EXPECT_EQ(ModeOf(P("up/existing")), 0600u);
  EXPECT_EQ(DirNames(P("up")), V{"existing"});
}

TEST_F(FileOpsTest, UploadCreatesParentsAndCleansUpWhenAbandoned) {
  {
    auto sink = UploadSink::Open("new/dir/f", cfg_);  // relative to base_dir
    ASSERT_TRUE(sink) << sink.error().message;
    ASSERT_TRUE(sink->Write("partial"));
    EXPECT_EQ(DirNames(P("new/dir")).size(), 1u);  // the temporary file
  }
  EXPECT_EQ(DirNames(P("new/dir")), V{});
  {
    auto sink = UploadSink::Open("new/dir/g", cfg_);
    ASSERT_TRUE(sink);
    ASSERT_TRUE(sink->Write("abc"));
    auto done = sink->Commit();
    ASSERT_TRUE(done);
    EXPECT_EQ(*done, P("new/dir/g"));
  }
  EXPECT_EQ(ReadFile(P("new/dir/g")), "abc");
  EXPECT_EQ(ModeOf(P("new/dir/g")), 0644u);
}

TEST_F(FileOpsTest, UploadOverTheCapIsRefused) {
  cfg_.max_upload_bytes = 10;
  {
    auto sink = UploadSink::Open(P("f"), cfg_);
    ASSERT_TRUE(sink);
    ASSERT_TRUE(sink->Write("0123456789"));
    auto w = sink->Write("x");
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().code, ErrorCode::kTooLarge);
  }
  EXPECT_EQ(DirNames(dir_.path()), V{});
}

TEST_F(FileOpsTest, UploadWithDestinationGivenAtCommit) {
  TempDir spool;
  ASSERT_TRUE(spool.ok());
  cfg_.upload_tmp_dir = spool.path();
  auto sink = UploadSink::Open("", cfg_);
  ASSERT_TRUE(sink) << sink.error().message;
  ASSERT_TRUE(sink->Write("late"));
  EXPECT_EQ(DirNames(spool.path()).size(), 1u);
  // Moving the sink keeps exactly one owner of the temporary file.
  UploadSink moved = std::move(*sink);
  auto no_dest = moved.Commit();
  ASSERT_FALSE(no_dest);
  EXPECT_EQ(no_dest.error().field, "path");
  fs::create_directory(P("adir"));
  EXPECT_EQ(moved.Commit(P("adir")).error().code, ErrorCode::kInvalidArgument);
  auto done = moved.Commit(P("x/y"));
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_EQ(ReadFile(P("x/y")), "late");
  EXPECT_EQ(DirNames(spool.path()), V{});
}

TEST_F(FileOpsTest, UploadAcrossFileSystemsCopies) {
  struct stat shm {};
  struct stat here {};
  if (::stat("/dev/shm", &shm) != 0 || ::stat(dir_.path().c_str(), &here) != 0 ||
      shm.st_dev == here.st_dev || ::access("/dev/shm", W_OK) != 0) {
    GTEST_SKIP() << "needs a writable /dev/shm on a different file system than the test dir";
  }
  TempDir spool("/dev/shm");
  ASSERT_TRUE(spool.ok());
  cfg_.upload_tmp_dir = spool.path();
  const std::string payload(200 * 1024 + 7, 'z');
  {
    auto sink = UploadSink::Open("", cfg_);
    ASSERT_TRUE(sink);
    ASSERT_TRUE(sink->Write(payload));
    auto done = sink->Commit(P("cross/f"));
    ASSERT_TRUE(done) << done.error().message;
  }
  EXPECT_EQ(ReadFile(P("cross/f")), payload);
  EXPECT_EQ(DirNames(spool.path()), V{});
  EXPECT_EQ(DirNames(P("cross")), V{"f"});
}

TEST_F(FileOpsTest, UploadOpenErrors) {
  fs::create_directory(P("d"));
  EXPECT_EQ(UploadSink::Open(P("d"), cfg_).error().code, ErrorCode::kInvalidArgument);
  WriteFile(P("file"), "x");
  EXPECT_EQ(UploadSink::Open(P("file/sub"), cfg_).error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace agentbox::guest
