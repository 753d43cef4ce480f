#include "gcp/storage.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>

#include "gcp/testing/fake_http.h"
#include "gcp/testing/test_util.h"

namespace agentbox::gcp {
namespace {

using nlohmann::json;
using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::FakeResponse;
using testing::PercentDecode;
using testing::RecordedSleeps;

std::string Md5(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr);
  unsigned char out[64];
  int n = EVP_EncodeBlock(out, digest, static_cast<int>(len));
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n));
}

// An in-memory Cloud Storage of one bucket, speaking the JSON API as documented, with hooks
// to inject faults. Checks the wire details the client must get right.
class FakeGcs {
 public:
  struct Object {
    std::string data;
    int64_t generation = 0;
    std::string content_type;
    std::map<std::string, std::string> metadata;
  };
  std::mutex mu;
  std::map<std::string, Object> objects;
  int64_t next_generation = 1000;
  bool send_generation_headers = true;
  std::function<std::optional<FakeResponse>(const FakeRequest&)> fault;
  struct Session {
    std::string name;
    int64_t total = 0;
    std::string data;
    Object meta;
  };
  std::map<std::string, Session> sessions;
  std::string base;  // server URL, for Location

  // Uploads that are stored but whose answer is replaced by a 503 (a lost answer).
  int lose_upload_answers = 0;

  FakeResponse Handle(const FakeRequest& r) {
    if (fault) {
      if (auto f = fault(r)) {
        return *f;
      }
    }
    FakeResponse resp = Dispatch(r);
    std::lock_guard lock(mu);
    if (r.method == "POST" && resp.status == 200 && lose_upload_answers > 0) {
      --lose_upload_answers;
      return FakeResponse::Json(503, R"({"error":{"code":503,"message":"lost"}})");
    }
    return resp;
  }

