#include "archive/archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "archive/tar_format.h"

namespace agentbox::archive {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/agentbox-archive-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { static_cast<void>(std::system(("rm -rf '" + path_ + "'").c_str())); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& content, mode_t mode = 0644) {
  std::ofstream(path, std::ios::binary) << content;
  ::chmod(path.c_str(), mode);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// path -> "type mode content-or-target" for everything below `root`.
void Describe(const std::string& root, const std::string& rel,
              std::map<std::string, std::string>& out) {
  DIR* d = ::opendir((root + "/" + rel).c_str());
  ASSERT_NE(d, nullptr) << root + "/" + rel;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    const std::string r = rel.empty() ? name : rel + "/" + name;
    const std::string full = root + "/" + r;
    struct stat st {};
    ASSERT_EQ(::lstat(full.c_str(), &st), 0);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
    if (S_ISDIR(st.st_mode)) {
      out[r] = std::string("dir ") + mode;
      Describe(root, r, out);
    } else if (S_ISLNK(st.st_mode)) {
      char t[4096];
      const ssize_t n = ::readlink(full.c_str(), t, sizeof(t));
      out[r] = "link " + std::string(t, static_cast<size_t>(n));
    } else {
      out[r] = std::string("file ") + mode + " " + ReadFile(full);
    }
  }
  ::closedir(d);
}

std::string PackToString(const std::string& dir, Compression c = Compression::kNone) {
  std::string out;
  auto r = Pack(dir, c, [&out](std::string_view b) -> Result<void> {
    out.append(b);
    return {};
  });
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  return out;
}

Source FromString(const std::string& data) {
  auto pos = std::make_shared<size_t>(0);
  return [&data, pos](char* buf, size_t n) -> Result<size_t> {
    const size_t k = std::min(n, data.size() - *pos);
    std::memcpy(buf, data.data() + *pos, k);
    *pos += k;
    return k;
  };
}

bool Exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// Nothing but `keep` in `dir` (no staging directory left behind).
std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  while (dirent* e = d ? ::readdir(d) : nullptr) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      names.emplace_back(e->d_name);
    }
  }
  if (d) {
    ::closedir(d);
  }
  return names;
}

// A tar built entry by entry, for archives no honest packer writes.
class TarBuilder {
 public:
  TarBuilder& Add(const std::string& name, char type, const std::string& data = "",
                  const std::string& link = "", mode_t mode = 0644) {
    std::string pax;
    if (name.size() > 100) {
      pax = tar::PaxRecord("path", name);
      Header("././@PaxHeader", tar::kPaxLocal, pax.size(), "", 0644);
      Data(pax);
    }
    Header(name.substr(0, 100), type, data.size(), link, mode);
    Data(data);
    return *this;
  }
  std::string Finish() { return out_ + std::string(1024, '\0'); }

 private:
  void Header(const std::string& name, char type, uint64_t size, const std::string& link,
              mode_t mode) {
    char b[512] = {};
    std::memcpy(b, name.data(), std::min<size_t>(name.size(), 100));
    std::memcpy(b + 157, link.data(), std::min<size_t>(link.size(), 100));
    tar::PutOctal(b, tar::kMode, mode);
    tar::PutOctal(b, tar::kUid, 0);
    tar::PutOctal(b, tar::kGid, 0);
    tar::PutOctal(b, tar::kSize, size);
    tar::PutOctal(b, tar::kMtime, 1700000000);
    b[156] = type;
    std::memcpy(b + 257, "ustar", 6);
    std::memcpy(b + 263, "00", 2);
    tar::SetChecksum(b);
    out_.append(b, 512);
  }
  void Data(const std::string& d) {
    out_ += d;
    if (d.size() % 512) {
      out_.append(512 - d.size() % 512, '\0');
    }
  }
  std::string out_;
};

class ArchiveTest : public ::testing::TestWithParam<Compression> {};

