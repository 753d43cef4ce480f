#pragma once

// What the port suites share (ports_test.cc, ports_tls_test.cc): agentboxd started on one
// backend with a unix socket, a TCP and a TLS listener; curl and raw (optionally TLS) clients;
// the fixture that uploads port_test_server into a sandbox and starts it.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fakes/child_process.h"
#include "fakes/curl_http.h"
#include "fakes/per_backend.h"
#include "gcp_emulator.h"
#include "png_pixels.h"
#include "ws_util.h"

namespace agentbox::ports_test {

using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr int kPort = 18080;        // where port_test_server listens inside the sandbox
constexpr const char* kDomain = "ports.test";
constexpr const char* kAliceKey = "alice-port-key";
constexpr const char* kBobKey = "bob-port-key";
constexpr const char* kServerPath = "/workspace/.port_test_server";

struct Reply {
  long status = 0;
  std::string body;
  std::string headers;
  long connects = -1;  // new connections curl opened for this request
  Json json() const { return Json::parse(body, nullptr, false); }
};

using test_support::Collect;
using test_support::FreePort;

// One request on `c` (a handle kept between calls keeps its connection alive).
struct Request {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;
  std::string body;
  bool chunked = false;     // send the body with Transfer-Encoding: chunked
  std::string unix_socket;  // instead of TCP
  std::string ca_file;      // https: the certificate to trust
};

struct ChunkedBody {
  const std::string* data;
  size_t off = 0;
};

inline size_t ReadBody(char* out, size_t size, size_t n, void* p) {
  auto* b = static_cast<ChunkedBody*>(p);
  const size_t take = std::min(size * n, std::min<size_t>(b->data->size() - b->off, 65521));
  std::memcpy(out, b->data->data() + b->off, take);
  b->off += take;
  return take;
}

inline Reply Perform(CURL* c, const Request& r) {
  Reply out;
  curl_easy_reset(c);
  curl_slist* h = nullptr;
  for (const auto& x : r.headers) {
    h = curl_slist_append(h, x.c_str());
  }
  ChunkedBody source{&r.body};
  if (!r.unix_socket.empty()) {
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, r.unix_socket.c_str());
  }
  curl_easy_setopt(c, CURLOPT_URL, r.url.c_str());
  if (!r.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, r.ca_file.c_str());
  }
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  if (r.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  }
  if (r.chunked) {
    h = curl_slist_append(h, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadBody);
    curl_easy_setopt(c, CURLOPT_READDATA, &source);
  } else if (r.method == "POST" || r.method == "PUT") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, r.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &out.headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
  const CURLcode rc = curl_easy_perform(c);
  EXPECT_EQ(rc, CURLE_OK) << r.method << " " << r.url << ": " << curl_easy_strerror(rc);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &out.connects);
  curl_slist_free_all(h);
  return out;
}

