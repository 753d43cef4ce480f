// DockerBackend: units of request building (no engine), and lifecycle tests against a real
// dockerd. The engine tests skip, saying why, when no engine answers or agentbox/base is missing;
// CI starts the engine and builds the image first (scripts/test.sh).
#include "backends/docker/docker_backend.h"

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

namespace agentbox::docker {
namespace {

using namespace std::chrono_literals;

// --- units: no engine --------------------------------------------------------------------------

ContainerPlan SamplePlan() {
  ContainerPlan p;
  p.id = "sb-unit";
  p.spec.image = "agentbox/base:latest";
  p.spec.env = {{"FOO", "bar"}, {"LANG", "en_US.UTF-8"}};
  p.spec.limits = DefaultSandboxLimits();
  p.spec.limits.memory_bytes = 256ull << 20;
  p.spec.limits.cpus = 1.5;
  p.spec.limits.pids = 100;
  p.spec.limits.tmp_bytes = 32ull << 20;
  p.spec.labels = {{"team", "x"}};
  p.spec.owner = "alice";
  p.spec.ttl_s = 600;
  p.state_dir = "/var/lib/agentbox/docker";
  p.host_dir = "/var/lib/agentbox/docker/sb-unit";
  p.guest_binary = "/usr/local/lib/agentbox/agentbox-guest";
  p.created_at = 1000.5;
  p.expires_at = 1600.5;
  p.image_env_keys = {"PATH", "USER"};
  return p;
}

const Json* FindMount(const Json& body, const std::string& target) {
  for (const auto& m : body["HostConfig"]["Mounts"]) {
    if (m["Target"] == target) {
      return &m;
    }
  }
  return nullptr;
}

TEST(DockerRequest, GuestIsTheEntrypointWithItsSocketInTheRunDirectory) {
  const Json b = BuildCreateBody(SamplePlan());
  EXPECT_EQ(b["Image"], "agentbox/base:latest");
  EXPECT_EQ(b["Entrypoint"], Json::array({"/.agentbox/guest"}));
  EXPECT_EQ(b["Cmd"],
            Json::array({"serve", "--listen", "unix:/run/agentbox/guest.sock", "--workdir",
                         "/workspace", "--token-file", "/run/agentbox/token"}));
  const Json* guest = FindMount(b, "/.agentbox/guest");
  ASSERT_NE(guest, nullptr);
  EXPECT_EQ((*guest)["Type"], "bind");
  EXPECT_EQ((*guest)["Source"], "/usr/local/lib/agentbox/agentbox-guest");
  EXPECT_EQ((*guest)["ReadOnly"], true);
  const Json* run = FindMount(b, "/run/agentbox");
  ASSERT_NE(run, nullptr);
  EXPECT_EQ((*run)["Source"], "/var/lib/agentbox/docker/sb-unit/run");
  const Json* ws = FindMount(b, "/workspace");
  ASSERT_NE(ws, nullptr);
  EXPECT_EQ((*ws)["Type"], "volume");
  EXPECT_FALSE(ws->contains("Source"));  // anonymous: removed with the container
  const Json* tmp = FindMount(b, "/tmp");
  ASSERT_NE(tmp, nullptr);
  EXPECT_EQ((*tmp)["Type"], "tmpfs");
  EXPECT_EQ((*tmp)["TmpfsOptions"]["SizeBytes"], 32ull << 20);
  EXPECT_EQ(b["Hostname"], "sb-unit");
  EXPECT_EQ(b["User"], "0:0");
}

TEST(DockerRequest, LimitsAndSecurityOptions) {
  const Json h = BuildCreateBody(SamplePlan())["HostConfig"];
  EXPECT_EQ(h["Memory"], 256ull << 20);
  EXPECT_EQ(h["MemorySwap"], 256ull << 20);
  EXPECT_EQ(h["CpuPeriod"], 10000);  // 10 ms: a limited sandbox cannot stall others for long
  EXPECT_EQ(h["CpuQuota"], 15000);
  EXPECT_EQ(h["PidsLimit"], 100);
  EXPECT_EQ(h["SecurityOpt"], Json::array({"no-new-privileges"}));  // default seccomp profile
  EXPECT_EQ(h["CapDrop"], Json::array({"ALL"}));
  EXPECT_EQ(h["CapAdd"], Json(KeptCapabilities()));
  for (const auto& cap : h["CapAdd"]) {
    EXPECT_NE(cap, "SYS_ADMIN");
    EXPECT_NE(cap, "NET_RAW");
  }
  EXPECT_EQ(h["NetworkMode"], "none");
  EXPECT_EQ(h["ReadonlyRootfs"], false);
  EXPECT_FALSE(h.contains("Privileged"));
  EXPECT_FALSE(h.contains("Runtime"));
  bool nofile = false;
  for (const auto& u : h["Ulimits"]) {
    if (u["Name"] == "nofile") {
      nofile = u["Soft"] == 4096 && u["Hard"] == 4096;
    }
  }
  EXPECT_TRUE(nofile) << h["Ulimits"];
}

TEST(DockerRequest, NetworkModesReadOnlyRootAndRuntime) {
  ContainerPlan p = SamplePlan();
  p.spec.network = NetworkMode::kHost;
  EXPECT_EQ(BuildCreateBody(p)["HostConfig"]["NetworkMode"], "host");
  p.spec.network = NetworkMode::kNone;
  p.spec.network_name = "agents";
  p.spec.read_only_root = true;
  p.runtime = "runsc";
  const Json h = BuildCreateBody(p)["HostConfig"];
  EXPECT_EQ(h["NetworkMode"], "agents");
  EXPECT_EQ(h["ReadonlyRootfs"], true);
  EXPECT_EQ(h["Runtime"], "runsc");
}

TEST(DockerRequest, SandboxesShareACgroupParentThatWeighsHalfADaemonThread) {
  ContainerPlan p = SamplePlan();
  EXPECT_FALSE(BuildCreateBody(p)["HostConfig"].contains("CgroupParent"));  // engine's default
  p.cgroup_parent = "/agentbox-docker";
  EXPECT_EQ(BuildCreateBody(p)["HostConfig"]["CgroupParent"], "/agentbox-docker");

  const SandboxesCgroup v1 = SandboxesCgroupFor("cgroupfs", "1", "/c");
  EXPECT_EQ(v1.parent, "/agentbox-docker");
  ASSERT_EQ(v1.weight_files.size(), 2u);  // "cpu" or "cpu,cpuacct", whichever is mounted
  EXPECT_EQ(v1.weight_files[0], std::make_pair(std::string("/c/cpu/agentbox-docker/cpu.shares"),
                                               std::string("512")));
  EXPECT_EQ(v1.weight_files[1].first, "/c/cpu,cpuacct/agentbox-docker/cpu.shares");
  const SandboxesCgroup v2 = SandboxesCgroupFor("systemd", "2", "/c");
  EXPECT_EQ(v2.parent, "agentbox.slice");
  ASSERT_EQ(v2.weight_files.size(), 1u);
  EXPECT_EQ(v2.weight_files[0], std::make_pair(std::string("/c/agentbox.slice/cpu.weight"),
                                               std::string("50")));
  const SandboxesCgroup other = SandboxesCgroupFor("", "", "/c");  // an engine that did not say
  EXPECT_EQ(other.parent, "");
  EXPECT_TRUE(other.weight_files.empty());
}

TEST(DockerRequest, EnvDefaultsNeverOverrideTheImageOrTheSpec) {
  const Json env = BuildCreateBody(SamplePlan())["Env"];
  std::vector<std::string> v = env.get<std::vector<std::string>>();
  auto has = [&](const std::string& kv) { return std::find(v.begin(), v.end(), kv) != v.end(); };
  EXPECT_TRUE(has("FOO=bar"));
  EXPECT_TRUE(has("LANG=en_US.UTF-8"));  // the spec's value, not our default
  EXPECT_TRUE(has("LOGNAME=root"));
  for (const auto& kv : v) {
    EXPECT_FALSE(kv.starts_with("USER=")) << "the image sets USER";
  }
}

TEST(DockerRequest, LabelsCarryTheCreationTimeSpecAndParseBack) {
  const ContainerPlan p = SamplePlan();
  const auto labels = BuildLabels(p);
  EXPECT_EQ(labels.at("agentbox.managed"), "true");
  EXPECT_EQ(labels.at("agentbox.id"), "sb-unit");
  EXPECT_EQ(labels.at("agentbox.owner"), "alice");
  EXPECT_EQ(labels.at("agentbox.created"), "1000.500");
  EXPECT_EQ(labels.at("agentbox.ttl"), "600");
  EXPECT_EQ(labels.at("agentbox.expires"), "1600.500");
  EXPECT_EQ(labels.at("agentbox.spec-hash"), SpecHash(p.spec));
  EXPECT_EQ(labels.at("agentbox.state-dir"), "/var/lib/agentbox/docker");
  EXPECT_EQ(labels.at("agentbox.label.team"), "x");

  const Json body = BuildCreateBody(p);
  auto rec = ParseLabels(labels, body["Env"].get<std::vector<std::string>>());
  ASSERT_TRUE(rec) << rec.error().message;
  EXPECT_EQ(rec->id, "sb-unit");
  EXPECT_EQ(rec->spec.image, p.spec.image);
  EXPECT_EQ(rec->spec.env, p.spec.env);  // only the spec's keys, not our defaults
  EXPECT_EQ(rec->spec.limits, p.spec.limits);
  EXPECT_EQ(rec->spec.labels, p.spec.labels);
  EXPECT_EQ(rec->spec.owner, "alice");
  EXPECT_EQ(rec->spec.ttl_s, 600);
  EXPECT_DOUBLE_EQ(rec->created_at, 1000.5);
  EXPECT_DOUBLE_EQ(rec->expires_at, 1600.5);
  EXPECT_FALSE(ParseLabels({{"com.example", "x"}}, {}));
}

// fuzz_docker_engine: an answer whose Config has no Labels read past the object
// (operator[] on a const Json); any shape now gives no labels (seed config_without_labels).
TEST(DockerRequest, LabelsOfAnswersOfAnyShape) {
  EXPECT_TRUE(LabelsOf(Json::parse(R"({"Config": {"Labelz": {"a": "b"}}})")).empty());
  EXPECT_TRUE(LabelsOf(Json::parse(R"({"Config": {}, "Labels": {"a": "b"}})")).empty());
  EXPECT_TRUE(LabelsOf(Json(7)).empty());
  EXPECT_TRUE(LabelsOf(Json::parse(R"({"Labels": null})")).empty());
  EXPECT_EQ(LabelsOf(Json::parse(R"({"Labels": {"a": "b", "n": 1}})")).size(), 1u);
  EXPECT_EQ(LabelOf(Json::parse(R"({"Config": {"Labels": {"a": "b"}}})"), "a"), "b");
}

TEST(DockerRequest, SpecHashIgnoresOwnerLabelsAndTtl) {
  SandboxSpec a = SamplePlan().spec;
  SandboxSpec b = a;
  b.owner = "bob";
  b.labels = {};
  b.ttl_s = 5;
  EXPECT_EQ(SpecHash(a), SpecHash(b));
  b.env["X"] = "1";
  EXPECT_NE(SpecHash(a), SpecHash(b));
  b = a;
  b.read_only_root = true;
  EXPECT_NE(SpecHash(a), SpecHash(b));
  EXPECT_EQ(SpecHash(a).size(), 16u);
}

TEST(DockerRequest, ImageReferencesAndDockerHost) {
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(SplitImageReference("busybox"), P("busybox", "latest"));
  EXPECT_EQ(SplitImageReference("agentbox/base:1"), P("agentbox/base", "1"));
  EXPECT_EQ(SplitImageReference("reg:5000/a/b"), P("reg:5000/a/b", "latest"));
  EXPECT_EQ(SplitImageReference("a@sha256:ab"), P("a", "sha256:ab"));
  EXPECT_EQ(*SocketFromDockerHost(""), "/var/run/docker.sock");
  EXPECT_EQ(*SocketFromDockerHost("unix:///run/user/docker.sock"), "/run/user/docker.sock");
  auto tcp = SocketFromDockerHost("tcp://127.0.0.1:2375");
  ASSERT_FALSE(tcp);
  EXPECT_EQ(tcp.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(tcp.error().message.find("unix"), std::string::npos);
  EXPECT_TRUE(ValidImageReference("reg:5000/a/b:1.2"));
  EXPECT_FALSE(ValidImageReference("a b"));
  EXPECT_FALSE(ValidImageReference("../x?y"));
  EXPECT_EQ(UrlEncode("a b/{}"), "a%20b%2F%7B%7D");
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/agentbox-docker-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { (void)RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(DockerHostDir, MetaRoundTripsAndRemoveTreeNeverFollowsLinks) {
  TempDir t;
  SandboxMeta m;
  m.token = "t0k";
  m.owner = "alice";
  m.labels = {{"a", "b"}};
  m.expires_at = 123.25;
  m.claimed = true;
  ASSERT_TRUE(SaveMeta(t.path(), m));
  auto back = LoadMeta(t.path());
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->token, "t0k");
  EXPECT_EQ(back->owner, "alice");
  EXPECT_EQ(back->labels, m.labels);
  EXPECT_DOUBLE_EQ(back->expires_at, 123.25);
  EXPECT_TRUE(back->claimed);
  EXPECT_EQ(LoadMeta(t.path() + "/none").error().code, ErrorCode::kNotFound);

  // A container could plant a link to a host directory in run/: removal must not follow it.
  const std::string outside = t.path() + "/outside";
  ASSERT_EQ(::mkdir(outside.c_str(), 0700), 0);
  std::ofstream(outside + "/keep") << "x";
  const std::string sb = t.path() + "/sb";
  ASSERT_EQ(::mkdir(sb.c_str(), 0700), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (sb + "/link").c_str()), 0);
  ASSERT_TRUE(RemoveTree(sb));
  EXPECT_FALSE(PathExists(sb));
  EXPECT_TRUE(PathExists(outside + "/keep"));
}

TEST(DockerEngineDown, ProbeAndCreateSayTheEngineIsNotReachable) {
  TempDir t;
  DockerBackendOptions o;
  o.state_dir = t.path() + "/docker";
  o.socket_path = *SocketFromDockerHost("unix:///nonexistent/docker.sock");
  o.guest_binary = AGENTBOX_GUEST_BINARY;
  DockerBackend b(o);
  const auto start = std::chrono::steady_clock::now();
  ProbeResult p = b.Probe();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_FALSE(p.usable);
  EXPECT_NE(p.reason.find("The Docker engine at /nonexistent/docker.sock is not reachable"),
            std::string::npos)
      << p.reason;
  auto c = b.Create("sb-down", SandboxSpec{});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(HttpStatus(c.error().code), 503);
  EXPECT_NE(
      c.error().message.find("the Docker engine at /nonexistent/docker.sock is not reachable"),
      std::string::npos)
      << c.error().message;
  EXPECT_EQ(b.List().error().code, ErrorCode::kUnavailable);
  // What the daemon watches: only whether the engine answers, naming it.
  auto down = b.EngineDown();
  ASSERT_TRUE(down.has_value());
  EXPECT_NE(down->find("The Docker engine at /nonexistent/docker.sock is not answering: "),
            std::string::npos)
      << *down;
  EXPECT_EQ(b.Prepare(SandboxSpec{}, nullptr).error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(PathExists(o.state_dir + "/sb-down"));
}

// A one-request-at-a-time HTTP server on a unix socket that answers every request with `reply`:
// an engine that speaks another API version, without needing one.
class CannedEngine {
 public:
  // Answers every request with `reply`.
  CannedEngine(std::string path, std::string reply)
      : CannedEngine(std::move(path), [reply](const std::string&) { return reply; }) {}
  // Answers each request with what `reply_for` returns for its request line.
  CannedEngine(std::string path, std::function<std::string(const std::string&)> reply_for)
      : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path_.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    thread_ = std::thread([this, reply_for] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) {
          return;
        }
        std::string req;
        char buf[4096];
        while (req.find("\r\n\r\n") == std::string::npos) {
          const ssize_t n = ::read(c, buf, sizeof(buf));
          if (n <= 0) {
            break;
          }
          req.append(buf, static_cast<size_t>(n));
        }
        const std::string line = req.substr(0, req.find("\r\n"));
        {
          std::lock_guard lock(mu_);
          requests_.push_back(line);
        }
        const std::string reply = reply_for(line);
        (void)!::write(c, reply.data(), reply.size());
        ::close(c);
      }
    });
  }
  ~CannedEngine() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::vector<std::string> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  std::mutex mu_;
  std::string path_;
  int fd_ = -1;
  std::thread thread_;
  std::vector<std::string> requests_;
};

