// Bulk transfers through agentboxd on every backend: raw and chunked uploads, directory archives
// (plain, gzip, zstd) byte-identical both ways, hostile archives refused with nothing left
// behind, and clients that vanish mid-stream leaving no partial file under the final name and no
// descriptor held by the daemon.
#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "archive/tar_format.h"
#include "conformance_fixture.h"

namespace {

using agentbox::conformance::Backends;
using agentbox::conformance::Conformance;
using agentbox::conformance::Json;
using agentbox::conformance::Reply;
namespace tar = agentbox::archive::tar;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string Blob(size_t n, unsigned seed) {
  std::string b(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] = static_cast<char>(x);
  }
  return b;
}

// One tar entry (ustar; a pax header for long names).
void AddEntry(std::string& out, const std::string& name, char type, const std::string& data = "",
              const std::string& link = "") {
  auto header = [&out](const std::string& n, char t, uint64_t size, const std::string& l) {
    char b[512] = {};
    std::memcpy(b, n.data(), std::min<size_t>(n.size(), 100));
    std::memcpy(b + 157, l.data(), std::min<size_t>(l.size(), 100));
    tar::PutOctal(b, tar::kMode, 0644);
    tar::PutOctal(b, tar::kUid, 0);
    tar::PutOctal(b, tar::kGid, 0);
    tar::PutOctal(b, tar::kSize, size);
    tar::PutOctal(b, tar::kMtime, 1700000000);
    b[156] = t;
    std::memcpy(b + 257, "ustar", 6);
    std::memcpy(b + 263, "00", 2);
    tar::SetChecksum(b);
    out.append(b, 512);
  };
  auto pad = [&out](size_t n) {
    if (n % 512) {
      out.append(512 - n % 512, '\0');
    }
  };
  if (name.size() > 100) {
    const std::string pax = tar::PaxRecord("path", name);
    header("././@PaxHeader", 'x', pax.size(), "");
    out += pax;
    pad(pax.size());
  }
  header(name.substr(0, 100), type, data.size(), link);
  out += data;
  pad(data.size());
}

// Speaks HTTP on the daemon's socket by hand, to vanish halfway through a transfer.
class RawClient {
 public:
  explicit RawClient(const std::string& socket) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", socket.c_str());
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  ~RawClient() { Close(); }
  bool ok() const { return ok_; }
  bool Send(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  }
  size_t Receive(size_t at_least) {
    char buf[65536];
    size_t got = 0;
    while (got < at_least) {
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        break;
      }
      got += static_cast<size_t>(n);
    }
    return got;
  }
  void Close() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

size_t OpenFds(pid_t pid) {
  size_t n = 0;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (::readdir(d)) {
      ++n;
    }
    ::closedir(d);
  }
  return n;
}