  FakeResponse Dispatch(const FakeRequest& r) {
    std::lock_guard lock(mu);
    if (r.Header("authorization") != "Bearer tok") {
      return FakeResponse::Json(401, R"({"error":{"code":401,"message":"no auth"}})");
    }
    const std::string upload = "/upload/storage/v1/b/bkt/o";
    const std::string objects_path = "/storage/v1/b/bkt/o";
    if (r.method == "POST" && r.path == upload) {
      return Upload(r);
    }
    if (r.method == "PUT" && r.path == "/upload/session") {
      return Chunk(r);
    }
    if (r.method == "GET" && r.path == objects_path) {
      return List(r);
    }
    if (r.path.rfind(objects_path + "/", 0) == 0) {
      std::string name = PercentDecode(r.path.substr(objects_path.size() + 1), false);
      auto it = objects.find(name);
      if (it == objects.end()) {
        return FakeResponse::Json(404, R"({"error":{"code":404,"message":"No such object: bkt/)" +
                                           name + R"(","errors":[{"reason":"notFound"}]}})");
      }
      if (r.method == "DELETE") {
        if (r.HasQuery("ifGenerationMatch") &&
            std::stoll(r.Query("ifGenerationMatch")) != it->second.generation) {
          return Precondition();
        }
        objects.erase(it);
        FakeResponse del;
        del.status = 204;
        return del;
      }
      if (r.Query("alt") == "media") {
        return Download(r, it->second);
      }
      return FakeResponse::Json(200, Resource(name, it->second).dump());
    }
    if (r.path == "/storage/v1/b/bkt") {
      return FakeResponse::Json(200, R"({"kind":"storage#bucket","name":"bkt"})");
    }
    return FakeResponse::Json(
        404, R"({"error":{"code":404,"message":"Not Found","errors":[{"reason":"notFound"}]}})");
  }

  static FakeResponse Precondition() {
    return FakeResponse::Json(
        412,
        R"({"error":{"code":412,"message":"At least one of the pre-conditions you specified did not hold.","errors":[{"reason":"conditionNotMet"}]}})");
  }

  json Resource(const std::string& name, const Object& o) const {
    json j = {{"kind", "storage#object"},
              {"name", name},
              {"bucket", "bkt"},
              {"generation", std::to_string(o.generation)},
              {"metageneration", "1"},
              {"size", std::to_string(o.data.size())},
              {"contentType", o.content_type},
              {"updated", "2026-12-05T00:00:00.000Z"},
              {"md5Hash", Md5(o.data)}};
    if (!o.metadata.empty()) {
      j["metadata"] = o.metadata;
    }
    return j;
  }

  std::optional<FakeResponse> CheckPrecondition(const FakeRequest& r, const std::string& name) {
    if (!r.HasQuery("ifGenerationMatch")) {
      return std::nullopt;
    }
    int64_t want = std::stoll(r.Query("ifGenerationMatch"));
    auto it = objects.find(name);
    int64_t have = it == objects.end() ? 0 : it->second.generation;
    if (want != have) {
      return Precondition();
    }
    return std::nullopt;
  }

  FakeResponse Store(const std::string& name, Object o) {
    o.generation = ++next_generation;
    objects[name] = o;
    return FakeResponse::Json(200, Resource(name, o).dump());
  }

  FakeResponse Upload(const FakeRequest& r) {
    std::string type = r.Query("uploadType");
    std::string name = r.Query("name");
    if (name.empty()) {
      return FakeResponse::Json(400, R"({"error":{"code":400,"message":"name required"}})");
    }
    if (auto p = CheckPrecondition(r, name)) {
      return *p;
    }
    Object o;
    if (type == "media") {
      o.data = r.body;
      o.content_type = r.Header("content-type");
      return Store(name, o);
    }
    if (type == "multipart") {
      std::string ct = r.Header("content-type");
      std::string prefix = "multipart/related; boundary=";
      if (ct.rfind(prefix, 0) != 0) {
        return FakeResponse::Json(400, R"({"error":{"code":400,"message":"bad content type"}})");
      }
      std::string delim = "--" + ct.substr(prefix.size());
      // --B\r\n<headers>\r\n\r\n<json>\r\n--B\r\n<headers>\r\n\r\n<media>\r\n--B--\r\n
      size_t p1 = r.body.find("\r\n\r\n");
      size_t p1_end = r.body.find("\r\n" + delim + "\r\n", p1);
      std::string meta = r.body.substr(p1 + 4, p1_end - p1 - 4);
      size_t p2 = r.body.find("\r\n\r\n", p1_end + 2);
      std::string media_headers = r.body.substr(p1_end, p2 - p1_end);
      std::string tail = "\r\n" + delim + "--\r\n";
      if (r.body.rfind(delim + "\r\n", 0) != 0 || r.body.size() < tail.size() ||
          r.body.compare(r.body.size() - tail.size(), tail.size(), tail) != 0) {
        return FakeResponse::Json(400, R"({"error":{"code":400,"message":"bad multipart"}})");
      }
      o.data = r.body.substr(p2 + 4, r.body.size() - tail.size() - p2 - 4);
      json m = json::parse(meta);
      o.content_type = m.value("contentType", "");
      if (media_headers.find("Content-Type: " + o.content_type) == std::string::npos) {
        return FakeResponse::Json(400, R"({"error":{"code":400,"message":"media type"}})");
      }
      if (m.contains("metadata")) {
        o.metadata = m["metadata"].get<std::map<std::string, std::string>>();
      }
      if (m.value("name", "") != name) {
        return FakeResponse::Json(400, R"({"error":{"code":400,"message":"name mismatch"}})");
      }
      return Store(name, o);
    }
    if (type == "resumable") {
      json m = json::parse(r.body);
      Session s;
      s.name = name;
      s.total = std::stoll(r.Header("x-upload-content-length"));
      s.meta.content_type = r.Header("x-upload-content-type");
      sessions["s1"] = s;
      FakeResponse resp;
      resp.headers = {{"Location", base + "/upload/session?upload_id=s1"}};
      return resp;
    }
    return FakeResponse::Json(400, R"({"error":{"code":400,"message":"uploadType"}})");
  }

  FakeResponse Chunk(const FakeRequest& r) {
    auto& s = sessions.at(r.Query("upload_id"));
    std::string range = r.Header("content-range");
    FakeResponse incomplete;
    incomplete.status = 308;
    if (range.rfind("bytes */", 0) == 0) {  // status query
      if (!s.data.empty()) {
        incomplete.headers = {{"Range", "bytes=0-" + std::to_string(s.data.size() - 1)}};
      }
      return incomplete;
    }
    int64_t first = 0, last = 0, total = 0;
    if (sscanf(range.c_str(), "bytes %ld-%ld/%ld", &first, &last, &total) != 3 ||
        total != s.total || first != static_cast<int64_t>(s.data.size()) ||
        last - first + 1 != static_cast<int64_t>(r.body.size())) {
      return FakeResponse::Json(
          400, R"({"error":{"code":400,"message":"bad Content-Range )" + range + "\"}}");
    }
    bool final_chunk = last + 1 == total;
    if (!final_chunk && r.body.size() % (256 * 1024) != 0) {
      return FakeResponse::Json(
          400, R"({"error":{"code":400,"message":"chunk not a multiple of 256 KiB"}})");
    }
    s.data += r.body;
    if (final_chunk) {
      Object o = s.meta;
      o.data = s.data;
      return Store(s.name, o);
    }
    incomplete.headers = {{"Range", "bytes=0-" + std::to_string(s.data.size() - 1)}};
    return incomplete;
  }

  FakeResponse Download(const FakeRequest& r, const Object& o) {
    if (r.HasQuery("generation") && std::stoll(r.Query("generation")) != o.generation) {
      return FakeResponse::Json(
          404,
          R"({"error":{"code":404,"message":"No such object generation","errors":[{"reason":"notFound"}]}})");
    }
    FakeResponse resp;
    resp.headers = {{"Content-Type", o.content_type}};
    if (send_generation_headers) {
      resp.headers.emplace_back("x-goog-generation", std::to_string(o.generation));
      resp.headers.emplace_back("x-goog-metageneration", "1");
      resp.headers.emplace_back("x-goog-stored-content-length", std::to_string(o.data.size()));
      for (const auto& [k, v] : o.metadata) {
        resp.headers.emplace_back("x-goog-meta-" + k, v);
      }
    }
    std::string range = r.Header("range");
    if (range.empty()) {
      resp.body = o.data;
      return resp;
    }
    int64_t first = 0, last = static_cast<int64_t>(o.data.size()) - 1;
    if (sscanf(range.c_str(), "bytes=%ld-%ld", &first, &last) < 1) {
      return FakeResponse::Json(400, "{}");
    }
    if (first >= static_cast<int64_t>(o.data.size())) {
      return FakeResponse::Json(
          416, R"({"error":{"code":416,"message":"Requested range not satisfiable"}})");
    }
    last = std::min<int64_t>(last, static_cast<int64_t>(o.data.size()) - 1);
    resp.status = 206;
    resp.body = o.data.substr(static_cast<size_t>(first), static_cast<size_t>(last - first + 1));
    return resp;
  }

  FakeResponse List(const FakeRequest& r) {
    std::string prefix = r.Query("prefix"), delimiter = r.Query("delimiter");
    size_t max = r.HasQuery("maxResults") ? std::stoul(r.Query("maxResults")) : 1000;
    std::string token = r.Query("pageToken");
    json items = json::array();
    std::vector<std::string> prefixes;
    std::string next;
    for (auto it = objects.lower_bound(token.empty() ? prefix : token); it != objects.end(); ++it) {
      const std::string& name = it->first;
      if (name.rfind(prefix, 0) != 0) {
        break;
      }
      if (!delimiter.empty()) {
        size_t d = name.find(delimiter, prefix.size());
        if (d != std::string::npos) {
          std::string p = name.substr(0, d + delimiter.size());
          if (prefixes.empty() || prefixes.back() != p) {
            prefixes.push_back(p);
          }
          continue;
        }
      }
      if (items.size() == max) {
        next = name;
        break;
      }
      items.push_back(Resource(name, it->second));
    }
    json page = {{"kind", "storage#objects"}, {"items", items}};
    if (!prefixes.empty()) {
      page["prefixes"] = prefixes;
    }
    if (!next.empty()) {
      page["nextPageToken"] = next;
    }
    return FakeResponse::Json(200, page.dump());
  }
};