// A backend's options for a CannedEngine listening at <t>/docker.sock.
DockerBackendOptions CannedEngineOptions(const TempDir& t) {
  DockerBackendOptions o;
  o.state_dir = t.path() + "/docker";
  o.socket_path = t.path() + "/docker.sock";
  o.guest_binary = AGENTBOX_GUEST_BINARY;
  return o;
}

TEST(DockerEngineVersion, AnEngineThatDoesNotSpeakV141IsNotUsableAndSaysWhy) {
  TempDir t;
  const std::string body = R"({"message":"client version 1.41 is too old. Minimum supported )"
                           R"(API version is 1.44, please upgrade your client"})";
  CannedEngine engine(t.path() + "/docker.sock",
                      "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                      "Content-Length: " +
                          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  DockerBackend b(CannedEngineOptions(t));
  ProbeResult p = b.Probe();
  EXPECT_FALSE(p.usable);
  EXPECT_EQ(p.reason, "The Docker engine at " + b.options().socket_path +
                          " does not speak API 1.41: client version 1.41 is too old. Minimum "
                          "supported API version is 1.44, please upgrade your client.");
  const auto requests = engine.requests();
  ASSERT_FALSE(requests.empty());
  EXPECT_EQ(requests[0], "GET /v1.41/_ping HTTP/1.1");
}