class Bulk : public Conformance {
 protected:
  void SetUp() override {
    if (GetParam() == "cloudrun") {
      // Not a capability /v1/info can state yet, so said here: in job mode the daemon itself
      // serves the sandbox's files from the bucket (backends/cloudrun/guest_server.cc), and that
      // server takes multipart uploads only and has no file/archive (docs/cloudrun.md).
      GTEST_SKIP() << "cloudrun job mode: raw-body uploads and file/archive are not served by the "
                      "daemon's bucket file server (docs/cloudrun.md); session mode has them";
    }
    Conformance::SetUp();
  }
  std::string Url(const std::string& op, const std::string& query) {
    return "/v1/sandboxes/" + id_ + "/api/v1/file/" + op + "?" + query;
  }
  // `ls -a DIR` in the sandbox, one name per line.
  std::string List(const std::string& dir) {
    return Exec("s", "ls -a " + dir + " 2>&1")["output"].get<std::string>();
  }
  // Waits until `ls -a DIR` no longer mentions `name` (the guest noticed the client left).
  bool GoneFrom(const std::string& dir, const std::string& name) {
    const auto until = Clock::now() + 20s;
    while (Clock::now() < until) {
      if (List(dir).find(name) == std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
};

TEST_P(Bulk, RawAndChunkedUploadsRoundTrip) {
  const std::string blob = Blob(8 << 20, 1);
  Reply raw = daemon_->Call("POST", Url("upload", "path=/workspace/raw.bin"), blob, true,
                            {"Content-Type: application/octet-stream"});
  ASSERT_EQ(raw.status, 200) << raw.body;
  EXPECT_EQ(raw.data()["file_size"], blob.size());
  Reply chunked =
      daemon_->Call("POST", Url("upload", "path=/workspace/chunked.bin"), blob, true,
                    {"Content-Type: application/octet-stream", "Transfer-Encoding: chunked"});
  ASSERT_EQ(chunked.status, 200) << chunked.body;
  for (const char* name : {"raw.bin", "chunked.bin"}) {
    Reply down = daemon_->Call("GET", Url("download", std::string("path=/workspace/") + name));
    EXPECT_EQ(down.status, 200);
    EXPECT_TRUE(down.body == blob) << name << " differs (" << down.body.size() << " bytes)";
  }
  Reply no_path = daemon_->Call("POST", Url("upload", ""), "x", false,
                                {"Content-Type: application/octet-stream"});
  EXPECT_EQ(no_path.status, 422) << no_path.body;
  Reply missing = daemon_->Call("GET", Url("download", "path=/workspace/nothing"), "", false);
  EXPECT_EQ(missing.status, 404) << missing.body;
}

TEST_P(Bulk, ArchivesRoundTripDirectories) {
  Exec("s",
       "mkdir -p /workspace/t/a/b /workspace/t/empty && cd /workspace/t && "
       "head -c 3000000 /dev/urandom > a/big && printf x > a/b/one && : > zero && "
       "ln -s a/b/one link && ln a/big hard && chmod 0750 a && chmod 0600 a/b/one && "
       "mkdir -p " +
           std::string(120, 'd') + " && echo long > " + std::string(120, 'd') + "/" +
           std::string(150, 'f'));
  const std::string listing =
      "find . -printf '%p %y %m %l %n\\n' | sort; find . -type f -exec md5sum {} + | sort";
  const std::string want = Exec("s", "cd /workspace/t && " + listing)["output"];
  for (const char* c : {"none", "gzip", "zstd"}) {
    Reply got =
        daemon_->Call("GET", Url("archive", std::string("path=/workspace/t&compression=") + c));
    ASSERT_EQ(got.status, 200) << c << ": " << got.body.substr(0, 300);
    const std::string dir = std::string("/workspace/copy-") + c;
    Reply put = daemon_->Call("POST", Url("archive", "path=" + dir), got.body, true,
                              {"Content-Type: application/x-tar"});
    ASSERT_EQ(put.status, 200) << c << ": " << put.body;
    EXPECT_EQ(Exec("s", "cd " + dir + " && " + listing)["output"], want) << c;
  }
  // Unpacking over an existing, non-empty directory needs overwrite=true.
  Reply again = daemon_->Call("POST", Url("archive", "path=/workspace/copy-none"),
                              daemon_->Call("GET", Url("archive", "path=/workspace/t")).body, false,
                              {"Content-Type: application/x-tar"});
  EXPECT_EQ(again.status, 409) << again.body;
  Reply bad = daemon_->Call("GET", Url("archive", "path=/workspace/t/zero"), "", false);
  EXPECT_EQ(bad.status, 400) << bad.body;
}

TEST_P(Bulk, HostileArchivesAreRefusedWithNothingUnpacked) {
  struct Case {
    const char* what;
    std::string tarball;
  };
  std::vector<Case> cases;
  auto make = [](auto&&... entries) {
    std::string t;
    (entries(t), ...);
    return t + std::string(1024, '\0');
  };
  auto file = [](std::string n) { return [n](std::string& t) { AddEntry(t, n, '0', "evil"); }; };
  auto link = [](std::string n, char type, std::string to) {
    return [n, type, to](std::string& t) { AddEntry(t, n, type, "", to); };
  };
  cases.push_back({"dotdot", make(file("ok"), file("../evil"))});
  cases.push_back({"absolute", make(file("/tmp/agentbox-evil"))});
  cases.push_back({"symlink out", make(link("s", '2', "../../tmp"))});
  cases.push_back({"symlink absolute", make(link("s", '2', "/etc"))});
  cases.push_back(
      {"write through symlink", make(link("d", '5', ""), link("s", '2', "d"), file("s/x"))});
  cases.push_back({"hard link out", make(link("h", '1', "../outside"))});
  cases.push_back({"hard link absolute", make(link("h", '1', "/etc/passwd"))});
  cases.push_back({"device node", make(link("null", '3', ""))});
  cases.push_back({"huge name", make(file(std::string(5000, 'a')))});
  const std::string before = List("/workspace");
  for (const auto& c : cases) {
    Reply r = daemon_->Call("POST", Url("archive", "path=/workspace/h"), c.tarball, false,
                            {"Content-Type: application/x-tar"});
    EXPECT_EQ(r.status, 400) << c.what << ": " << r.body;
    EXPECT_FALSE(r.json.value("message", "").empty()) << c.what;
    EXPECT_EQ(List("/workspace"), before) << c.what << " left something in /workspace";
  }
  EXPECT_EQ(List("/tmp").find("agentbox-evil"), std::string::npos);
  EXPECT_EQ(List("/").find("evil"), std::string::npos);
}

TEST_P(Bulk, ClientsThatVanishLeaveNoPartialFileAndFreeTheDaemon) {
  List("/workspace");  // the daemon's idle connection to the guest is open from here on
  const size_t fds_before = OpenFds(daemon_->pid());
  {  // An upload cut after 4 of 64 MiB.
    RawClient c(daemon_->socket());
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.Send("POST " + Url("upload", "path=/workspace/partial.bin") +
                       " HTTP/1.1\r\nHost: d\r\nContent-Type: application/octet-stream\r\n"
                       "Content-Length: " +
                       std::to_string(64 << 20) + "\r\n\r\n"));
    ASSERT_TRUE(c.Send(Blob(4 << 20, 2)));
  }
  {  // An archive cut in the middle of an entry.
    std::string t;
    AddEntry(t, "f", '0', Blob(8 << 20, 3));
    RawClient c(daemon_->socket());
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.Send("POST " + Url("archive", "path=/workspace/pdir") +
                       " HTTP/1.1\r\nHost: d\r\nContent-Type: application/x-tar\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n"));
    char size[32];
    std::snprintf(size, sizeof(size), "%zx\r\n", t.size() / 2);
    ASSERT_TRUE(c.Send(size + t.substr(0, t.size() / 2) + "\r\n"));
  }
  EXPECT_TRUE(GoneFrom("/workspace", "partial")) << List("/workspace");
  EXPECT_TRUE(GoneFrom("/workspace", "pdir")) << List("/workspace");
  // Downloads abandoned after the first MiB.
  ASSERT_EQ(daemon_
                ->Call("POST", Url("upload", "path=/workspace/big.bin"), Blob(32 << 20, 4), true,
                       {"Content-Type: application/octet-stream"})
                .status,
            200);
  for (const char* op : {"download?path=/workspace/big.bin", "archive?path=/workspace"}) {
    RawClient c(daemon_->socket());
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(
        c.Send("GET /v1/sandboxes/" + id_ + "/api/v1/file/" + op + " HTTP/1.1\r\nHost: d\r\n\r\n"));
    EXPECT_GE(c.Receive(1 << 20), 1u << 20) << op;
  }
  const auto until = Clock::now() + 20s;
  // Four abandoned transfers held 24 descriptors (two sockets and two pipes each); a slack of
  // two allows for another idle keep-alive connection the daemon may open to the guest meanwhile.
  const size_t limit = fds_before + 2;
  while (OpenFds(daemon_->pid()) > limit && Clock::now() < until) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_LE(OpenFds(daemon_->pid()), limit) << "the daemon still holds transfer descriptors";
  // And the guest serves the next transfer as usual.
  Reply whole = daemon_->Call("GET", Url("download", "path=/workspace/big.bin"));
  EXPECT_EQ(whole.body.size(), size_t{32} << 20);
}

INSTANTIATE_TEST_SUITE_P(Backends, Bulk, ::testing::ValuesIn(Backends()),
                         agentbox::conformance::ParamName);

}  // namespace