class GcpStorage : public ::testing::Test {
 protected:
  GcpStorage()
      : server_([this](const FakeRequest& r) { return gcs_.Handle(r); }),
        sleeps_(std::make_shared<RecordedSleeps>()),
        http_(testing::TransportWithToken("tok", sleeps_)),
        client_(http_, [this] {
          Endpoints e;
          e.storage = server_.url();
          return e;
        }()) {
    gcs_.base = server_.url();
  }
  FakeGcs gcs_;
  FakeHttpServer server_;
  std::shared_ptr<RecordedSleeps> sleeps_;
  std::shared_ptr<HttpTransport> http_;
  StorageClient client_;
};

const std::string kOddName = "dir/sub dir/a+b%c?d#e&f=\xc3\xbc~.txt";

TEST_F(GcpStorage, MediaUploadEncodesTheNameAndPrecondition) {
  auto meta = client_.Insert("bkt", kOddName, "hello",
                             {.content_type = "text/plain", .if_generation_match = 0});
  ASSERT_TRUE(meta) << meta.error().message;
  EXPECT_EQ(meta->name, kOddName);
  EXPECT_EQ(meta->generation, 1001);
  EXPECT_EQ(meta->size, 5);
  EXPECT_EQ(meta->content_type, "text/plain");
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target,
            "/upload/storage/v1/b/bkt/"
            "o?uploadType=media&name=dir%2Fsub%20dir%2Fa%2Bb%25c%3Fd%23e%26f%3D%C3%BC~.txt&"
            "ifGenerationMatch=0");
  EXPECT_EQ(reqs[0].body, "hello");

  // The object exists now: create-only fails with a precondition conflict.
  auto again = client_.Insert("bkt", kOddName, "x", {.if_generation_match = 0});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_NE(again.error().message.find("precondition"), std::string::npos);
  EXPECT_NE(again.error().message.find("412 conditionNotMet"), std::string::npos);
  // With the generation read, the write goes through.
  auto update = client_.Insert("bkt", kOddName, "v2", {.if_generation_match = 1001});
  ASSERT_TRUE(update) << update.error().message;
  EXPECT_EQ(update->generation, 1002);
}