// The probe names the engine's problem before the guest's: with the engine down, a dynamically
// linked guest (/bin/dash) is not what the reason is about.
TEST(DockerProbeOrder, AnEngineThatIsDownIsReportedBeforeAGuestThatCannotRunInContainers) {
  TempDir t;
  DockerBackendOptions o;
  o.state_dir = t.path() + "/docker";
  o.socket_path = t.path() + "/docker.sock";  // nothing listens
  o.guest_binary = "/bin/dash";
  ProbeResult p = DockerBackend(o).Probe();
  EXPECT_FALSE(p.usable);
  EXPECT_EQ(p.reason.find("The Docker engine at " + o.socket_path + " is not reachable"), 0u)
      << p.reason;
  o.guest_binary = t.path() + "/missing-guest";
  p = DockerBackend(o).Probe();
  EXPECT_EQ(p.reason.find("The Docker engine at " + o.socket_path + " is not reachable"), 0u)
      << p.reason;
}

// Once the engine answers, a guest that is missing or dynamically linked is the reason, before
// the image is asked about.
TEST(DockerProbeOrder, AGuestThatIsMissingOrDynamicIsNamedOnceTheEngineAnswers) {
  TempDir t;
  CannedEngine engine(t.path() + "/docker.sock",
                      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
  DockerBackendOptions o = CannedEngineOptions(t);
  o.guest_binary = "/bin/dash";
  ProbeResult p = DockerBackend(o).Probe();
  EXPECT_FALSE(p.usable);
  EXPECT_EQ(p.reason,
            "The guest binary /bin/dash is dynamically linked; containers need a static one "
            "(AGENTBOX_GUEST_BIN).");
  o.guest_binary = t.path() + "/missing-guest";
  p = DockerBackend(o).Probe();
  EXPECT_EQ(p.reason, "The guest binary " + o.guest_binary + " is missing or not executable.");
  const auto requests = engine.requests();
  ASSERT_EQ(requests.size(), 2u);  // one ping each, no image look-up
  EXPECT_EQ(requests[0], "GET /v1.41/_ping HTTP/1.1");
  EXPECT_EQ(requests[1], "GET /v1.41/_ping HTTP/1.1");
}

// A registry is out of reach here, so the engine's side of a pull is played: the image is
// missing, /images/create streams progress lines (until the connection closes, as dockerd's
// chunked stream ends), and afterwards the image is present.
std::string Http(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + body;
}

TEST(DockerPull, AMissingImageIsPulledWithItsProgressReported) {
  TempDir t;
  std::atomic<bool> pulled{false};
  CannedEngine engine(t.path() + "/docker.sock", [&](const std::string& line) {
    if (line.starts_with("GET /v1.41/images/registry.example/tool:1/json")) {
      return pulled ? Http(200, R"({"Id":"sha256:abc"})")
                    : Http(404, R"({"message":"No such image: registry.example/tool:1"})");
    }
    if (line.starts_with("POST /v1.41/images/create?fromImage=registry.example%2Ftool&tag=1")) {
      pulled = true;
      return Http(200,
                  "{\"status\":\"Pulling from tool\",\"id\":\"1\"}\r\n"
                  "{\"status\":\"Downloading\",\"progress\":\"[==>  ] 1MB/4MB\","
                  "\"id\":\"a1b2\"}\r\n"
                  "{\"status\":\"Status: Downloaded newer image for registry.example/tool:1\"}"
                  "\r\n");
    }
    return Http(500, R"({"message":"unexpected request"})");
  });
  DockerBackend b(CannedEngineOptions(t));
  SandboxSpec spec;
  spec.image = "registry.example/tool:1";
  std::vector<std::string> lines;
  auto r = b.Prepare(spec, [&](std::string_view l) { lines.emplace_back(l); });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(lines,
            (std::vector<std::string>{"pulling image registry.example/tool:1",
                                      "1: Pulling from tool", "a1b2: Downloading [==>  ] 1MB/4MB",
                                      "Status: Downloaded newer image for registry.example/tool:1",
                                      "pulled image registry.example/tool:1"}));
  // Present now, and remembered: a second Prepare asks the engine nothing.
  const size_t asked = engine.requests().size();
  lines.clear();
  ASSERT_TRUE(b.Prepare(spec, [&](std::string_view l) { lines.emplace_back(l); }));
  EXPECT_EQ(engine.requests().size(), asked);
  EXPECT_EQ(lines, std::vector<std::string>{"image registry.example/tool:1 is present"});
}

TEST(DockerPull, ARegistryErrorDuringThePullNamesTheImage) {
  TempDir t;
  CannedEngine engine(t.path() + "/docker.sock", [](const std::string& line) {
    if (line.starts_with("GET /v1.41/images/")) {
      return Http(404, R"({"message":"No such image"})");
    }
    return Http(200,
                "{\"status\":\"Pulling from tool\",\"id\":\"2\"}\r\n"
                "{\"errorDetail\":{\"message\":\"manifest unknown\"},"
                "\"error\":\"manifest unknown\"}\r\n");
  });
  DockerBackend b(CannedEngineOptions(t));
  SandboxSpec spec;
  spec.image = "registry.example/tool:2";
  auto r = b.Prepare(spec, nullptr);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(r.error().message.find("registry.example/tool:2"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("manifest unknown"), std::string::npos);
}

// --- against the engine ------------------------------------------------------------------------

size_t Collect(char* p, size_t s, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, s * n);
  return s * n;
}

// POST to the guest of `info` over its unix socket; returns the envelope's data (or null).
Json Guest(const SandboxInfo& info, const std::string& op, const Json& body,
           long* status = nullptr) {
  CURL* c = curl_easy_init();
  std::string out;
  const std::string sock = info.guest_endpoint.substr(5);
  const std::string payload = body.dump();
  curl_slist* h = curl_slist_append(nullptr, ("X-Access-Token: " + info.guest_token).c_str());
  h = curl_slist_append(h, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock.c_str());
  curl_easy_setopt(c, CURLOPT_URL, ("http://guest/api/v1/" + op).c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
  const CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  if (status != nullptr) {
    *status = code;
  }
  EXPECT_EQ(rc, CURLE_OK) << curl_easy_strerror(rc);
  const Json j = Json::parse(out, nullptr, false);
  return j.is_object() && j.contains("data") ? j["data"] : Json();
}

// Runs `command` in session "s" and returns {output, returncode}.
Json Exec(const SandboxInfo& info, const std::string& command) {
  return Guest(info, "shell/exec", {{"id", "s"}, {"command", command}, {"wait_seconds", 60}});
}

class DockerEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* host = std::getenv("DOCKER_HOST");
    auto sock = SocketFromDockerHost(host ? host : "");
    if (!sock) {
      GTEST_SKIP() << sock.error().message;
    }
    opts_.state_dir = dir_.path() + "/docker";
    opts_.socket_path = *sock;
    opts_.guest_binary = AGENTBOX_GUEST_BINARY;
    backend_ = std::make_unique<DockerBackend>(opts_);
    ProbeResult p = backend_->Probe();
    if (!p.usable) {
      GTEST_SKIP() << "no usable Docker engine (scripts/start-dockerd.sh and "
                      "scripts/build-base-image.sh make one): "
                   << p.reason;
    }
  }
  void TearDown() override {
    for (const auto& id : ids_) {
      (void)backend_->Destroy(id);
    }
  }

  SandboxInfo Create(const std::string& id, SandboxSpec spec = {}) {
    ids_.push_back(id);
    auto info = backend_->Create(id, spec);
    EXPECT_TRUE(info) << info.error().message;
    return info ? *info : SandboxInfo{};
  }
  Json Inspect(const std::string& id) {
    auto r = backend_->engine().Call("GET", "/containers/" + ContainerName(id) + "/json");
    EXPECT_TRUE(r && r->status == 200);
    return r ? Json::parse(r->body, nullptr, false) : Json();
  }
  long EngineStatus(const std::string& method, const std::string& path,
                    const std::string& body = "") {
    auto r = backend_->engine().Call(method, path, body);
    return r ? r->status : -1;
  }

  TempDir dir_;
  DockerBackendOptions opts_;
  std::unique_ptr<DockerBackend> backend_;
  std::vector<std::string> ids_;
};