TEST_P(ArchiveTest, RoundTripKeepsContentModesLinksAndLongNames) {
  TempDir tmp;
  const std::string src = tmp.path() + "/src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((src + "/sub").c_str(), 0750), 0);
  ASSERT_EQ(::mkdir((src + "/empty").c_str(), 0700), 0);
  std::string big(3 * 1024 * 1024 + 7, '\0');
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = static_cast<char>((i * 2654435761u) >> 13);
  }
  WriteFile(src + "/big.bin", big, 0600);
  WriteFile(src + "/empty.txt", "");
  for (size_t n : {1, 511, 512, 513}) {
    WriteFile(src + "/sub/f" + std::to_string(n), std::string(n, 'x'), 0755);
  }
  const std::string long_dir = src + "/" + std::string(120, 'd');
  ASSERT_EQ(::mkdir(long_dir.c_str(), 0755), 0);
  WriteFile(long_dir + "/" + std::string(200, 'n'), "long name");
  ASSERT_EQ(::symlink("sub/f1", (src + "/link").c_str()), 0);
  ASSERT_EQ(::symlink(std::string(150, 'x').c_str(), (src + "/dangling").c_str()), 0);
  ASSERT_EQ(::link((src + "/sub/f512").c_str(), (src + "/hard").c_str()), 0);

  const std::string tarball = PackToString(src, GetParam());
  const std::string dst = tmp.path() + "/out/dst";
  auto stats = Unpack(FromString(tarball), dst, UnpackOptions{});
  ASSERT_TRUE(stats.has_value()) << stats.error().message;
  EXPECT_EQ(stats->bytes, big.size() + 1 + 511 + 512 + 513 + 9);

  std::map<std::string, std::string> want, got;
  Describe(src, "", want);
  Describe(dst, "", got);
  EXPECT_EQ(want, got);
  struct stat a {
  }, b{};
  ASSERT_EQ(::stat((dst + "/hard").c_str(), &a), 0);
  ASSERT_EQ(::stat((dst + "/sub/f512").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "hard links stay hard links";
  EXPECT_EQ(Names(tmp.path() + "/out"), std::vector<std::string>{"dst"});
}

INSTANTIATE_TEST_SUITE_P(Compressions, ArchiveTest,
                         ::testing::Values(Compression::kNone, Compression::kGzip,
                                           Compression::kZstd));

struct Hostile {
  std::string what;
  std::string tarball;
};

std::vector<Hostile> HostileArchives() {
  std::vector<Hostile> h;
  h.push_back(
      {"dotdot", TarBuilder().Add("ok.txt", '0', "fine").Add("../evil", '0', "x").Finish()});
  h.push_back({"dotdot_inside", TarBuilder().Add("a/../../evil", '0', "x").Finish()});
  h.push_back({"absolute", TarBuilder().Add("/tmp/agentbox-evil", '0', "x").Finish()});
  h.push_back({"symlink_out", TarBuilder().Add("s", '2', "", "../outside").Finish()});
  h.push_back({"symlink_absolute", TarBuilder().Add("s", '2', "", "/etc").Finish()});
  h.push_back(
      {"symlink_chain_out",
       TarBuilder().Add("d/", '5').Add("d/s", '2', "", "..").Add("a", '2', "", "d/s/..").Finish()});
  h.push_back(
      {"write_through_symlink",
       TarBuilder().Add("sub/", '5').Add("s", '2', "", "sub").Add("s/x", '0', "x").Finish()});
  h.push_back({"hardlink_out", TarBuilder().Add("h", '1', "", "../outside").Finish()});
  h.push_back({"hardlink_absolute", TarBuilder().Add("h", '1', "", "/etc/passwd").Finish()});
  h.push_back({"hardlink_missing", TarBuilder().Add("h", '1', "", "nothing-here").Finish()});
  h.push_back({"char_device", TarBuilder().Add("null", '3').Finish()});
  h.push_back({"block_device", TarBuilder().Add("sda", '4').Finish()});
  h.push_back({"huge_name", TarBuilder().Add(std::string(5000, 'a'), '0', "x").Finish()});
  h.push_back({"huge_component", TarBuilder().Add(std::string(300, 'a') + "/x", '0').Finish()});
  h.push_back({"unknown_type", TarBuilder().Add("x", 'Z').Finish()});
  const std::string good = TarBuilder().Add("a.txt", '0', std::string(5000, 'a')).Finish();
  h.push_back({"truncated", good.substr(0, 1024)});
  h.push_back({"no_end_marker", good.substr(0, good.size() - 1024)});
  h.push_back({"not_tar", std::string(2048, 'q')});
  return h;
}

TEST(ArchiveHostile, RefusedWithNothingLeftBehind) {
  for (const auto& h : HostileArchives()) {
    TempDir tmp;
    const std::string dst = tmp.path() + "/dst";
    auto r = Unpack(FromString(h.tarball), dst, UnpackOptions{});
    ASSERT_FALSE(r.has_value()) << h.what << " was accepted";
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << h.what << ": " << r.error().message;
    EXPECT_TRUE(Names(tmp.path()).empty()) << h.what << " left something behind";
    EXPECT_FALSE(Exists("/tmp/agentbox-evil"));
    EXPECT_FALSE(Exists(tmp.path() + "/evil"));
  }
}

TEST(ArchiveHostile, ErrorsNameTheEntry) {
  TempDir tmp;
  auto r = Unpack(FromString(TarBuilder().Add("../evil", '0', "x").Finish()), tmp.path() + "/d",
                  UnpackOptions{});
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("'../evil'"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(".."), std::string::npos);
}

// Files are created with their final mode where the umask allows (no fchmod), and with an
// fchmod where it does not; a later entry of the same name replaces the earlier one.
TEST(ArchiveUnpack, ModesPastTheUmaskAndRepeatedNames) {
  TempDir tmp;
  const std::string dst = tmp.path() + "/dst";
  const mode_t old = ::umask(022);
  auto r = Unpack(FromString(TarBuilder()
                                 .Add("open", '0', "a", "", 0777)
                                 .Add("plain", '0', "b", "", 0644)
                                 .Add("readonly", '0', "c", "", 0400)
                                 .Add("setuid", '0', "d", "", 04755)
                                 .Add("twice", '0', "first", "", 0600)
                                 .Add("twice", '0', "second", "", 0640)
                                 .Finish()),
                  dst, UnpackOptions{});
  ::umask(old);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  auto mode = [&](const std::string& name) {
    struct stat st {};
    ::lstat((dst + "/" + name).c_str(), &st);
    return st.st_mode & 07777;
  };
  EXPECT_EQ(mode("open"), 0777u);
  EXPECT_EQ(mode("plain"), 0644u);
  EXPECT_EQ(mode("readonly"), 0400u);
  EXPECT_EQ(mode("setuid"), 0755u);  // setuid only with keep_owner
  EXPECT_EQ(mode("twice"), 0640u);
  EXPECT_EQ(ReadFile(dst + "/twice"), "second");
  EXPECT_EQ(ReadFile(dst + "/readonly"), "c");
}

TEST(ArchiveUnpack, ExistingDirectoryNeedsOverwrite) {
  TempDir tmp;
  const std::string dst = tmp.path() + "/dst";
  ASSERT_EQ(::mkdir(dst.c_str(), 0755), 0);
  WriteFile(dst + "/old.txt", "old");
  const std::string t = TarBuilder().Add("new.txt", '0', "new").Finish();
  auto refused = Unpack(FromString(t), dst, UnpackOptions{});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, ErrorCode::kConflict);
  EXPECT_EQ(ReadFile(dst + "/old.txt"), "old");

  UnpackOptions o;
  o.overwrite = true;
  auto replaced = Unpack(FromString(t), dst, o);
  ASSERT_TRUE(replaced.has_value()) << replaced.error().message;
  EXPECT_FALSE(Exists(dst + "/old.txt"));
  EXPECT_EQ(ReadFile(dst + "/new.txt"), "new");
  EXPECT_EQ(Names(tmp.path()), std::vector<std::string>{"dst"});
}