TEST_F(GcpStorage, PreconditionFailureAfterALostAnswerIsCheckedNotAssumed) {
  auto first = client_.Insert("bkt", "head", "v1", {.if_generation_match = 0});
  ASSERT_TRUE(first);
  EXPECT_EQ(first->md5_hash, Md5("v1"));
  // The write lands but its answer is lost; the retry then fails its precondition. The live
  // object is ours (same MD5): that is success.
  gcs_.lose_upload_answers = 1;
  auto second = client_.Insert("bkt", "head", "v2", {.if_generation_match = first->generation});
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->generation, first->generation + 1);
  // Same lost answer, but another writer got in between: a real conflict.
  gcs_.lose_upload_answers = 1;
  gcs_.fault = [&](const FakeRequest& r) -> std::optional<FakeResponse> {
    if (r.method == "GET" && r.path == "/storage/v1/b/bkt/o/head") {
      std::lock_guard lock(gcs_.mu);
      gcs_.objects["head"].data = "someone else";
      gcs_.objects["head"].generation = 5000;
    }
    return std::nullopt;
  };
  auto third = client_.Insert("bkt", "head", "v3", {.if_generation_match = second->generation});
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, ErrorCode::kConflict);
  EXPECT_NE(third.error().message.find("precondition"), std::string::npos);
}

