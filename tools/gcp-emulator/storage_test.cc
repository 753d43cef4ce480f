// The emulator binary's Storage, auth and fault APIs, over HTTP.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "emulator_test_util.h"
#include "hashes.h"

namespace agentbox::gcpemu::testing {
namespace {

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(emu_.Start(), 0) << "the emulator did not start";
    u_ = emu_.url();
    ASSERT_EQ(Http("POST", u_ + "/storage/v1/b?project=p", R"({"name":"bkt"})").status, 200);
  }
  HttpResult Put(const std::string& name, const std::string& data, const std::string& query = "") {
    return Http("POST", u_ + "/upload/storage/v1/b/bkt/o?uploadType=media&name=" + name + query,
                data, {"Content-Type: text/plain"});
  }
  int64_t Generation(const std::string& enc_name) {
    auto r = Http("GET", u_ + "/storage/v1/b/bkt/o/" + enc_name);
    return r.status == 200 ? std::stoll(r.json()["generation"].get<std::string>()) : -1;
  }

  TempDir dir_;
  EmulatorProcess emu_{dir_.path()};
  std::string u_;
};

TEST_F(StorageTest, NeedsABearerToken) {
  auto r = Http("GET", u_ + "/storage/v1/b/bkt/o", "", {}, "");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.json()["error"]["status"], "UNAUTHENTICATED");
  EXPECT_EQ(
      Http("POST", u_ + "/upload/storage/v1/b/bkt/o?uploadType=media&name=x", "d", {}, "").status,
      401);
}

TEST_F(StorageTest, ObjectsArePlainFilesWithGenerationsThatSurviveARestart) {
  auto r = Put("a%2Fb.txt", "hello", "&ifGenerationMatch=0");
  ASSERT_EQ(r.status, 200) << r.body;
  const Json meta = r.json();
  EXPECT_EQ(meta["size"], "5");
  EXPECT_EQ(meta["crc32c"], "mnG7TA==");  // gsutil hash of "hello"
  EXPECT_EQ(meta["md5Hash"], "XUFAKrxLKna5cZ2REBfFkg==");
  std::ifstream f(dir_.path() + "/buckets/bkt/a/b.txt");
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "hello");
  EXPECT_EQ(Put("a%2Fb.txt", "x", "&ifGenerationMatch=0").status, 412);

  emu_.Stop();
  ASSERT_GT(emu_.Start(), 0);
  u_ = emu_.url();
  auto again = Http("GET", u_ + "/storage/v1/b/bkt/o/a%2Fb.txt");
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(again.json()["generation"], meta["generation"]);
  EXPECT_EQ(again.json()["contentType"], "text/plain");
}

TEST_F(StorageTest, FilesChangedBehindItsBackGetNewGenerations) {
  // What a container does through a read-write volume: create, rewrite, delete files.
  const std::string path = dir_.path() + "/buckets/bkt/w/out.txt";
  ::mkdir((dir_.path() + "/buckets/bkt/w").c_str(), 0755);
  std::ofstream(path) << "one";
  auto list = Http("GET", u_ + "/storage/v1/b/bkt/o?prefix=w/");
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.json()["items"].size(), 1u);
  const int64_t g1 = Generation("w%2Fout.txt");
  ASSERT_GT(g1, 0);
  EXPECT_EQ(Generation("w%2Fout.txt"), g1) << "an unchanged file keeps its generation";
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a distinct mtime
  std::ofstream(path) << "two!";
  const int64_t g2 = Generation("w%2Fout.txt");
  EXPECT_GT(g2, g1);
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/bkt/o/w%2Fout.txt?alt=media").body, "two!");
  EXPECT_EQ(Put("w%2Fout.txt", "three", "&ifGenerationMatch=" + std::to_string(g1)).status, 412);
  ::chmod(path.c_str(), 0555);  // file-mode= on a volume: not a new generation
  EXPECT_EQ(Generation("w%2Fout.txt"), g2);
  ::unlink(path.c_str());
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/bkt/o/w%2Fout.txt").status, 404);
  EXPECT_FALSE(Http("GET", u_ + "/storage/v1/b/bkt/o?prefix=w/").json().contains("items"));
}

