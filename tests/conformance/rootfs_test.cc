// Root filesystem semantics (issue 11 §2): the same on every backend. A sandbox's root is its
// image's, writable copy-on-write and private to the sandbox; read_only_root makes every write
// outside /workspace and /tmp fail with EROFS. What each backend keeps of its root is declared in
// /v1/info (capabilities.root_filesystem: "sandbox", "execution", "command") and the tests assert
// exactly that; a backend that cannot honour read_only_root must answer 400 (then skipped with
// its words).
//
// Images may lack /usr/local (agentbox/base has none): the tests make it, as installers do.
//
// Images: every backend runs agentbox/base:latest (scripts/build-base-image.sh): docker and
// cloudrun as their default image, the jail as an image of the local Docker engine, whose layers
// its image store unpacks once and every jail sandbox of these tests shares as the lower layers
// of its overlay root (docs/images.md). AGENTBOX_CONFORMANCE_JAIL_IMAGE names another image for
// the jail (a directory, a tarball, an OCI layout or archive, an engine image).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "conformance_fixture.h"

namespace {

using agentbox::conformance::BackendOf;
using agentbox::conformance::Backends;
using agentbox::conformance::Daemon;
using agentbox::conformance::DaemonFor;
using agentbox::conformance::Json;
using agentbox::conformance::ParamName;
using agentbox::conformance::Reply;

constexpr const char* kBaseImage = "agentbox/base:latest";

int Shell(const std::string& command) { return std::system(command.c_str()); }

// Images a test made, removed at exit. Constructed before main, so destroyed after the daemons
// DaemonFor makes on first use (static objects end in reverse order): until then a daemon's warm
// pool may hold containers of them, and removing a tag while a container uses its image left one
// dangling 32 MB image per run.
class ImageCleanup {
 public:
  void Add(const std::string& tag) {
    std::string id;
    if (FILE* p = ::popen(("docker image inspect -f '{{.Id}}' " + tag + " 2>/dev/null").c_str(),
                          "r")) {
      char buf[160] = {};
      if (std::fgets(buf, sizeof(buf), p) != nullptr) {
        id = buf;
      }
      ::pclose(p);
    }
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) {
      id.pop_back();
    }
    ids_.push_back(id.empty() ? tag : id);
  }
  ~ImageCleanup() {
    for (const auto& id : ids_) {
      (void)std::system(("docker rmi -f " + id + " >/dev/null 2>&1").c_str());
    }
  }

 private:
  std::vector<std::string> ids_;
};
ImageCleanup g_images;
ImageCleanup& ImagesRemovedAtExit() { return g_images; }

// The jail's image for these tests (its default is the host's directories, not an image).
std::string JailImage() {
  const char* given = std::getenv("AGENTBOX_CONFORMANCE_JAIL_IMAGE");
  return given != nullptr && *given != '\0' ? given : kBaseImage;
}

class RootFs : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "tunnel" && geteuid() != 0) {
      GTEST_SKIP() << "the tunnel's test daemon needs root";
    }
    daemon_ = &DaemonFor(GetParam());
    ASSERT_TRUE(daemon_->ready()) << daemon_->log();
    const Json caps = daemon_->Capabilities();
    root_ = caps.is_object() ? caps.value("root_filesystem", "") : "";
    if (root_.empty()) {
      GTEST_SKIP() << GetParam()
                   << " declares no root filesystem of its own (capabilities.root_filesystem is "
                      "empty): its guests run on the host's root";
    }
    if (BackendOf(GetParam()) == "jail") {
      image_ = JailImage();
    }
  }
  void TearDown() override {
    for (const auto& id : ids_) {
      EXPECT_EQ(daemon_->Call("DELETE", "/v1/sandboxes/" + id).status, 200) << id;
    }
  }

  Reply TryCreate(Json body) {
    body["ttl_s"] = 600;
    body["labels"] = {{"suite", "conformance-rootfs"}};
    if (!image_.empty() && !body.contains("image")) {
      body["image"] = image_;
    }
    Reply r = daemon_->Call("POST", "/v1/sandboxes", body.dump());
    if (r.status == 201) {
      ids_.push_back(r.data()["id"]);
    }
    return r;
  }
  std::string Create(Json body = Json::object()) {
    Reply r = TryCreate(std::move(body));
    EXPECT_EQ(r.status, 201) << r.body << "\n" << daemon_->log();
    return r.status == 201 ? r.data()["id"].get<std::string>() : "";
  }
  Json Exec(const std::string& id, const std::string& command) {
    Reply r =
        daemon_->Call("POST", "/v1/sandboxes/" + id + "/api/v1/shell/exec",
                      Json{{"id", "rootfs"}, {"command", command}, {"wait_seconds", 60}}.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.data();
  }
  std::string Output(const std::string& id, const std::string& command) {
    return Exec(id, command).value("output", "");
  }
  // Whether a later command still sees what an earlier one wrote to the root.
  bool RootPersistsBetweenCommands() const { return root_ == "sandbox" || root_ == "execution"; }

  Daemon* daemon_ = nullptr;
  std::string root_;
  std::string image_;  // empty: the backend's default image (agentbox/base:latest)
  std::vector<std::string> ids_;
};