TEST_F(DockerEngine, CreateExecThroughTheGuestAndDestroy) {
  SandboxSpec spec;
  spec.owner = "alice";
  spec.labels = {{"purpose", "test"}};
  spec.env = {{"GREETING", "hello there"}};
  spec.ttl_s = 120;
  SandboxInfo info = Create("dk-basic", spec);
  ASSERT_EQ(info.state, SandboxState::kRunning);
  EXPECT_EQ(info.backend, "docker");
  EXPECT_EQ(info.guest_endpoint, "unix:" + opts_.state_dir + "/dk-basic/run/guest.sock");
  EXPECT_EQ(info.guest_token.size(), 64u);
  EXPECT_NEAR(info.expires_at - info.created_at, 120, 0.01);

  Json r = Exec(info, "echo $GREETING; id -u; hostname; pwd; echo $USER $LANG");
  EXPECT_EQ(r["returncode"], 0);
  EXPECT_EQ(r["output"], "hello there\n0\ndk-basic\n/workspace\nroot C.UTF-8\n");
  // A wrong token is refused.
  SandboxInfo wrong = info;
  wrong.guest_token = "nope";
  long status = 0;
  Guest(wrong, "shell/exec", {{"id", "s"}, {"command", "true"}}, &status);
  EXPECT_EQ(status, 401);

  const Json c = Inspect("dk-basic");
  const Json labels = c["Config"]["Labels"];
  for (const char* key :
       {"agentbox.managed", "agentbox.id", "agentbox.owner", "agentbox.created", "agentbox.ttl",
        "agentbox.expires", "agentbox.spec-hash", "agentbox.state-dir", "agentbox.label.purpose"}) {
    EXPECT_TRUE(labels.contains(key)) << key;
  }
  EXPECT_EQ(labels["agentbox.owner"], "alice");
  EXPECT_EQ(labels["agentbox.ttl"], "120");
  // /workspace: the sandbox's own disk (limits.disk_bytes, on by default) when this process
  // can make one, else an anonymous volume.
  std::string volume, bound;
  for (const auto& m : c["Mounts"]) {
    if (m["Destination"] == "/workspace") {
      volume = m.value("Name", "");
      bound = m.value("Type", "") == "bind" ? m.value("Source", "") : "";
    }
  }
  if (disk::WhyUnsupported().empty()) {
    EXPECT_EQ(bound, opts_.state_dir + "/dk-basic/disk/workspace");
  } else {
    ASSERT_FALSE(volume.empty());
  }

  auto got = backend_->Get("dk-basic");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->spec.owner, "alice");
  EXPECT_EQ(got->spec.env, spec.env);
  EXPECT_EQ(got->spec.image, "agentbox/base:latest");
  EXPECT_EQ(got->guest_token, info.guest_token);

  ASSERT_TRUE(backend_->Destroy("dk-basic"));
  EXPECT_EQ(EngineStatus("GET", "/containers/agentbox-dk-basic/json"), 404);
  if (!volume.empty()) {
    EXPECT_EQ(EngineStatus("GET", "/volumes/" + volume), 404) << "anonymous volume left behind";
  }
  EXPECT_FALSE(PathExists(opts_.state_dir + "/dk-basic"));
  EXPECT_EQ(backend_->Get("dk-basic").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(backend_->Destroy("dk-basic").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(backend_->Create("dk-basic", spec).has_value(), true) << "the id is free again";
}

TEST_F(DockerEngine, RestartGuestReplacesAStoppedGuestAndKeepsTheWorkspace) {
  EXPECT_EQ(backend_->EngineDown(), std::nullopt);  // the engine answers
  SandboxInfo info = Create("dk-stuck");
  ASSERT_EQ(Exec(info,
                 "echo kept > /workspace/f; echo gone > /tmp/t; "
                 "echo planted > /run/agentbox/token")["returncode"],
            0);
  const int pid = Inspect("dk-stuck")["State"]["Pid"].get<int>();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGSTOP), 0);  // what a ptrace attach used to leave
  auto restarted = backend_->RestartGuest("dk-stuck");
  ASSERT_TRUE(restarted) << restarted.error().message;
  EXPECT_EQ(restarted->state, SandboxState::kRunning);
  EXPECT_EQ(restarted->guest_token, info.guest_token);
  EXPECT_NE(Inspect("dk-stuck")["State"]["Pid"].get<int>(), pid);
  EXPECT_EQ(Exec(*restarted, "cat /workspace/f; cat /tmp/t 2>/dev/null || echo no-tmp")["output"],
            "kept\nno-tmp\n");
  EXPECT_EQ(backend_->RestartGuest("dk-no-such").error().code, ErrorCode::kNotFound);
}