TEST_F(GcpStorage, MultipartUploadCarriesMetadataAndBinaryData) {
  std::string data("bin\0ary\r\n--not-a-boundary\r\n", 27);
  auto meta = client_.Insert(
      "bkt", "snap/state.json", data,
      {.content_type = "application/json", .metadata = {{"session", "s1"}, {"exec", "e 2"}}});
  ASSERT_TRUE(meta) << meta.error().message;
  EXPECT_EQ(meta->metadata,
            (std::map<std::string, std::string>{{"session", "s1"}, {"exec", "e 2"}}));
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].Query("uploadType"), "multipart");
  std::lock_guard lock(gcs_.mu);
  EXPECT_EQ(gcs_.objects["snap/state.json"].data, data);
  EXPECT_EQ(gcs_.objects["snap/state.json"].content_type, "application/json");
}

TEST_F(GcpStorage, ResumableUploadSendsAlignedChunksAndResumesAfterAReset) {
  client_.set_chunk_size(256 * 1024);
  std::string data(600 * 1024, '\0');
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>(i * 7 + i / 1000);
  }
  std::atomic<int> puts{0};
  gcs_.fault = [&](const FakeRequest& r) -> std::optional<FakeResponse> {
    if (r.method != "PUT" || r.Header("content-range").rfind("bytes */", 0) == 0) {
      return std::nullopt;
    }
    int n = ++puts;
    if (n == 1) {
      return FakeResponse::Json(503, R"({"error":{"code":503,"message":"backend error"}})");
    }
    if (n == 3) {  // second chunk: the connection dies; the client must ask where it stands
      FakeResponse reset;
      reset.action = FakeResponse::Action::kReset;
      return reset;
    }
    return std::nullopt;
  };
  auto meta =
      client_.InsertResumable("bkt", "big.bin", data, {.content_type = "application/x-test"});
  ASSERT_TRUE(meta) << meta.error().message;
  EXPECT_EQ(meta->size, static_cast<int64_t>(data.size()));
  std::vector<std::string> ranges;
  for (const auto& r : server_.requests()) {
    if (r.method == "POST") {
      EXPECT_EQ(r.Query("uploadType"), "resumable");
      EXPECT_EQ(r.Header("x-upload-content-length"), "614400");
      EXPECT_EQ(r.Header("x-upload-content-type"), "application/x-test");
      EXPECT_EQ(json::parse(r.body)["name"], "big.bin");
    } else {
      ranges.push_back(r.Header("content-range"));
    }
  }
  EXPECT_EQ(ranges, (std::vector<std::string>{
                        "bytes 0-262143/614400", "bytes 0-262143/614400",  // 503, resent
                        "bytes 262144-524287/614400",                      // reset
                        "bytes */614400",                                  // where are we?
                        "bytes 262144-524287/614400", "bytes 524288-614399/614400"}));
  std::lock_guard lock(gcs_.mu);
  EXPECT_EQ(gcs_.objects["big.bin"].data, data);
}

TEST_F(GcpStorage, ResumableUploadThatMakesNoProgressEnds) {
  client_.set_chunk_size(256 * 1024);
  gcs_.fault = [](const FakeRequest& r) -> std::optional<FakeResponse> {
    if (r.method == "PUT") {
      FakeResponse stuck;
      stuck.status = 308;  // never acknowledges a byte
      return stuck;
    }
    return std::nullopt;
  };
  auto meta = client_.InsertResumable("bkt", "stuck", std::string(300 * 1024, 's'));
  ASSERT_FALSE(meta);
  EXPECT_EQ(meta.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(meta.error().message.find("no progress"), std::string::npos);
  EXPECT_LT(server_.requests().size(), 20u);
}

TEST_F(GcpStorage, UploadFileChoosesMediaOrResumableBySize) {
  client_.set_resumable_threshold(1024);
  client_.set_chunk_size(256 * 1024);
  char small_path[] = "/tmp/agentbox-gcp-small-XXXXXX";
  char big_path[] = "/tmp/agentbox-gcp-big-XXXXXX";
  int fd1 = mkstemp(small_path), fd2 = mkstemp(big_path);
  std::string big(300 * 1024, 'b');
  ASSERT_EQ(write(fd1, "small", 5), 5);
  ASSERT_EQ(write(fd2, big.data(), big.size()), static_cast<ssize_t>(big.size()));
  close(fd1);
  close(fd2);
  ASSERT_TRUE(client_.UploadFile("bkt", "s", small_path));
  ASSERT_TRUE(client_.UploadFile("bkt", "b", big_path));
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 4u);  // media; resumable start + 2 chunks
  EXPECT_EQ(reqs[0].Query("uploadType"), "media");
  EXPECT_EQ(reqs[1].Query("uploadType"), "resumable");
  auto missing = client_.UploadFile("bkt", "m", "/nonexistent/file");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  unlink(small_path);
  unlink(big_path);
  std::lock_guard lock(gcs_.mu);
  EXPECT_EQ(gcs_.objects["b"].data, big);
}