TEST_P(RootFs, WritesUnderUsrLocalAndEtc) {
  const std::string id = Create();
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Output(id,
                   "mkdir -p /usr/local/share/rootfs && echo hi > /usr/local/share/rootfs/f "
                   "&& echo conf > /etc/rootfs.conf && cat /usr/local/share/rootfs/f "
                   "/etc/rootfs.conf"),
            "hi\nconf\n");
  // Replacing and removing the image's own files works too (copy-up, whiteouts).
  EXPECT_EQ(Output(id,
                   "echo 'rootfs:x:1000:1000::/nonexistent:/bin/sh' >> /etc/passwd && "
                   "grep -c '^rootfs:' /etc/passwd && rm /etc/shadow && "
                   "test ! -e /etc/shadow && echo removed"),
            "1\nremoved\n");
  const std::string later = Output(id, "cat /usr/local/share/rootfs/f 2>/dev/null || echo gone");
  EXPECT_EQ(later, RootPersistsBetweenCommands() ? "hi\n" : "gone\n")
      << "capabilities.root_filesystem = " << root_;
}

TEST_P(RootFs, AnInstalledExecutableRunsFromPath) {
  const std::string id = Create();
  ASSERT_FALSE(id.empty());
  const std::string install =
      "mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho from-path \"$@\"\\n' > "
      "/usr/local/bin/rootfs-hello && "
      "chmod 755 /usr/local/bin/rootfs-hello";
  if (!RootPersistsBetweenCommands()) {
    EXPECT_EQ(Output(id, install + " && rootfs-hello now"), "from-path now\n");
    return;
  }
  EXPECT_EQ(Exec(id, install)["returncode"], 0);
  EXPECT_EQ(Output(id, "command -v rootfs-hello && rootfs-hello a b"),
            "/usr/local/bin/rootfs-hello\nfrom-path a b\n");
}

TEST_P(RootFs, ReadOnlyRootRefusesWithErofs) {
  Reply r = TryCreate({{"read_only_root", true}});
  if (!daemon_->Capabilities().value("read_only_root", false)) {
    EXPECT_EQ(r.status, 400) << r.body;
    const std::string message = r.json.is_object() ? r.json.value("message", "") : "";
    EXPECT_FALSE(message.empty()) << r.body;
    GTEST_SKIP() << GetParam() << " declares capabilities.read_only_root = false; create answers "
                 << r.status << ": " << message;
  }
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.data()["read_only_root"], true);
  const std::string id = r.data()["id"];
  for (const char* path : {"/usr/x", "/etc/x", "/root/x", "/x"}) {
    const Json w = Exec(id, std::string("touch ") + path + " 2>&1");
    EXPECT_NE(w["returncode"], 0) << path;
    EXPECT_NE(w.value("output", "").find("Read-only file system"), std::string::npos)
        << path << ": " << w.dump();
  }
  EXPECT_EQ(Output(id, "touch /workspace/x /tmp/x /dev/shm/x && echo ok"), "ok\n");
}