TEST_F(StorageTest, ListsWithDelimiterAndPages) {
  for (const char* n : {"d%2F1", "d%2F2", "d%2Fs%2F3", "d%2Fs%2F4", "d%2Ft%2F5", "e"}) {
    ASSERT_EQ(Put(n, "x").status, 200);
  }
  auto r = Http("GET", u_ + "/storage/v1/b/bkt/o?prefix=d/&delimiter=/");
  EXPECT_EQ(r.json()["items"].size(), 2u);
  EXPECT_EQ(r.json()["prefixes"], Json::array({"d/s/", "d/t/"}));
  std::vector<std::string> seen;
  std::string token;
  for (int page = 0; page < 10; ++page) {
    auto p = Http("GET", u_ + "/storage/v1/b/bkt/o?prefix=d/&delimiter=/&maxResults=1" +
                             (token.empty() ? "" : "&pageToken=" + token));
    const Json j = p.json();
    for (const auto& i : j.value("items", Json::array())) {
      seen.push_back(i["name"]);
    }
    for (const auto& pre : j.value("prefixes", Json::array())) {
      seen.push_back(pre);
    }
    token = j.value("nextPageToken", "");
    if (token.empty()) {
      break;
    }
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"d/1", "d/2", "d/s/", "d/t/"}));

  // A prefix ending inside a segment sees files made behind the API's back, and their removal.
  std::ofstream(dir_.path() + "/buckets/bkt/d/s/9") << "nine";
  auto partial = Http("GET", u_ + "/storage/v1/b/bkt/o?prefix=d/s");
  ASSERT_EQ(partial.json()["items"].size(), 3u) << partial.body;
  EXPECT_EQ(partial.json()["items"][2]["name"], "d/s/9");
  ::unlink((dir_.path() + "/buckets/bkt/d/s/9").c_str());
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/bkt/o?prefix=d/s").json()["items"].size(), 2u);
}

TEST_F(StorageTest, ResumableUploadInChunksAndRangedDownload) {
  auto init = Http("POST", u_ + "/upload/storage/v1/b/bkt/o?uploadType=resumable&name=big",
                   R"({"contentType":"application/x-test","metadata":{"k":"v"}})");
  ASSERT_EQ(init.status, 200);
  const std::string loc = init.Header("location");
  ASSERT_FALSE(loc.empty());
  std::string data(600 * 1024, '\0');
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>(i * 7 + i / 1000);
  }
  auto c1 = Http("PUT", loc, data.substr(0, 262144), {"Content-Range: bytes 0-262143/*"});
  EXPECT_EQ(c1.status, 308);
  EXPECT_EQ(c1.Header("range"), "bytes=0-262143");
  // A resent first chunk is ignored; a status query reports the same range.
  EXPECT_EQ(Http("PUT", loc, data.substr(0, 262144), {"Content-Range: bytes 0-262143/*"}).status,
            308);
  EXPECT_EQ(Http("PUT", loc, "", {"Content-Range: bytes */*"}).Header("range"), "bytes=0-262143");
  auto c2 = Http("PUT", loc, data.substr(262144),
                 {"Content-Range: bytes 262144-" + std::to_string(data.size() - 1) + "/" +
                  std::to_string(data.size())});
  ASSERT_EQ(c2.status, 200) << c2.body;
  EXPECT_EQ(c2.json()["metadata"]["k"], "v");
  ObjectHasher h;
  h.Update(data);
  EXPECT_EQ(c2.json()["crc32c"], h.Crc32cBase64());
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/bkt/o/big?alt=media").body, data);
  auto part = Http("GET", u_ + "/download/storage/v1/b/bkt/o/big?alt=media", "",
                   {"Range: bytes=1000-1999"});
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, data.substr(1000, 1000));
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/bkt/o/big?alt=media", "", {"Range: bytes=-10"}).body,
            data.substr(data.size() - 10));
  EXPECT_EQ(
      Http("GET", u_ + "/storage/v1/b/bkt/o/big?alt=media", "", {"Range: bytes=999999-"}).status,
      416);
}

TEST_F(StorageTest, ComposeAndRewrite) {
  ASSERT_EQ(Put("p1", "abc").status, 200);
  ASSERT_EQ(Put("p2", "def").status, 200);
  auto c = Http("POST", u_ + "/storage/v1/b/bkt/o/whole/compose",
                R"({"sourceObjects":[{"name":"p1"},{"name":"p2"}],
                    "destination":{"contentType":"text/x"}})");
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.json()["componentCount"], 2);
  EXPECT_EQ(c.json()["contentType"], "text/x");
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/bkt/o/whole?alt=media").body, "abcdef");
  EXPECT_EQ(Http("POST", u_ + "/storage/v1/b/bkt/o/w2/compose",
                 R"({"sourceObjects":[{"name":"p1","generation":"1"}]})")
                .status,
            412);
  auto r = Http("POST", u_ + "/storage/v1/b/bkt/o/whole/rewriteTo/b/bkt/o/copy%2Fof", "{}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(r.json()["done"].get<bool>());
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/bkt/o/copy%2Fof?alt=media").body, "abcdef");
}

TEST_F(StorageTest, RefusesNamesAFileTreeCannotHold) {
  EXPECT_EQ(Put("a%2F..%2Fb", "x").status, 400);
  EXPECT_EQ(Put("a%2F%2Fb", "x").status, 400);
  ASSERT_EQ(Put("f", "x").status, 200);
  auto r = Put("f%2Fg", "x");
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("keeps objects as files"), std::string::npos) << r.body;
  EXPECT_EQ(Http("POST", u_ + "/storage/v1/b?project=p", R"({"name":"Bad_Name"})").status, 400);
  EXPECT_EQ(Http("POST", u_ + "/storage/v1/b?project=p", R"({"name":"bkt"})").status, 409);
}