// agentboxd on one backend, with a unix socket, a TCP and a TLS listener (a self-signed
// certificate for 127.0.0.1 made with the openssl CLI), two API keys and
// AGENTBOX_DOMAIN = ports.test:<tcp port>. Restart() stops it and starts it again over the same
// state directory, as an operator restarting agentboxd does.
class Daemon {
 public:
  explicit Daemon(const std::string& backend) : backend_(backend) {
    char tmpl[] = "/tmp/agentbox-ports-XXXXXX";
    if (!mkdtemp(tmpl)) {
      return;
    }
    dir_ = tmpl;
    socket_ = dir_ + "/agentboxd.sock";
    tcp_port_ = FreePort();
    tls_port_ = FreePort();
    cert_ = dir_ + "/tls.crt";
    const std::string key = dir_ + "/tls.key";
    const std::string openssl =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '" + key + "' -out '" +
        cert_ + "' >'" + dir_ + "/openssl.log' 2>&1";
    if (system(openssl.c_str()) != 0) {
      return;
    }
    // cloudrun-session: the cloudrun backend in session mode over a private emulator; the
    // executions' guests dial back to the TCP listener.
    std::string backend_conf;
    std::string daemon_backend = backend_;
    if (backend_ == "cloudrun-session") {
      daemon_backend = "cloudrun";
      backend_conf =
          StartGcpEmulator(dir_, "http://127.0.0.1:" + std::to_string(tcp_port_), &emulator_pid_);
      if (backend_conf.empty()) {
        return;
      }
    }
    const std::string conf = dir_ + "/agentboxd.conf";
    std::ofstream(conf) << backend_conf << "AGENTBOX_API_KEYS=alice:" << kAliceKey << ",bob:" << kBobKey
                        << "\nAGENTBOX_DOMAIN=" << kDomain << ":" << tcp_port_
                        << "\nAGENTBOX_WARM_POOL_SIZE=0\nAGENTBOX_TLS_CERT=" << cert_
                        << "\nAGENTBOX_TLS_KEY=" << key << "\n";
    args_ = {AGENTBOXD_BIN,  "--listen",
             "unix:" + socket_, "--listen",
             "tcp:127.0.0.1:" + std::to_string(tcp_port_), "--listen",
             "tls:127.0.0.1:" + std::to_string(tls_port_), "--state-dir",
             dir_ + "/state",  "--backend",
             daemon_backend,   "--env-file",
             "/dev/null",      "--config",
             conf};
    Launch();
  }
  ~Daemon() {
    Stop();
    test_support::Stop(emulator_pid_);
    if (!dir_.empty()) {
      int rc = system(("rm -rf '" + dir_ + "' 2>/dev/null").c_str());
      (void)rc;
    }
  }
  // SIGTERM (agentboxd drains and exits; sandboxes keep running), then the same command again.
  bool Restart() {
    Stop();
    Launch();
    return ready_;
  }
  bool ready() const { return ready_; }
  int tcp_port() const { return tcp_port_; }
  int tls_port() const { return tls_port_; }
  const std::string& ca_file() const { return cert_; }
  const std::string& socket() const { return socket_; }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(tcp_port_) + path;
  }
  std::string TlsUrl(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(tls_port_) + path;
  }
  // `{port}-{id}.ports.test:<tcp port>`: a name curl and Chromium are told resolves to 127.0.0.1.
  std::string Host(const std::string& id, int port) const {
    return std::to_string(port) + "-" + id + "." + kDomain + ":" + std::to_string(tcp_port_);
  }
  std::string log() const { return test_support::ReadLog(dir_ + "/agentboxd.log"); }

 private:
  void Launch() {
    pid_ = test_support::Spawn(args_, dir_ + "/agentboxd.log");
    ready_ = test_support::PollUntil(
        20s, [&] { return test_support::CurlHttp("", "GET", Url("/healthz")).status == 200; });
  }
  void Stop() { test_support::Stop(pid_); }

  std::string backend_;
  std::string dir_;
  std::string socket_;
  std::string cert_;
  std::vector<std::string> args_;
  int tcp_port_ = -1;
  int tls_port_ = -1;
  pid_t pid_ = -1;
  pid_t emulator_pid_ = -1;
  bool ready_ = false;
};

inline Daemon& DaemonFor(const std::string& backend) {
  return test_support::DaemonFor<Daemon>(backend);
}

inline std::vector<std::string> Backends() {
  std::vector<std::string> out;
  for (const auto& b : test_support::ConformanceBackends(AGENTBOX_CONFORMANCE_DEFAULT)) {
    // The port relay needs a guest that stays up; job-mode cloudrun has none (its 503 is
    // documented), and the tunnel has a suite of its own.
    if (b != "cloudrun" && b != "tunnel") {
      out.push_back(b);
    }
  }
  return out;
}

inline std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  }
  return s;
}