TEST_P(RootFs, TheRootDoesNotLeakBetweenSandboxesOfOneImage) {
  const std::string a = Create();
  const std::string b = Create();
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(
      Output(a, "mkdir -p /usr/local && echo mine > /usr/local/leak && rm /etc/group && echo ok"),
      "ok\n");
  EXPECT_EQ(Output(b, "test -e /usr/local/leak || echo absent; test -e /etc/group && echo intact"),
            "absent\nintact\n");
}

TEST_P(RootFs, RootChangesSurviveARestartOfTheGuest) {
  if (root_ != "sandbox") {
    GTEST_SKIP() << GetParam() << " declares capabilities.root_filesystem = " << root_
                 << ": its root is not kept when the guest is replaced";
  }
  const std::string id = Create();
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(Output(id, "echo kept > /etc/rootfs-restart && echo w > /workspace/w && echo ok"),
            "ok\n");
  Reply r = daemon_->Call("POST", "/v1/sandboxes/" + id + "/restart-guest", "{}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Output(id, "cat /etc/rootfs-restart /workspace/w"), "kept\nw\n");
}

TEST_P(RootFs, WorkspaceStillWorks) {
  const std::string id = Create();
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Output(id,
                   "pwd; echo data > /workspace/f; cat /workspace/f; df -P /workspace | "
                   "tail -1 | awk '{print ($2 > 0)}'"),
            "/workspace\ndata\n1\n");
}

TEST_P(RootFs, WritesToTheRootCountAgainstTheDiskLimit) {
  const Json caps = daemon_->Capabilities();
  if (caps.value("disk_limit", "none") != "workspace_and_root") {
    GTEST_SKIP() << GetParam()
                 << " declares capabilities.disk_limit = " << caps.value("disk_limit", "none")
                 << ": " << caps.value("disk_limit_note", "");
  }
  const std::string id = Create({{"limits", {{"disk_bytes", 64ll << 20}}}});
  ASSERT_FALSE(id.empty());
  const Json fill =
      Exec(id, "mkdir -p /usr/local && dd if=/dev/zero of=/usr/local/fill bs=1M count=200 2>&1");
  EXPECT_NE(fill["returncode"], 0);
  EXPECT_NE(fill.value("output", "").find("No space left on device"), std::string::npos)
      << fill.dump();
  EXPECT_EQ(Output(id,
                   "rm /usr/local/fill && echo small > /usr/local/after && cat "
                   "/usr/local/after"),
            "small\n");
}

TEST_P(RootFs, TheImagesEnvApplies) {
  const std::string tag = "agentbox/rootfs-env-test:" + std::to_string(getpid());
  const std::string name = "agentbox-rootfs-env-" + std::to_string(getpid());
  ASSERT_EQ(Shell("docker create --name " + name + " " + kBaseImage +
                  " /bin/true >/dev/null && docker commit --change "
                  "'ENV ROOTFS_IMAGE_ENV=from-image' " +
                  name + " " + tag + " >/dev/null; rc=$?; docker rm -f " + name +
                  " >/dev/null 2>&1; exit $rc"),
            0);
  const std::string id = Create({{"image", tag}, {"env", {{"ROOTFS_SPEC_ENV", "from-spec"}}}});
  if (!id.empty()) {
    EXPECT_EQ(Output(id, "echo $ROOTFS_IMAGE_ENV $ROOTFS_SPEC_ENV; pwd"),
              "from-image from-spec\n/workspace\n");
    EXPECT_EQ(daemon_->Call("DELETE", "/v1/sandboxes/" + id).status, 200);
    ids_.clear();
  }
  // The daemon's warm pool may keep containers of this image until the daemon stops: the image
  // is removed (by id, tag and all) after the daemons, at exit (ImagesRemovedAtExit).
  ImagesRemovedAtExit().Add(tag);
}

INSTANTIATE_TEST_SUITE_P(Backends, RootFs, ::testing::ValuesIn(Backends()), ParamName);

}  // namespace