TEST_F(DockerEngine, DuplicateIdIsAConflictAndLeavesTheFirstAlone) {
  SandboxInfo info = Create("dk-dup");
  auto again = backend_->Create("dk-dup", SandboxSpec{});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_EQ(Exec(info, "echo still")["output"], "still\n");
}

TEST_F(DockerEngine, LimitsAndSecurityOptionsAreVisibleInInspect) {
  SandboxSpec spec;
  spec.limits.memory_bytes = 128ull << 20;
  spec.limits.cpus = 0.5;
  spec.limits.pids = 64;
  spec.limits.tmp_bytes = 16ull << 20;
  SandboxInfo info = Create("dk-limits", spec);
  const Json h = Inspect("dk-limits")["HostConfig"];
  EXPECT_EQ(h["Memory"], 128ull << 20);
  EXPECT_EQ(h["MemorySwap"], 128ull << 20);
  EXPECT_EQ(h["CpuPeriod"], 10000);
  EXPECT_EQ(h["CpuQuota"], 5000);
  EXPECT_EQ(h["PidsLimit"], 64);
  EXPECT_EQ(h["NetworkMode"], "none");
  EXPECT_EQ(h["CapDrop"], Json::array({"ALL"}));
  EXPECT_EQ(h["CapAdd"].size(), KeptCapabilities().size());
  EXPECT_EQ(h["SecurityOpt"], Json::array({"no-new-privileges"}));
  EXPECT_EQ(h["Privileged"], false);
  // Inside: the cgroup limits, the default seccomp filter, no_new_privs, the kept capabilities.
  Json r = Exec(info,
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                "/sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max 2>/dev/null;"
                "grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status;"
                "grep ' /tmp ' /proc/mounts");
  const std::string out = r["output"];
  EXPECT_NE(out.find("134217728\n"), std::string::npos) << out;
  EXPECT_NE(out.find("64\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Seccomp:\t2"), std::string::npos) << out;  // filter mode
  EXPECT_NE(out.find("NoNewPrivs:\t1"), std::string::npos) << out;
  EXPECT_NE(out.find("CapEff:\t00000000000004fb"), std::string::npos) << out;
  EXPECT_NE(out.find("size=16384k"), std::string::npos) << out;
}