TEST_F(GcpStorage, ReadsWholeObjectsAndRanges) {
  ASSERT_TRUE(client_.Insert("bkt", "a b/c", "0123456789abcdef",
                             {.content_type = "text/plain", .metadata = {{"k", "v"}}}));
  auto whole = client_.Read("bkt", "a b/c");
  ASSERT_TRUE(whole) << whole.error().message;
  EXPECT_EQ(whole->data, "0123456789abcdef");
  EXPECT_EQ(whole->meta.generation, 1001);
  EXPECT_EQ(whole->meta.size, 16);
  EXPECT_EQ(whole->meta.content_type, "text/plain");
  EXPECT_EQ(whole->meta.metadata["k"], "v");
  auto part = client_.Read("bkt", "a b/c", ByteRange{10, 4});
  ASSERT_TRUE(part);
  EXPECT_EQ(part->data, "abcd");
  auto tail = client_.Read("bkt", "a b/c", ByteRange{12, std::nullopt});
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->data, "cdef");
  auto past = client_.Read("bkt", "a b/c", ByteRange{100, std::nullopt});
  ASSERT_TRUE(past) << past.error().message;
  EXPECT_EQ(past->data, "");
  EXPECT_EQ(past->meta.generation, 1001);
  auto reqs = server_.requests();
  EXPECT_EQ(reqs[1].target, "/storage/v1/b/bkt/o/a%20b%2Fc?alt=media");
  EXPECT_EQ(reqs[2].Header("range"), "bytes=10-13");
  EXPECT_EQ(reqs[3].Header("range"), "bytes=12-");
  auto missing = client_.Read("bkt", "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message, "Cloud Storage: 404 notFound: No such object: bkt/nope");
}

TEST_F(GcpStorage, StreamedReadResumesABrokenTransferFromTheLastByte) {
  std::string data(100000, '\0');
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>('a' + i % 26);
  }
  ASSERT_TRUE(client_.Insert("bkt", "stream", data));
  std::atomic<int> gets{0};
  gcs_.fault = [&](const FakeRequest& r) -> std::optional<FakeResponse> {
    if (r.Query("alt") != "media" || ++gets != 1) {
      return std::nullopt;
    }
    FakeResponse partial;
    partial.headers = {{"x-goog-generation", "1001"}};
    partial.body = data;
    partial.action = FakeResponse::Action::kPartialAndClose;
    partial.partial_bytes = 40000;
    return partial;
  };
  std::string got;
  int chunks = 0;
  auto meta = client_.ReadTo("bkt", "stream", [&](std::string_view b) {
    got.append(b);
    ++chunks;
    return true;
  });
  ASSERT_TRUE(meta) << meta.error().message;
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
  EXPECT_GE(chunks, 2);
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[2].Header("range"), "bytes=40000-");
  EXPECT_EQ(reqs[2].Query("generation"), "1001");  // pinned: never mixes two generations

  // A reader that stops early ends the call without retries.
  auto stopped = client_.ReadTo("bkt", "stream", [](std::string_view) { return false; });
  ASSERT_FALSE(stopped);
  EXPECT_NE(stopped.error().message.find("aborted"), std::string::npos);
}