TEST(ArchiveUnpack, EmptyDirectoryIsFilled) {
  TempDir tmp;
  const std::string dst = tmp.path() + "/dst";
  ASSERT_EQ(::mkdir(dst.c_str(), 0755), 0);
  auto r = Unpack(FromString(TarBuilder().Add("./", '5').Add("./a", '0', "a").Finish()), dst,
                  UnpackOptions{});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(ReadFile(dst + "/a"), "a");
}

TEST(ArchiveUnpack, SourceErrorLeavesNothing) {
  TempDir tmp;
  const std::string good = TarBuilder().Add("a.txt", '0', std::string(100000, 'a')).Finish();
  size_t served = 0;
  Source failing = [&](char* buf, size_t n) -> Result<size_t> {
    if (served >= 4096) {
      return Fail(ErrorCode::kUnavailable, "the client went away");
    }
    const size_t k = std::min(n, size_t{4096} - served);
    std::memcpy(buf, good.data() + served, k);
    served += k;
    return k;
  };
  auto r = Unpack(failing, tmp.path() + "/dst", UnpackOptions{});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_TRUE(Names(tmp.path()).empty());
}

TEST(ArchivePack, MissingOrNotADirectory) {
  TempDir tmp;
  auto sink = [](std::string_view) -> Result<void> { return {}; };
  EXPECT_EQ(Pack(tmp.path() + "/nope", Compression::kNone, sink).error().code,
            ErrorCode::kNotFound);
  WriteFile(tmp.path() + "/f", "x");
  EXPECT_EQ(Pack(tmp.path() + "/f", Compression::kNone, sink).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseCompression("bzip2").error().code, ErrorCode::kInvalidArgument);
}