TEST_F(DockerEngine, SandboxesGoUnderOneCgroupParentWithHalfADaemonThreadsWeight) {
  SandboxInfo info = Create("dk-cpu-group", SandboxSpec{});
  auto engine_info = backend_->engine().Call("GET", "/info");
  ASSERT_TRUE(engine_info && engine_info->status == 200);
  const Json i = Json::parse(engine_info->body);
  const SandboxesCgroup want =
      SandboxesCgroupFor(i.value("CgroupDriver", ""), i.value("CgroupVersion", ""));
  EXPECT_EQ(Inspect("dk-cpu-group")["HostConfig"].value("CgroupParent", ""), want.parent);
  // This engine runs here: the group it made has the sandboxes' weight.
  int weighed = 0;
  for (const auto& [path, value] : want.weight_files) {
    std::ifstream in(path);
    std::string got;
    if (in >> got) {
      EXPECT_EQ(got, value) << path;
      ++weighed;
    }
  }
  if (!want.parent.empty()) {
    EXPECT_GE(weighed, 1) << "no weight file of " << want.parent;
  }
  (void)info;
}

TEST_F(DockerEngine, ReadOnlyRootKeepsWorkspaceAndTmpWritable) {
  SandboxSpec spec;
  spec.read_only_root = true;
  SandboxInfo info = Create("dk-ro", spec);
  EXPECT_EQ(Inspect("dk-ro")["HostConfig"]["ReadonlyRootfs"], true);
  Json r = Exec(info,
                "touch /etc/x 2>/dev/null && echo root-writable; touch /workspace/a /tmp/b "
                "&& echo ok");
  EXPECT_EQ(r["output"], "ok\n");
}