// A raw TCP connection to agentboxd, for WebSockets; with `tls`, over TLS (the certificate is
// not checked: curl's tests check it; this one is about the bytes through the relay).
class RawConn {
 public:
  explicit RawConn(int port, bool tls = false) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    timeval tv{30, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (ok_ && tls) {
      ctx_ = SSL_CTX_new(TLS_client_method());
      ssl_ = SSL_new(ctx_);
      SSL_set_fd(ssl_, fd_);
      ok_ = SSL_connect(ssl_) == 1;
    }
  }
  ~RawConn() {
    if (ssl_) {
      SSL_free(ssl_);
    }
    if (ctx_) {
      SSL_CTX_free(ctx_);
    }
    ::close(fd_);
  }
  bool ok() const { return ok_; }
  bool Write(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ssl_ ? SSL_write(ssl_, s.data() + off, static_cast<int>(s.size() - off))
                             : ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }
  bool Need(size_t n) {
    char tmp[65536];
    while (buf_.size() < n) {
      const ssize_t r = ssl_ ? SSL_read(ssl_, tmp, sizeof(tmp)) : ::read(fd_, tmp, sizeof(tmp));
      if (r <= 0) {
        return false;
      }
      buf_.append(tmp, static_cast<size_t>(r));
    }
    return true;
  }
  // The response head (up to the blank line), or "" when the connection ended first.
  std::string Head() {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Need(buf_.size() + 1)) {
        return "";
      }
    }
    std::string h = buf_.substr(0, end + 4);
    buf_.erase(0, end + 4);
    return h;
  }
  std::string Rest() {
    Need(SIZE_MAX);  // until the connection ends
    return buf_;
  }
  // Sends one masked frame.
  bool SendFrame(int opcode, const std::string& payload) {
    std::string f;
    f += static_cast<char>(0x80 | opcode);
    if (payload.size() < 126) {
      f += static_cast<char>(0x80 | payload.size());
    } else if (payload.size() < 65536) {
      f += static_cast<char>(0x80 | 126);
      f += static_cast<char>(payload.size() >> 8);
      f += static_cast<char>(payload.size() & 0xff);
    } else {
      f += static_cast<char>(0x80 | 127);
      for (int i = 7; i >= 0; --i) {
        f += static_cast<char>((uint64_t(payload.size()) >> (i * 8)) & 0xff);
      }
    }
    const char mask[4] = {0x12, 0x34, 0x56, 0x78};
    f.append(mask, 4);
    for (size_t i = 0; i < payload.size(); ++i) {
      f += static_cast<char>(payload[i] ^ mask[i % 4]);
    }
    return Write(f);
  }
  // Reads one unmasked frame: {opcode, payload}, or opcode -1.
  std::pair<int, std::string> ReadFrame() {
    if (!Need(2)) {
      return {-1, ""};
    }
    const int opcode = uint8_t(buf_[0]) & 0x0f;
    uint64_t len = uint8_t(buf_[1]) & 0x7f;
    size_t off = 2;
    if (len == 126) {
      if (!Need(4)) {
        return {-1, ""};
      }
      len = (uint64_t(uint8_t(buf_[2])) << 8) | uint8_t(buf_[3]);
      off = 4;
    } else if (len == 127) {
      if (!Need(10)) {
        return {-1, ""};
      }
      len = 0;
      for (int i = 0; i < 8; ++i) {
        len = (len << 8) | uint8_t(buf_[2 + i]);
      }
      off = 10;
    }
    if (!Need(off + len)) {
      return {-1, ""};
    }
    std::string p = buf_.substr(off, len);
    buf_.erase(0, off + len);
    return {opcode, p};
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string buf_;
};