TEST_F(GcpStorage, ServerIgnoringRangeStillYieldsTheRange) {
  ASSERT_TRUE(client_.Insert("bkt", "r", "0123456789"));
  gcs_.fault = [&](const FakeRequest& r) -> std::optional<FakeResponse> {
    if (r.Query("alt") != "media") {
      return std::nullopt;
    }
    FakeResponse whole;  // 200 and every byte, whatever the Range said
    whole.headers = {{"x-goog-generation", "1001"}};
    whole.body = "0123456789";
    return whole;
  };
  auto part = client_.Read("bkt", "r", ByteRange{3, 4});
  ASSERT_TRUE(part) << part.error().message;
  EXPECT_EQ(part->data, "3456");
  auto tail = client_.Read("bkt", "r", ByteRange{7, std::nullopt});
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->data, "789");
}

TEST_F(GcpStorage, ServiceWithoutGenerationHeadersIsReadConsistently) {
  gcs_.send_generation_headers = false;
  ASSERT_TRUE(client_.Insert("bkt", "o", "data"));
  auto first = client_.Read("bkt", "o");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->meta.generation, 1001);
  auto second = client_.Read("bkt", "o");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->data, "data");
  auto reqs = server_.requests();
  // From the second read on, metadata first and the download pinned to its generation.
  ASSERT_GE(reqs.size(), 3u);
  EXPECT_EQ(reqs[reqs.size() - 2].target, "/storage/v1/b/bkt/o/o");
  EXPECT_EQ(reqs.back().target, "/storage/v1/b/bkt/o/o?alt=media&generation=1001");
}

TEST_F(GcpStorage, ListFollowsPagesAndSplitsPrefixes) {
  for (const char* name : {"p/a", "p/b", "p/c", "p/d/1", "p/d/2", "p/e", "q/z"}) {
    ASSERT_TRUE(client_.Insert("bkt", name, name));
  }
  auto page = client_.List("bkt", {.prefix = "p/", .delimiter = "/", .max_results = 2});
  ASSERT_TRUE(page) << page.error().message;
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(page->next_page_token, "p/c");
  auto all = client_.ListAll("bkt", "p/", "/");
  ASSERT_TRUE(all);
  std::vector<std::string> names;
  for (const auto& o : all->items) {
    names.push_back(o.name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"p/a", "p/b", "p/c", "p/e"}));
  EXPECT_EQ(all->prefixes, (std::vector<std::string>{"p/d/"}));
  EXPECT_EQ(all->items[0].size, 3);
  auto reqs = server_.requests();
  EXPECT_EQ(reqs[7].target, "/storage/v1/b/bkt/o?prefix=p%2F&delimiter=%2F&maxResults=2");
}

TEST_F(GcpStorage, ListAllPaginatesWithTokens) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(client_.Insert("bkt", "x/" + std::to_string(i), "v"));
  }
  // Force small pages server-side.
  gcs_.fault = [&](const FakeRequest& r) -> std::optional<FakeResponse> {
    if (r.method == "GET" && r.path == "/storage/v1/b/bkt/o" && !r.HasQuery("maxResults")) {
      FakeRequest copy = r;  // Handle() consults the fault again: the copy has maxResults
      copy.query += "&maxResults=2";
      return gcs_.Handle(copy);
    }
    return std::nullopt;
  };
  auto all = client_.ListAll("bkt", "x/");
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all->items.size(), 5u);
  int list_calls = 0;
  std::vector<std::string> tokens;
  for (const auto& r : server_.requests()) {
    if (r.method == "GET") {
      ++list_calls;
      tokens.push_back(r.Query("pageToken"));
    }
  }
  EXPECT_EQ(list_calls, 3);
  EXPECT_EQ(tokens, (std::vector<std::string>{"", "x/2", "x/4"}));
}