TEST_F(StorageTest, InjectedFaultsByMethodCountLatencyAndRaces) {
  auto set = Http("PUT", u_ + "/emulator/v1/faults",
                  R"({"rules":[{"method":"storage.objects.insert","status":503,"count":2,
                                "retry_after_s":1},
                               {"method":"storage.objects.get","latency_ms":300,"count":1}]})",
                  {}, "");
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(Put("x", "1").status, 503);
  auto second = Put("x", "1");
  EXPECT_EQ(second.status, 503);
  EXPECT_EQ(second.json()["error"]["status"], "UNAVAILABLE");
  EXPECT_EQ(second.Header("retry-after"), "1");
  EXPECT_EQ(Put("x", "1").status, 200);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Http("GET", u_ + "/storage/v1/b/bkt/o/x").status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));
  auto shown = Http("GET", u_ + "/emulator/v1/faults", "", {}, "").json();
  EXPECT_EQ(shown["rules"][0]["fired"], 2);
  EXPECT_EQ(shown["rules"][0]["count"], 0);

  // A racing writer: the generation read is stale by the time the write applies.
  const int64_t g = Generation("x");
  ASSERT_EQ(
      Http("PUT", u_ + "/emulator/v1/faults",
           R"({"rules":[{"method":"storage.objects.insert","precondition_race":true,"count":1}]})",
           {}, "")
          .status,
      200);
  EXPECT_EQ(Put("x", "2", "&ifGenerationMatch=" + std::to_string(g)).status, 412);
  EXPECT_GT(Generation("x"), g);
  EXPECT_EQ(Put("x", "2", "&ifGenerationMatch=" + std::to_string(Generation("x"))).status, 200);

  EXPECT_EQ(Http("PUT", u_ + "/emulator/v1/faults", R"({"rules":[{"status":503}]})", {}, "").status,
            400);
  EXPECT_EQ(Http("DELETE", u_ + "/emulator/v1/faults", "", {}, "").status, 200);
  EXPECT_EQ(Http("GET", u_ + "/emulator/v1/faults", "", {}, "").json()["rules"].size(), 0u);
}

TEST_F(StorageTest, TokenEndpointAndMetadataServer) {
  auto b64 = [](const std::string& s) { return Base64UrlEncode(s); };
  const long now = static_cast<long>(std::time(nullptr));
  const std::string claims = R"({"iss":"sa@p.iam.gserviceaccount.com","aud":")" + u_ +
                             R"(/token","scope":"https://www.googleapis.com/auth/cloud-platform",)"
                             R"("iat":)" +
                             std::to_string(now) + R"(,"exp":)" + std::to_string(now + 3600) + "}";
  const std::string jwt =
      b64(R"({"alg":"RS256","typ":"JWT","kid":"k"})") + "." + b64(claims) + "." + b64("sig");
  auto ok =
      Http("POST", u_ + "/token",
           "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + jwt,
           {"Content-Type: application/x-www-form-urlencoded"}, "");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json()["token_type"], "Bearer");
  EXPECT_GT(ok.json()["expires_in"].get<int>(), 0);
  const std::string hs = b64(R"({"alg":"HS256"})") + "." + b64(claims) + "." + b64("sig");
  auto bad = Http(
      "POST", u_ + "/token",
      "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + hs, {}, "");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json()["error"], "invalid_grant");
  EXPECT_EQ(Http("POST", u_ + "/token",
                 "grant_type=refresh_token&client_id=c&client_secret=s&refresh_token=r", {}, "")
                .status,
            200);
  EXPECT_EQ(Http("POST", u_ + "/token", "grant_type=password", {}, "").status, 400);

  const std::string md = u_ + "/computeMetadata/v1/instance/service-accounts/default/token";
  EXPECT_EQ(Http("GET", md, "", {}, "").status, 403);
  auto tok = Http("GET", md, "", {"Metadata-Flavor: Google"}, "");
  ASSERT_EQ(tok.status, 200);
  EXPECT_FALSE(tok.json()["access_token"].get<std::string>().empty());
  EXPECT_EQ(Http("GET", u_ + "/computeMetadata/v1/project/project-id", "",
                 {"Metadata-Flavor: Google"}, "")
                .body,
            "emulator-project");
}

// The start-up time is a figure (printed, and recorded as a property), not a timed assertion:
// a sanitizer build on a loaded 2-core machine takes longer than a release build on a quiet
// one. The bound only catches an emulator that hangs instead of listening.
TEST(EmulatorStartup, ListensAndPrintsItsPort) {
  TempDir dir;
  EmulatorProcess emu(dir.path());
  const double ms = emu.Start();
  ASSERT_GT(ms, 0);
  EXPECT_LT(ms, 10000.0);
  RecordProperty("startup_ms", std::to_string(ms));
  std::printf("emulator startup: %.1f ms until it printed its port\n", ms);
}

}  // namespace
}  // namespace agentbox::gcpemu::testing