class Ports : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    daemon_ = &DaemonFor(GetParam());
    ASSERT_TRUE(daemon_->ready()) << "agentboxd for " << GetParam() << " did not start:\n"
                                  << daemon_->log();
    curl_ = curl_easy_init();
    Reply r = Api("POST", "/v1/sandboxes", R"({"ttl_s":600,"labels":{"suite":"ports"}})");
    ASSERT_EQ(r.status, 201) << r.body << "\n" << daemon_->log();
    id_ = r.json()["data"]["id"];
    StartServer();
  }
  void TearDown() override {
    if (!id_.empty()) {
      EXPECT_EQ(Api("DELETE", "/v1/sandboxes/" + id_).status, 200);
    }
    curl_easy_cleanup(curl_);
  }

  // A call of the native API with alice's key (on its own connection).
  Reply Api(const std::string& method, const std::string& path, const std::string& body = "") {
    CURL* c = curl_easy_init();
    Request r;
    r.method = method;
    r.url = daemon_->Url(path);
    r.headers = {std::string("Authorization: Bearer ") + kAliceKey,
                 "Content-Type: application/json"};
    r.body = body;
    Reply out = Perform(c, r);
    curl_easy_cleanup(c);
    return out;
  }

  // Uploads port_test_server into the sandbox and starts it; waits until it answers.
  void StartServer() {
    std::ifstream in(PORT_TEST_SERVER_BIN, std::ios::binary);
    ASSERT_TRUE(in) << "cannot read " << PORT_TEST_SERVER_BIN;
    std::stringstream bin;
    bin << in.rdbuf();
    const std::string b = "portsBoundary";
    const std::string body = "--" + b +
                             "\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n" +
                             kServerPath + "\r\n--" + b +
                             "\r\nContent-Disposition: form-data; name=\"file\"; "
                             "filename=\"s\"\r\n\r\n" +
                             bin.str() + "\r\n--" + b + "--\r\n";
    CURL* c = curl_easy_init();
    Request up;
    up.method = "POST";
    up.url = daemon_->Url("/v1/sandboxes/" + id_ + "/api/v1/file/upload");
    up.headers = {std::string("Authorization: Bearer ") + kAliceKey,
                  "Content-Type: multipart/form-data; boundary=" + b};
    up.body = body;
    Reply u = Perform(c, up);
    curl_easy_cleanup(c);
    ASSERT_EQ(u.status, 200) << u.body;
    Reply chmod = Api("POST", "/v1/sandboxes/" + id_ + "/api/v1/shell/exec",
                      Json{{"id", "setup"},
                           {"command", std::string("chmod 755 ") + kServerPath},
                           {"wait_seconds", 30}}
                          .dump());
    ASSERT_EQ(chmod.status, 200) << chmod.body;
    Reply start = Api("POST", "/v1/sandboxes/" + id_ + "/api/v1/process/start",
                      Json{{"command", std::string(kServerPath) + " " + std::to_string(kPort)}}
                          .dump());
    ASSERT_EQ(start.status, 200) << start.body;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    Reply r;
    while (std::chrono::steady_clock::now() < deadline) {
      r = Port("GET", "/ready");
      if (r.status == 200) {
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "port_test_server did not answer through the relay: " << r.status << " " << r.body
           << "\n" << daemon_->log();
  }

  std::string PathUrl(const std::string& rest, int port = kPort) const {
    return daemon_->Url("/v1/sandboxes/" + id_ + "/ports/" + std::to_string(port) + rest);
  }
  // By path, with alice's key, on the fixture's kept-alive connection.
  Reply Port(const std::string& method, const std::string& rest, const std::string& body = "",
             std::vector<std::string> headers = {}, bool chunked = false) {
    Request r;
    r.method = method;
    r.url = PathUrl(rest);
    headers.push_back(std::string("Authorization: Bearer ") + kAliceKey);
    r.headers = headers;
    r.body = body;
    r.chunked = chunked;
    return Perform(curl_, r);
  }
  // By host name: `Host: {port}-{id}.ports.test:<tcp port>` on a connection to 127.0.0.1.
  Reply ByHost(const std::string& rest, std::vector<std::string> headers, int port = kPort) {
    Request r;
    r.url = daemon_->Url(rest);
    headers.push_back("Host: " + daemon_->Host(id_, port));
    r.headers = headers;
    return Perform(curl_, r);
  }
  std::string Token(int port = kPort) {
    Reply r = Api("GET", "/v1/sandboxes/" + id_ + "/ports/" + std::to_string(port));
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json()["data"].value("access_token", "");
  }

  Daemon* daemon_ = nullptr;
  CURL* curl_ = nullptr;
  std::string id_;
};

// Upgrades to a WebSocket at `target` with `host` and echoes a text, a 70 kB binary frame and a
// ping, then closes.
inline void WebSocketRoundTrip(int daemon_port, const std::string& target, const std::string& host,
                               bool tls = false) {
  RawConn c(daemon_port, tls);
  ASSERT_TRUE(c.ok());
  const std::string key = Base64("0123456789abcdef");
  ASSERT_TRUE(c.Write("GET " + target + " HTTP/1.1\r\nHost: " + host +
                      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                      "\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer " + kAliceKey +
                      "\r\n\r\n"));
  const std::string head = c.Head();
  ASSERT_TRUE(head.starts_with("HTTP/1.1 101")) << head;
  EXPECT_NE(head.find(WebSocketAccept(key)), std::string::npos) << head;
  ASSERT_TRUE(c.SendFrame(1, "hello through the relay"));
  auto f = c.ReadFrame();
  EXPECT_EQ(f.first, 1);
  EXPECT_EQ(f.second, "hello through the relay");
  const std::string big = Pattern(70000);
  ASSERT_TRUE(c.SendFrame(2, big));
  f = c.ReadFrame();
  EXPECT_EQ(f.first, 2);
  EXPECT_TRUE(f.second == big) << f.second.size();
  ASSERT_TRUE(c.SendFrame(9, "ping"));
  f = c.ReadFrame();
  EXPECT_EQ(f.first, 10);
  ASSERT_TRUE(c.SendFrame(8, ""));
  f = c.ReadFrame();
  EXPECT_EQ(f.first, 8);
}

}  // namespace agentbox::ports_test