TEST(ArchivePack, GnuTarReadsOurArchivesAndWeReadGnuTar) {
  if (std::system("tar --version >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "no tar(1) on this machine";
  }
  TempDir tmp;
  const std::string src = tmp.path() + "/src";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  const std::string deep = src + "/" + std::string(150, 'p');
  ASSERT_EQ(::mkdir(deep.c_str(), 0755), 0);
  WriteFile(deep + "/" + std::string(120, 'q'), "payload");
  ASSERT_EQ(::symlink("x", (src + "/l").c_str()), 0);
  // Ours -> tar(1).
  std::ofstream(tmp.path() + "/ours.tar", std::ios::binary) << PackToString(src);
  ASSERT_EQ(::mkdir((tmp.path() + "/x1").c_str(), 0755), 0);
  ASSERT_EQ(
      std::system(("tar -xf '" + tmp.path() + "/ours.tar' -C '" + tmp.path() + "/x1'").c_str()), 0);
  std::map<std::string, std::string> want, got;
  Describe(src, "", want);
  Describe(tmp.path() + "/x1", "", got);
  EXPECT_EQ(want, got);
  // tar(1) (GNU long names) -> ours.
  ASSERT_EQ(
      std::system(("tar --format=gnu -cf '" + tmp.path() + "/gnu.tar' -C '" + src + "' .").c_str()),
      0);
  const std::string gnu = ReadFile(tmp.path() + "/gnu.tar");
  auto r = Unpack(FromString(gnu), tmp.path() + "/x2", UnpackOptions{});
  ASSERT_TRUE(r.has_value()) << r.error().message;
  got.clear();
  Describe(tmp.path() + "/x2", "", got);
  EXPECT_EQ(want, got);
}

}  // namespace
}  // namespace agentbox::archive
