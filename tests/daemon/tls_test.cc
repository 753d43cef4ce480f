// TLS end to end, with a CA and server certificates made by the test (fakes/test_certs.h):
// the daemon's API over https:// (REST, uploads, downloads, the SSE stream, the tunnel endpoint),
// guests that dial wss:// and verify the daemon's certificate and name, plain HTTP sent to the
// TLS port, agentboxd's start-up errors for certificates, and the CLI over https://.
#include "http/tls.h"

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "daemon/tunnel_endpoint.h"
#include "fakes/daemon_fixture.h"
#include "fakes/test_certs.h"
#include "fakes/tunnel_backend.h"
#include "http/envelope.h"

namespace agentbox::daemon {
namespace {

using Reply = fakes::HttpReply;
using Clock = std::chrono::steady_clock;

size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `cmd` through the shell; returns its exit status and what it printed (stdout and stderr).
int RunShell(const std::string& cmd, std::string* out) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    return -1;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) {
    out->append(buf, n);
  }
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class TlsTest : public fakes::DaemonFixture {
 protected:
  SandboxBackendPtr Decorate(fakes::ProcessBackend&) override {
    auto ca = fakes::MakeTestCa(dir_, "ca");
    auto other = fakes::MakeTestCa(dir_, "other-ca");
    EXPECT_TRUE(ca && other);
    ca_ = *ca;
    other_ca_ = *other;
    auto cert = fakes::MakeTestServerCert(ca_, dir_, "server", {"127.0.0.1"}, {});
    EXPECT_TRUE(cert);
    cert_ = *cert;
    auto ctx = http::MakeServerTlsContext(cert_.cert_file, cert_.key_file);
    EXPECT_TRUE(ctx) << ctx.error().message;
    tls_ = *ctx;
    TunnelEndpoint::Options o;
    o.socket_dir = dir_ + "/tunnels";
    endpoint_ = std::make_unique<TunnelEndpoint>(io_, o);
    upgrade_ = [this](http::Request req, http::UpgradedSocket s) {
      endpoint_->Upgrade(std::move(req), std::move(s));
    };
    fakes::TunnelBackendOptions bo;
    bo.ca_file = ca_.cert_file;
    auto b = std::make_unique<fakes::TunnelBackend>(
        AGENTBOX_GUEST_BIN, dir_ + "/tunnel-state", *endpoint_,
        [this] { return "wss://" + tls_base_.substr(8) + "/v1/tunnel"; }, bo);
    return b;
  }

  // `method path` over https:// with `key`, verifying the daemon against `ca_file`.
  Reply CallTls(const std::string& method, const std::string& path, const std::string& body = "",
                std::vector<std::string> headers = {}, CURLcode* rc_out = nullptr,
                const std::string& base = "", const std::string& stop = "") {
    CURL* c = curl_easy_init();
    Reply r;
    headers.push_back("Authorization: Bearer key-alice");
    curl_slist* h = nullptr;
    for (const auto& x : headers) {
      h = curl_slist_append(h, x.c_str());
    }
    curl_easy_setopt(c, CURLOPT_URL, ((base.empty() ? tls_base_ : base) + path).c_str());
    curl_easy_setopt(c, CURLOPT_CAINFO, ca_.cert_file.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (!body.empty() || method == "POST") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    struct Sink {
      std::string* body;
      const std::string* stop;
    } sink{&r.body, &stop};
    // With `stop` (an event stream), the transfer ends once it arrived.
    curl_easy_setopt(
        c, CURLOPT_WRITEFUNCTION, +[](char* p, size_t sz, size_t n, void* out) {
          auto* k = static_cast<Sink*>(out);
          k->body->append(p, sz * n);
          return !k->stop->empty() && k->body->find(*k->stop) != std::string::npos ? size_t{0}
                                                                                   : sz * n;
        });
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    CURLcode rc = curl_easy_perform(c);
    if (!stop.empty() && rc == CURLE_WRITE_ERROR && r.body.find(stop) != std::string::npos) {
      rc = CURLE_OK;
    }
    if (rc_out) {
      *rc_out = rc;
    } else {
      EXPECT_EQ(rc, CURLE_OK) << method << " " << path << ": " << curl_easy_strerror(rc);
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r.json = Json::parse(r.body, nullptr, false);
    return r;
  }

  // Starts a guest that dials `url` for a sandbox registered here (not through the backend) and
  // returns its pid; its stderr goes to `log`.
  pid_t StartGuest(const std::string& id, const std::string& url, const std::string& ca_file,
                   const std::string& log) {
    auto reg = endpoint_->Register(id);
    EXPECT_TRUE(reg);
    const std::string tok = dir_ + "/" + id + ".token";
    std::ofstream(tok) << reg->token << "\n";
    const pid_t pid = ::fork();
    if (pid == 0) {
      FILE* f = std::freopen(log.c_str(), "w", stderr);
      (void)f;
      ::execl(AGENTBOX_GUEST_BIN, AGENTBOX_GUEST_BIN, "serve", "--connect", url.c_str(),
              "--ca-file", ca_file.c_str(), "--token-file", tok.c_str(), "--workdir", "/tmp",
              nullptr);
      ::_exit(127);
    }
    return pid;
  }

  // Waits until the guest's log says `what` (or 10 s pass) and returns the log.
  std::string WaitForLog(const std::string& log, const std::string& what) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    std::string text;
    while (Clock::now() < deadline) {
      text = ReadFile(log);
      if (text.find(what) != std::string::npos) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return text;
  }

  fakes::TestCa ca_, other_ca_;
  fakes::TestServerCert cert_;
  std::unique_ptr<TunnelEndpoint> endpoint_;
};

TEST_F(TlsTest, TheApiAndTheTunnelWorkOverTls) {
  Reply created = CallTls("POST", "/v1/sandboxes", "{}");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = created.json["data"]["id"];
  // The sandbox's guest dialled wss:// and verified the daemon with --ca-file.
  EXPECT_TRUE(endpoint_->Connected(id));
  const std::string api = "/v1/sandboxes/" + id + "/api/v1/";
  Reply e = CallTls("POST", api + "shell/exec", R"({"id":"s","command":"cd /tmp; echo hi"})");
  ASSERT_EQ(e.status, 200) << e.body;
  EXPECT_EQ(e.json["data"]["output"], "hi\n");

  // A streamed upload and download of 2 MiB, through TLS on the API and on the tunnel.
  const std::string blob = fakes::PatternBytes(2 << 20);
  const std::string b = "tlsBoundary";
  const std::string body =
      fakes::MultipartUpload(b, "/tmp/agentbox-tls-test-" + id + ".bin", blob);
  Reply up = CallTls("POST", api + "file/upload", body,
                     {"Content-Type: multipart/form-data; boundary=" + b});
  ASSERT_EQ(up.status, 200) << up.body;
  Reply down = CallTls("GET", api + "file/download?path=/tmp/agentbox-tls-test-" + id + ".bin");
  EXPECT_EQ(down.status, 200);
  EXPECT_TRUE(down.body == blob) << down.body.size();
  ::unlink(("/tmp/agentbox-tls-test-" + id + ".bin").c_str());

  // The Server-Sent Events stream of a running command.
  Reply bg = CallTls("POST", api + "shell/exec",
                     R"({"id":"s","command":"for i in 1 2; do echo tick$i; sleep 0.2; done",)"
                     R"("wait_seconds":0})");
  ASSERT_EQ(bg.status, 200) << bg.body;
  Reply events = CallTls("GET", "/v1/sandboxes/" + id + "/shell/s/stream", "", {}, nullptr, "",
                         "event: status");
  EXPECT_EQ(events.status, 200);
  EXPECT_NE(events.body.find("tick2"), std::string::npos) << events.body;
  EXPECT_NE(events.body.find("event: status"), std::string::npos) << events.body;

  EXPECT_EQ(CallTls("DELETE", "/v1/sandboxes/" + id).status, 200);
}

TEST_F(TlsTest, TheTunnelEndpointOverTlsStillWantsTheSandboxToken) {
  Reply r = CallTls("GET", "/v1/tunnel", "",
                    {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="});
  EXPECT_EQ(r.status, 401) << r.body;
}

TEST_F(TlsTest, AGuestWithTheWrongCaIsRefusedWithAClearError) {
  const std::string log = dir_ + "/wrong-ca.log";
  const pid_t pid = StartGuest("sb-wrongca", "wss://" + tls_base_.substr(8) + "/v1/tunnel",
                               other_ca_.cert_file, log);
  const std::string text = WaitForLog(log, "guest.tunnel_retry");
  const bool connected = endpoint_->Connected("sb-wrongca");
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  EXPECT_FALSE(connected);
  EXPECT_NE(text.find("TLS handshake failed: certificate verify failed"), std::string::npos)
      << text;
  EXPECT_NE(text.find("--ca-file " + other_ca_.cert_file), std::string::npos) << text;
}

TEST_F(TlsTest, AGuestChecksThatTheCertificateNamesTheDaemon) {
  // A certificate from the right CA, but for another name: a second TLS server presents it.
  auto wrong = fakes::MakeTestServerCert(ca_, dir_, "wrong-name", {}, {"agentbox.test"});
  ASSERT_TRUE(wrong);
  http::ServerOptions so;
  so.tls = *http::MakeServerTlsContext(wrong->cert_file, wrong->key_file);
  so.upgrade = upgrade_;
  http::Server other(io_, *api_, so);
  auto bound = other.Listen("tls:127.0.0.1:0");
  ASSERT_TRUE(bound);
  const std::string log = dir_ + "/wrong-name.log";
  const pid_t pid =
      StartGuest("sb-wrongname", "wss://" + bound->substr(4) + "/v1/tunnel", ca_.cert_file, log);
  const std::string text = WaitForLog(log, "guest.tunnel_retry");
  const bool connected = endpoint_->Connected("sb-wrongname");
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  other.Stop();
  EXPECT_FALSE(connected);
  EXPECT_NE(text.find("IP address mismatch"), std::string::npos) << text;
}

TEST_F(TlsTest, GuestRefusesACaFileItCannotUseOrThatIsNotForWss) {
  std::string out;
  const std::string guest = AGENTBOX_GUEST_BIN;
  const std::string tok = dir_ + "/tok";
  std::ofstream(tok) << "sb-x.secret\n";
  EXPECT_EQ(
      RunShell(guest + " serve --workdir /tmp --token-file " + tok +
                   " --connect wss://127.0.0.1:1/v1/tunnel --ca-file " + dir_ + "/missing.pem",
               &out),
      2);
  EXPECT_NE(out.find("missing.pem' cannot be read"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunShell(guest + " serve --workdir /tmp --token-file " + tok +
                         " --connect wss://127.0.0.1:1/v1/tunnel --ca-file " + tok,
                     &out),
            2);
  EXPECT_NE(out.find("holds no usable PEM certificate"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunShell(guest + " serve --workdir /tmp --token-file " + tok +
                         " --connect ws://127.0.0.1:1/v1/tunnel --ca-file " + ca_.cert_file,
                     &out),
            2);
  EXPECT_NE(out.find("--ca-file is for wss://"), std::string::npos) << out;
}

TEST_F(TlsTest, PlainHttpToTheTlsPortGetsAClearAnswer) {
  CURL* c = curl_easy_init();
  std::string body;
  curl_easy_setopt(c, CURLOPT_URL, ("http://" + tls_base_.substr(8) + "/healthz").c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  EXPECT_EQ(curl_easy_perform(c), CURLE_OK);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  EXPECT_EQ(status, 400);
  EXPECT_NE(body.find("use https://"), std::string::npos) << body;
  // And TLS to the plain port fails at once (no hang), as does a client without the CA.
  CURLcode rc = CURLE_OK;
  const auto start = Clock::now();
  CallTls("GET", "/healthz", "", {}, &rc, "https://" + tcp_base_.substr(7));
  EXPECT_NE(rc, CURLE_OK);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, (tls_base_ + "/healthz").c_str());
  curl_easy_setopt(c, CURLOPT_CAINFO, other_ca_.cert_file.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  EXPECT_EQ(curl_easy_perform(c), CURLE_PEER_FAILED_VERIFICATION);
  curl_easy_cleanup(c);
  // The server is still fine.
  EXPECT_EQ(CallTls("GET", "/healthz").status, 200);
}

TEST_F(TlsTest, TheCliTalksHttps) {
  const std::string cli =
      std::string(AGENTBOX_CLI_BIN) + " --url " + tls_base_ + " --api-key key-alice ";
  std::string out;
  ASSERT_EQ(RunShell(cli + "--ca-file " + ca_.cert_file + " create", &out), 0) << out;
  std::string id = out.substr(0, out.find_first_of("\r\n"));
  out.clear();
  EXPECT_EQ(
      RunShell(cli + "--ca-file " + ca_.cert_file + " exec " + id + " -- echo over-tls", &out), 0)
      << out;
  EXPECT_NE(out.find("over-tls"), std::string::npos) << out;
  out.clear();
  // The CA from the environment works too; the wrong CA gives a clear error.
  EXPECT_EQ(RunShell("AGENTBOX_CA_FILE=" + ca_.cert_file + " " + cli + "ls", &out), 0) << out;
  EXPECT_NE(out.find(id), std::string::npos) << out;
  out.clear();
  EXPECT_NE(RunShell(cli + "--ca-file " + other_ca_.cert_file + " ls", &out), 0);
  EXPECT_NE(out.find("over TLS"), std::string::npos) << out;
  EXPECT_NE(out.find("--ca-file"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunShell(cli + "--ca-file " + ca_.cert_file + " rm " + id, &out), 0) << out;
}

// agentboxd itself: tls: addresses need a usable certificate and key, and say clearly why not.
// Its backends start nothing: no warm pool, and no Docker engine to start containers on.
constexpr const char* kQuiet =
    "AGENTBOX_API_KEYS=k1\nAGENTBOX_WARM_POOL_SIZE=0\nDOCKER_HOST=unix:///nonexistent.sock\n";

class AgentboxdTls : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-tls-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ca_ = *fakes::MakeTestCa(dir_, "ca");
    cert_ = *fakes::MakeTestServerCert(ca_, dir_, "server", {"127.0.0.1"}, {});
  }
  void TearDown() override { ASSERT_EQ(std::system(("rm -rf '" + dir_ + "'").c_str()), 0); }

  // Runs agentboxd with `config` lines and returns its exit status and output (it must exit).
  int Start(const std::string& config, std::string* out) {
    std::ofstream(dir_ + "/d.conf") << kQuiet << config;
    return RunShell(std::string("timeout 20 ") + AGENTBOXD_BIN + " --listen tls:127.0.0.1:0" +
                        " --state-dir " + dir_ + "/state --backend jail --env-file /dev/null" +
                        " --config " + dir_ + "/d.conf",
                    out);
  }

  std::string dir_;
  fakes::TestCa ca_;
  fakes::TestServerCert cert_;
};

TEST_F(AgentboxdTls, StartUpErrorsNameTheProblem) {
  std::string out;
  EXPECT_EQ(Start("", &out), 2);
  EXPECT_NE(out.find("needs AGENTBOX_TLS_CERT"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(
      Start("AGENTBOX_TLS_CERT=" + dir_ + "/nope.crt\nAGENTBOX_TLS_KEY=" + cert_.key_file + "\n",
            &out),
      2);
  EXPECT_NE(out.find("nope.crt' cannot be read: No such file"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(
      Start("AGENTBOX_TLS_CERT=" + cert_.cert_file + "\nAGENTBOX_TLS_KEY=" + ca_.key_file + "\n",
            &out),
      2);
  EXPECT_NE(out.find("does not belong to the certificate"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(
      Start("AGENTBOX_TLS_CERT=" + cert_.key_file + "\nAGENTBOX_TLS_KEY=" + cert_.key_file + "\n",
            &out),
      2);
  EXPECT_NE(out.find("is not a usable PEM certificate chain"), std::string::npos) << out;
}

TEST_F(AgentboxdTls, ServesHttpsWithAGoodCertificate) {
  std::ofstream(dir_ + "/d.conf") << kQuiet << "AGENTBOX_TLS_CERT=" << cert_.cert_file
                                  << "\nAGENTBOX_TLS_KEY=" << cert_.key_file << "\n";
  const std::string log = dir_ + "/agentboxd.log";
  const pid_t pid = ::fork();
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    const std::string state = dir_ + "/state", conf = dir_ + "/d.conf";
    ::execl(AGENTBOXD_BIN, AGENTBOXD_BIN, "--listen", "tls:127.0.0.1:0", "--state-dir",
            state.c_str(), "--backend", "jail", "--env-file", "/dev/null", "--config", conf.c_str(),
            nullptr);
    ::_exit(127);
  }
  std::string address;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (address.empty() && Clock::now() < deadline) {
    const std::string text = ReadFile(log);
    const size_t at = text.find("address=tls:");
    if (at != std::string::npos) {
      address = text.substr(at + 12, text.find(' ', at) - at - 12);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  std::string body;
  long status = 0;
  if (!address.empty()) {
    CURL* c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, ("https://" + address + "/v1/info").c_str());
    curl_easy_setopt(c, CURLOPT_CAINFO, ca_.cert_file.c_str());
    curl_slist* h = curl_slist_append(nullptr, "Authorization: Bearer k1");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    EXPECT_EQ(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
  }
  ::kill(pid, SIGTERM);
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  ASSERT_FALSE(address.empty()) << ReadFile(log);
  EXPECT_EQ(status, 200) << body;
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << ReadFile(log);
}

}  // namespace
}  // namespace agentbox::daemon
