// A sandbox of a Docker engine image moved docker -> jail -> docker (docs/migration.md): the jail
// resolves the same image name through its image store (docs/images.md), so the sandbox runs the
// same image on both backends, with a writable root and the image's Env and WorkingDir; its
// /workspace and sessions move; what it wrote outside /workspace does not, and is listed in
// `not_moved`.
#include <gtest/gtest.h>

#include "migrate/migrate_common.h"
#include "migrate/migrate_fixture.h"

namespace migrate {
namespace {

constexpr const char* kImage = "agentbox/base:latest";

// The image's Env and WorkingDir, as the engine has them.
Json ImageConfig() {
  const Json j = crash::Http("/var/run/docker.sock", "GET",
                             "http://localhost/images/agentbox%2Fbase:latest/json")
                     .json();
  return j.is_object() && j.contains("Config") && j["Config"].is_object() ? j["Config"] : Json();
}

class MigrateImage : public MigrateTest {
 protected:
  MigrateImage() : MigrateTest("docker") {}

  // Which image's files the root holds: the listing of the image's /usr/bin and its os-release
  // (the host's system directories, the jail's other root, differ from agentbox/base in both).
  std::string ImageFingerprint(const std::string& id) {
    return migrate::Run(
               *d_, id, "probe",
               "cat /etc/os-release; ls -1 /usr/bin | sha256sum; ls -1 /usr/lib | sha256sum")
        .value("stdout", "?");
  }
};

TEST_F(MigrateImage, EngineImageDockerToJailAndBack) {
  const Json config = ImageConfig();
  ASSERT_TRUE(config.is_object()) << "the engine does not describe " << kImage;
  const Reply r = d_->Call("POST", "/v1/sandboxes",
                           Json{{"backend", "docker"},
                                {"image", kImage},
                                {"ttl_s", 1800},
                                {"labels", {{"suite", "migrate"}}}}
                               .dump());
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.data().value("id", "");
  const Json w =
      migrate::Run(*d_, id, "setup",
                   "cd /workspace && head -c 262144 /dev/urandom > random.bin && mkdir -p "
                   "src/pkg empty && echo 'print(1)' > src/pkg/main.py && chmod 750 "
                   "src/pkg/main.py && ln -s src/pkg/main.py entry && echo secret > key && "
                   "chmod 600 key");
  ASSERT_EQ(w.value("exit_code", -1), 0) << w.dump();
  MakeSessions(*d_, id);
  const std::string image = ImageFingerprint(id);
  const std::string files = WorkspaceView(*d_, id);
  const std::string sessions = SessionsView(*d_, id);
  ASSERT_NE(image.find("Debian"), std::string::npos) << image;
  ASSERT_NE(sessions.find("/workspace/dir-two two ptwo fn-two"), std::string::npos) << sessions;

  for (const std::string to : {"jail", "docker"}) {
    SCOPED_TRACE("to " + to);
    // A write outside /workspace, in the writable root: it stays behind and must be listed.
    const Json marker = migrate::Run(*d_, id, "setup",
                                     "mkdir -p /usr/local/share/left && echo behind > "
                                     "/usr/local/share/left/on-" +
                                         std::string(to == "jail" ? "docker" : "jail"));
    ASSERT_EQ(marker.value("exit_code", -1), 0) << marker.dump();

    const Reply m = Migrate(id, to);
    ASSERT_EQ(m.status, 200) << m.body;
    const Json moved = m.data();
    std::cout << "[ figures ] " << moved["from"].get<std::string>() << " -> " << to
              << " total_ms=" << moved["timings_ms"]["total"]
              << " held_ms=" << moved["timings_ms"]["held"]
              << " not_moved=" << moved["not_moved"].dump() << "\n";
    bool root_listed = false;
    for (const auto& n : moved["not_moved"]) {
      if (n.value("what", "") == "files" && n.value("path", "") == "/") {
        root_listed = true;
        // Exactly what the sandbox wrote there (the marker, and /usr/local/bin made by the
        // install below on the first backend): not /workspace, nor the backends' own mount
        // points (/run/agentbox, the guest's binary).
        bool wrote = false;
        for (const auto& c : n.value("changed", Json::array())) {
          const std::string path = c.value("path", "");
          EXPECT_TRUE(path.starts_with("/usr/local/")) << path << " in " << n.dump();
          wrote |= path.starts_with("/usr/local/share/left/on-") && c.value("kind", "") == "added";
        }
        EXPECT_TRUE(wrote) << n.dump();
        EXPECT_EQ(n.value("changed_total", size_t{0}), n.value("changed", Json::array()).size());
      }
    }
    EXPECT_TRUE(root_listed) << "a write under /usr/local is not listed: "
                             << moved["not_moved"].dump();

    const Json after = d_->Call("GET", "/v1/sandboxes/" + id).data();
    EXPECT_EQ(after.value("backend", ""), to);
    EXPECT_EQ(after.value("image", ""), kImage) << after.dump();
    EXPECT_EQ(ImageFingerprint(id), image) << "not the same image's root on " << to;
    EXPECT_EQ(WorkspaceView(*d_, id), files);
    EXPECT_EQ(SessionsView(*d_, id), sessions);
    // The root is the image's, fresh: what the old sandbox wrote there did not come along, and
    // it is writable (an install under /usr/local/bin runs from PATH).
    const Json root =
        migrate::Run(*d_, id, "fresh",
                     "ls /usr/local/share/left 2>&1; mkdir -p /usr/local/bin && printf "
                     "'#!/bin/sh\\necho installed\\n' > /usr/local/bin/abx-tool && chmod +x "
                     "/usr/local/bin/abx-tool && abx-tool && rm /usr/local/bin/abx-tool");
    EXPECT_EQ(root.value("exit_code", -1), 0) << root.dump();
    EXPECT_NE(root.value("stdout", "").find("installed"), std::string::npos) << root.dump();
    EXPECT_EQ(root.value("stdout", "").find("on-"), std::string::npos)
        << "files outside /workspace moved: " << root.dump();
    // The image's Env and WorkingDir, in a new session.
    for (const auto& kv : config.value("Env", Json::array())) {
      const std::string s = kv.get<std::string>();
      const std::string key = s.substr(0, s.find('='));
      EXPECT_EQ(migrate::Run(*d_, id, "env-" + to, "printenv " + key).value("stdout", "?"),
                s.substr(s.find('=') + 1) + "\n")
          << key;
    }
    const std::string workdir = config.value("WorkingDir", "");
    if (!workdir.empty()) {
      EXPECT_EQ(migrate::Run(*d_, id, "wd-" + to, "pwd").value("stdout", "?"), workdir + "\n");
    }
  }
  EXPECT_EQ(d_->ListedIds().size(), 1u);
  EXPECT_EQ(d_->Metric("agentbox_migrations_total{from=\"docker\",to=\"jail\",outcome=\"ok\"}"), 1);
  EXPECT_EQ(d_->Metric("agentbox_migrations_total{from=\"jail\",to=\"docker\",outcome=\"ok\"}"), 1);
}

}  // namespace
}  // namespace migrate