TEST_F(GcpStorage, DeleteHonoursGenerationAndDeletePrefixSweeps) {
  ASSERT_TRUE(client_.Insert("bkt", "d/1", "a"));
  ASSERT_TRUE(client_.Insert("bkt", "d/2", "b"));
  ASSERT_TRUE(client_.Insert("bkt", "keep", "c"));
  auto stale = client_.Delete("bkt", "d/1", 999);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kConflict);
  EXPECT_NE(stale.error().message.find("precondition"), std::string::npos);
  ASSERT_TRUE(client_.Delete("bkt", "d/1", 1001));
  EXPECT_EQ(server_.requests().back().target, "/storage/v1/b/bkt/o/d%2F1?ifGenerationMatch=1001");
  auto gone = client_.Delete("bkt", "d/1");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
  // A delete that lands but whose answer is lost: the retry's 404 means done.
  ASSERT_TRUE(client_.Insert("bkt", "d/lost", "x"));
  std::atomic<int> deletes{0};
  gcs_.fault = [&](const FakeRequest& r) -> std::optional<FakeResponse> {
    if (r.method == "DELETE" && ++deletes == 1) {
      FakeResponse lost = gcs_.Dispatch(r);  // deleted...
      EXPECT_EQ(lost.status, 204);
      return FakeResponse::Json(503, "{}");  // ...but the answer says otherwise
    }
    return std::nullopt;
  };
  EXPECT_TRUE(client_.Delete("bkt", "d/lost"));
  EXPECT_EQ(deletes.load(), 2);
  gcs_.fault = nullptr;
  ASSERT_TRUE(client_.Insert("bkt", "d/3", "x"));
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(client_.Insert("bkt", "d/many/" + std::to_string(i), "x"));
  }
  auto n = client_.DeletePrefix("bkt", "d/");
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, 42u);
  {
    std::lock_guard lock(gcs_.mu);
    EXPECT_EQ(gcs_.objects.size(), 1u);
  }
  // A failure other than "already gone" is reported.
  ASSERT_TRUE(client_.Insert("bkt", "e/1", "x"));
  gcs_.fault = [](const FakeRequest& r) -> std::optional<FakeResponse> {
    if (r.method == "DELETE") {
      return FakeResponse::Json(
          403,
          R"({"error":{"code":403,"message":"no storage.objects.delete access","errors":[{"reason":"forbidden"}]}})");
    }
    return std::nullopt;
  };
  auto denied = client_.DeletePrefix("bkt", "e/");
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ErrorCode::kForbidden);
}

TEST_F(GcpStorage, RetriesTransientFailuresAndReportsPermanentOnes) {
  std::atomic<int> n{0};
  gcs_.fault = [&](const FakeRequest& r) -> std::optional<FakeResponse> {
    if (r.method == "GET" && ++n <= 2) {
      auto busy = FakeResponse::Json(
          429,
          R"({"error":{"code":429,"message":"slow down","errors":[{"reason":"rateLimitExceeded"}]}})");
      busy.headers.emplace_back("Retry-After", "1");
      return busy;
    }
    if (r.path == "/storage/v1/b/forbidden") {
      return FakeResponse::Json(
          403,
          R"({"error":{"code":403,"message":"sa@p.iam.gserviceaccount.com does not have storage.buckets.get access to the Google Cloud Storage bucket.","errors":[{"reason":"forbidden"}]}})");
    }
    return std::nullopt;
  };
  auto bucket = client_.GetBucket("bkt");
  ASSERT_TRUE(bucket) << bucket.error().message;
  EXPECT_EQ((*bucket)["name"], "bkt");
  auto waits = sleeps_->Get();
  ASSERT_EQ(waits.size(), 2u);
  EXPECT_GE(waits[0], std::chrono::milliseconds(1000));
  auto denied = client_.GetBucket("forbidden");
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ErrorCode::kForbidden);
  EXPECT_NE(denied.error().message.find("missing permission storage.buckets.get"),
            std::string::npos);
  EXPECT_NE(denied.error().message.find("Cloud Storage: 403 forbidden"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::gcp