TEST_F(DockerEngine, PidsLimitStopsNewProcesses) {
  SandboxSpec spec;
  spec.limits.pids = 12;
  SandboxInfo info = Create("dk-pids", spec);
  int started = 0;
  bool refused = false;
  for (int i = 0; i < 30 && !refused; ++i) {
    long status = 0;
    Guest(info, "process/start", {{"session_id", "p"}, {"command", "sleep 60"}}, &status);
    if (status == 200) {
      ++started;
    } else {
      refused = true;
    }
  }
  EXPECT_TRUE(refused) << started << " processes started under a limit of 12";
  EXPECT_LT(started, 12);
  // The sandbox still answers once the sleepers are gone.
  Guest(info, "process/kill", {{"pattern", "^sleep 60$"}});
  EXPECT_EQ(Exec(info, "echo alive")["output"], "alive\n");
}

TEST_F(DockerEngine, MemoryLimitKillsTheHog) {
  SandboxSpec spec;
  spec.limits.memory_bytes = 64ull << 20;
  SandboxInfo info = Create("dk-mem", spec);
  // tail -n 1 keeps everything it reads until a newline comes, and /dev/zero has none.
  Json r = Exec(info, "head -c 300M /dev/zero | tail -n 1 | wc -c; echo ${PIPESTATUS[1]}");
  EXPECT_EQ(r["output"], "0\n137\n");
  EXPECT_EQ(Exec(info, "echo alive")["output"], "alive\n");
}

