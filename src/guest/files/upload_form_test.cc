#include "guest/files/upload_form.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace agentbox::guest {
namespace {

constexpr const char* kBoundary = "formBoundary7";

std::string Part(const std::string& name, const std::string& value,
                 const std::string& filename = "") {
  std::string p = std::string("--") + kBoundary + "\r\nContent-Disposition: form-data; name=\"" +
                  name + "\"";
  if (!filename.empty()) {
    p += "; filename=\"" + filename + "\"\r\nContent-Type: application/octet-stream";
  }
  return p + "\r\n\r\n" + value + "\r\n";
}

std::string End() { return std::string("--") + kBoundary + "--\r\n"; }

class UploadFormTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-form-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cfg_.base_dir = dir_;
    cfg_.upload_tmp_dir = dir_;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string dir_;
  FileConfig cfg_;
};

TEST_F(UploadFormTest, AFilePartUnderAnyNameIsTheFileAndOnlyOtherFieldsAreListed) {
  // Clients name the file part as they like ("upload", "data"): a filename makes it the file.
  UploadForm form(kBoundary, std::nullopt, cfg_, /*open_at_path=*/true);
  ASSERT_TRUE(form.Feed(Part("path", dir_ + "/a.txt") + Part("mode", "0644") +
                        Part("upload", "bytes", "a.txt") + End()));
  ASSERT_TRUE(form.Finish());
  EXPECT_EQ(form.field_names(), (std::vector<std::string>{"path", "mode"}));
  ASSERT_TRUE(form.path());
  EXPECT_EQ(*form.path(), dir_ + "/a.txt");
  ASSERT_TRUE(form.sink());
  auto committed = form.sink()->Commit(*form.path());
  ASSERT_TRUE(committed) << committed.error().message;
  EXPECT_EQ(Read(dir_ + "/a.txt"), "bytes");
}

TEST_F(UploadFormTest, TheQueryPathWinsAndTheFileMayComeFirst) {
  UploadForm form(kBoundary, dir_ + "/q.txt", cfg_, /*open_at_path=*/false);
  ASSERT_TRUE(form.Feed(Part("file", "q", "q.txt") + Part("path", dir_ + "/ignored") + End()));
  ASSERT_TRUE(form.Finish());
  EXPECT_EQ(*form.path(), dir_ + "/q.txt");
  ASSERT_TRUE(form.sink());
  EXPECT_EQ(form.sink()->bytes_written(), 1u);
}

TEST_F(UploadFormTest, BadFormsAreRefused) {
  {
    UploadForm form(kBoundary, std::nullopt, cfg_, true);
    auto r = form.Feed(Part("file", "a", "a") + Part("file", "b", "b") + End());
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("only one file part"), std::string::npos);
  }
  {
    UploadForm form(kBoundary, std::nullopt, cfg_, true);
    auto r = form.Feed(Part("note", std::string(64 * 1024 + 1, 'x')) + End());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
  }
  {
    UploadForm form(kBoundary, std::nullopt, cfg_, true);
    ASSERT_TRUE(form.Feed(Part("path", "x")));
    EXPECT_FALSE(form.Finish());  // the body ended inside the form
  }
  {
    UploadForm form(kBoundary, std::nullopt, cfg_, true);
    ASSERT_TRUE(form.Feed(Part("path", "x") + End()));
    ASSERT_TRUE(form.Finish());
    EXPECT_FALSE(form.sink());  // no file part: the caller answers 400
  }
}

}  // namespace
}  // namespace agentbox::guest
