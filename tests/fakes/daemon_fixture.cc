#include "fakes/daemon_fixture.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>

#include "http/envelope.h"

namespace agentbox::fakes {

namespace {

size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

}  // namespace

void DaemonFixture::SetUp() {
  char tmpl[] = "/tmp/agentbox-daemon-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
  backend_ = std::make_unique<ProcessBackend>(AGENTBOX_GUEST_BIN, dir_ + "/state");
  options_.default_backend = "process";
  options_.spool_dir = dir_;
  decorator_ = Decorate(*backend_);
  unix_sock_ = dir_ + "/agentboxd.sock";
  StartDaemon();
  thread_ = std::thread([this] { io_.run(); });
}

void DaemonFixture::RestartDaemon(const std::function<void()>& between) {
  // The old daemon stops serving and drains, then is kept (idle) until TearDown: its I/O
  // objects may still have handlers queued on io_, which must not outlive what they point to.
  server_->Stop();
  api_->BeginDrain();
  for (int i = 0; i < 500 && api_->in_flight() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  retired_servers_.push_back(std::move(server_));
  retired_apis_.push_back(std::move(api_));
  if (between) {
    between();
  }
  StartDaemon();
}

void DaemonFixture::StartDaemon() {
  api_ = std::make_unique<daemon::DaemonApi>(
      io_,
      std::map<std::string, SandboxBackend*>{
          {"process", decorator_ ? decorator_.get() : backend_.get()}},
      daemon::ApiKeys(kFixtureApiKeys), options_);
  api_->Start();
  http::ServerOptions so;
  so.max_body_bytes = 1 << 20;
  so.error_body = &http::ErrorBody;
  so.upgrade = upgrade_;
  so.tls = tls_;
  server_ = std::make_unique<http::Server>(io_, *api_, so);
  ::unlink(unix_sock_.c_str());
  ASSERT_TRUE(server_->Listen("unix:" + unix_sock_));
  auto tcp = server_->Listen("tcp:127.0.0.1:0");
  ASSERT_TRUE(tcp);
  tcp_base_ = "http://" + tcp->substr(4);
  if (tls_) {
    auto tls = server_->Listen("tls:127.0.0.1:0");
    ASSERT_TRUE(tls) << tls.error().message;
    tls_base_ = "https://" + tls->substr(4);
  }
}

void DaemonFixture::TearDown() {
  if (server_) {
    server_->Stop();
  }
  work_.reset();
  io_.stop();
  if (thread_.joinable()) {
    thread_.join();
  }
  api_.reset();
  retired_servers_.clear();
  retired_apis_.clear();
  decorator_.reset();
  backend_.reset();
  if (!dir_.empty()) {
    ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0);
  }
}

HttpReply DaemonFixture::Call(const std::string& method, const std::string& path,
                              const std::string& body, const std::string& key,
                              std::vector<std::string> headers) {
  CURL* c = curl_easy_init();
  HttpReply r;
  std::string url;
  if (key.empty()) {
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_sock_.c_str());
    url = "http://agentboxd" + path;
  } else {
    url = tcp_base_ + path;
    if (key != "-") {
      headers.push_back("Authorization: Bearer " + key);
    }
  }
  curl_slist* hdrs = nullptr;
  for (auto& h : headers) {
    hdrs = curl_slist_append(hdrs, h.c_str());
  }
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!body.empty() || method == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  EXPECT_EQ(curl_easy_perform(c), CURLE_OK) << method << " " << path;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  char* ct = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) {
    r.content_type = ct;
  }
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  r.json = Json::parse(r.body, nullptr, false);
  return r;
}

std::string DaemonFixture::CreateAs(const std::string& key, const std::string& body) {
  HttpReply r = Call("POST", "/v1/sandboxes", body, key);
  EXPECT_EQ(r.status, 201) << r.body;
  if (r.status != 201 || !r.json.is_object()) {
    return "";
  }
  return r.json["data"]["id"].get<std::string>();
}

void DaemonFixture::UploadThenDownload(const std::string& id, const std::string& key,
                                       const std::string& path, const std::string& blob,
                                       const std::string& boundary, HttpReply* down) {
  HttpReply up = Call("POST", "/v1/sandboxes/" + id + "/api/v1/file/upload",
                      MultipartUpload(boundary, path, blob), key,
                      {"Content-Type: multipart/form-data; boundary=" + boundary});
  ASSERT_EQ(up.status, 200) << up.body;
  EXPECT_EQ(up.json["data"]["file_size"], blob.size());
  *down = Call("GET", "/v1/sandboxes/" + id + "/api/v1/file/download?path=" + path, "", key);
  ASSERT_EQ(down->status, 200);
  EXPECT_EQ(down->body.size(), blob.size());
  EXPECT_TRUE(down->body == blob);
}

std::string DaemonFixture::ReadEvents(const std::string& path, const std::string& stop) {
  struct Ctx {
    std::string body;
    std::string stop;
  } ctx{"", stop};
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, unix_sock_.c_str());
  curl_easy_setopt(c, CURLOPT_URL, ("http://agentboxd" + path).c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char* p, size_t sz, size_t n, void* out) {
        auto* x = static_cast<Ctx*>(out);
        x->body.append(p, sz * n);
        return x->body.find(x->stop) != std::string::npos ? size_t{0} : sz * n;
      });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
  curl_easy_perform(c);
  curl_easy_cleanup(c);
  return ctx.body;
}

}  // namespace agentbox::fakes