TEST_F(DockerEngine, NetworkNoneHostAndNamed) {
  SandboxInfo none = Create("dk-net-none");
  EXPECT_EQ(Exec(none, "ls /sys/class/net")["output"], "lo\n");

  SandboxSpec host;
  host.network = NetworkMode::kHost;
  Create("dk-net-host", host);
  EXPECT_EQ(Inspect("dk-net-host")["HostConfig"]["NetworkMode"], "host");

  const std::string net = "agentbox-test-" + std::to_string(::getpid());
  ASSERT_EQ(
      EngineStatus("POST", "/networks/create", Json{{"Name", net}, {"Internal", true}}.dump()),
      201);
  SandboxSpec named;
  named.network_name = net;
  SandboxInfo n = Create("dk-net-named", named);
  EXPECT_TRUE(Inspect("dk-net-named")["NetworkSettings"]["Networks"].contains(net));
  EXPECT_EQ(Exec(n, "ls /sys/class/net | tr '\\n' ' '")["output"], "eth0 lo ");
  ASSERT_TRUE(backend_->Destroy("dk-net-named"));
  EXPECT_EQ(EngineStatus("DELETE", "/networks/" + net), 204);

  SandboxSpec both;
  both.network = NetworkMode::kHost;
  both.network_name = net;
  EXPECT_EQ(backend_->Create("dk-net-bad", both).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(DockerEngine, ANewBackendObjectFindsEverythingAgainWithClaimAndExpiry) {
  SandboxSpec pool_spec;  // a warm pool starts sandboxes without an owner
  pool_spec.ttl_s = 3600;
  SandboxInfo pooled = Create("dk-pooled", pool_spec);
  SandboxSpec owned_spec;
  owned_spec.owner = "bob";
  SandboxInfo owned = Create("dk-owned", owned_spec);
  ASSERT_TRUE(backend_->GetCapabilities().claim);

  SandboxSpec claim;
  claim.owner = "alice";
  claim.labels = {{"task", "42"}};
  auto claimed = backend_->Claim("dk-pooled", claim, 4'000'000'000.0);
  ASSERT_TRUE(claimed) << claimed.error().message;
  EXPECT_EQ(claimed->spec.owner, "alice");
  EXPECT_EQ(claimed->spec.labels, claim.labels);
  EXPECT_EQ(backend_->Claim("dk-pooled", claim, 1).error().code, ErrorCode::kConflict);
  ASSERT_TRUE(backend_->SetExpiry("dk-owned", 4'100'000'000.0));
  EXPECT_EQ(Exec(pooled, "cd /tmp; export KEEP=1")["returncode"], 0);

  // The daemon restarts: a new backend object over the same state directory.
  DockerBackend again(opts_);
  auto list = again.List();
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->size(), 2u);
  std::map<std::string, SandboxInfo> by_id;
  for (const auto& i : *list) {
    by_id[i.id] = i;
  }
  const SandboxInfo& p = by_id["dk-pooled"];
  EXPECT_EQ(p.state, SandboxState::kRunning);
  EXPECT_EQ(p.spec.owner, "alice");
  EXPECT_EQ(p.spec.labels, claim.labels);
  EXPECT_DOUBLE_EQ(p.expires_at, 4'000'000'000.0);
  EXPECT_EQ(p.guest_endpoint, pooled.guest_endpoint);
  EXPECT_EQ(p.guest_token, pooled.guest_token);
  EXPECT_EQ(by_id["dk-owned"].spec.owner, "bob");
  EXPECT_DOUBLE_EQ(by_id["dk-owned"].expires_at, 4'100'000'000.0);
  // The container labels still hold the creation-time owner.
  EXPECT_EQ(Inspect("dk-pooled")["Config"]["Labels"]["agentbox.owner"], "");
  // The sandbox itself carried on: its session state is intact.
  EXPECT_EQ(Exec(p, "echo $PWD $KEEP")["output"], "/tmp 1\n");
  EXPECT_EQ(again.Claim("dk-pooled", claim, 1).error().code, ErrorCode::kConflict);
}

TEST_F(DockerEngine, ADeadContainerShowsFailedAndOrphansAreCleanedUp) {
  SandboxSpec spec;
  SandboxInfo dead = Create("dk-killed", spec);
  Create("dk-no-dir", spec);
  Create("dk-no-container", spec);
  Create("dk-expired", spec);

  // The sandbox's container dies (SIGKILL to the guest): Get says so.
  ASSERT_EQ(EngineStatus("POST", "/containers/agentbox-dk-killed/kill?signal=KILL"), 204);
  SandboxInfo got;
  for (auto deadline = std::chrono::steady_clock::now() + 20s;
       std::chrono::steady_clock::now() < deadline;) {
    got = *backend_->Get("dk-killed");
    if (got.state != SandboxState::kRunning) {
      break;
    }
  }
  EXPECT_EQ(got.state, SandboxState::kFailed);
  EXPECT_NE(got.detail.find("exited with code 137"), std::string::npos) << got.detail;

  // Orphans: a container whose host directory is gone, a host directory without its container,
  // an exited container past its expiry.
  ASSERT_TRUE(disk::Unmount(opts_.state_dir + "/dk-no-dir/disk"));
  ASSERT_TRUE(RemoveTree(opts_.state_dir + "/dk-no-dir"));
  ASSERT_EQ(EngineStatus("DELETE", "/containers/agentbox-dk-no-container?force=1&v=1"), 204);
  ASSERT_TRUE(backend_->SetExpiry("dk-expired", 1.0));
  ASSERT_EQ(EngineStatus("POST", "/containers/agentbox-dk-expired/kill?signal=KILL"), 204);
  for (auto deadline = std::chrono::steady_clock::now() + 20s;
       std::chrono::steady_clock::now() < deadline &&
       Inspect("dk-expired")["State"]["Status"] != "exited";) {
    std::this_thread::yield();
  }
  const std::string stray = opts_.state_dir + "/dk-stray";
  ASSERT_EQ(::mkdir(stray.c_str(), 0700), 0);

  // After a restart, the first List cleans up.
  DockerBackend again(opts_);
  auto list = again.List();
  ASSERT_TRUE(list) << list.error().message;
  std::vector<std::string> ids;
  for (const auto& i : *list) {
    ids.push_back(i.id);
  }
  EXPECT_EQ(ids, std::vector<std::string>({"dk-killed"})) << "the died sandbox stays visible";
  EXPECT_EQ(EngineStatus("GET", "/containers/agentbox-dk-no-dir/json"), 404);
  EXPECT_EQ(EngineStatus("GET", "/containers/agentbox-dk-expired/json"), 404);
  EXPECT_FALSE(PathExists(opts_.state_dir + "/dk-expired"));
  EXPECT_FALSE(PathExists(opts_.state_dir + "/dk-no-container"));
  EXPECT_FALSE(PathExists(stray));
  // Cleaning up again keeps the died sandbox (still within its TTL).
  EXPECT_TRUE(again.CleanupOrphans());
  EXPECT_EQ(again.Get("dk-killed")->guest_token, dead.guest_token);
}

TEST_F(DockerEngine, MissingImageIsAClearErrorNamingIt) {
  SandboxSpec spec;
  spec.image = "agentbox/does-not-exist:1";
  auto c = backend_->Create("dk-noimage", spec);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kNotFound);
  EXPECT_NE(c.error().message.find("agentbox/does-not-exist:1"), std::string::npos)
      << c.error().message;
  EXPECT_FALSE(PathExists(opts_.state_dir + "/dk-noimage"));

  // Prepare tries to pull it: no registry knows it, or none is reachable (here: no internet).
  std::vector<std::string> lines;
  auto p = backend_->Prepare(spec, [&](std::string_view l) { lines.emplace_back(l); });
  ASSERT_FALSE(p);
  EXPECT_TRUE(p.error().code == ErrorCode::kNotFound || p.error().code == ErrorCode::kUnavailable)
      << p.error().message;
  EXPECT_NE(p.error().message.find("agentbox/does-not-exist:1"), std::string::npos)
      << p.error().message;
  // Refused at once, before any progress: the caller can answer with an ordinary error.
  EXPECT_TRUE(lines.empty()) << lines[0];

  lines.clear();
  ASSERT_TRUE(backend_->Prepare(SandboxSpec{}, [&](std::string_view l) { lines.emplace_back(l); }));
  EXPECT_EQ(lines, std::vector<std::string>({"image agentbox/base:latest is present"}));
}

TEST_F(DockerEngine, AGuestThatCannotStartFailsCreateWithItsLog) {
  // An image with no shell at all: the guest exits at once, and Create says why.
  TempDir empty;
  const std::string image = "agentbox/test-noshell:" + std::to_string(::getpid());
  const std::string cmd =
      "tar -C " + empty.path() + " -c . | docker import - " + image + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    GTEST_SKIP() << "cannot import an empty image with the docker CLI: " << cmd;
  }
  SandboxSpec spec;
  spec.image = image;
  auto c = backend_->Create("dk-noshell", spec);
  EngineStatus("DELETE", "/images/" + image + "?force=1");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(c.error().message.find("stopped while starting"), std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("no shell found"), std::string::npos) << c.error().message;
  EXPECT_EQ(EngineStatus("GET", "/containers/agentbox-dk-noshell/json"), 404);
  EXPECT_FALSE(PathExists(opts_.state_dir + "/dk-noshell"));
}

}  // namespace
}  // namespace agentbox::docker
