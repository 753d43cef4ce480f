// Live sandboxes moved between the jail and docker backends by agentboxd (docs/migration.md):
// jail -> docker -> jail with a /workspace of several kinds of entries (binary data, an empty
// directory, modes, a symlink) and three sessions; a background process listed as not moved;
// kill -9 of the daemon before and after the switch, then a restart: the sandbox exists exactly
// once, on one backend, and works.
#include <gtest/gtest.h>

#include "migrate/migrate_common.h"
#include "migrate/migrate_fixture.h"

namespace migrate {
namespace {

using crash::Entries;

std::string Populate(Daemon& d) {
  const Reply r = d.Call("POST", "/v1/sandboxes",
                         R"({"backend":"jail","ttl_s":1800,"labels":{"suite":"migrate"}})");
  EXPECT_EQ(r.status, 201) << r.body;
  const std::string id = r.data().value("id", "");
  const Json w = Run(d, id, "setup",
                     "cd /workspace && head -c 65536 /dev/urandom > random.bin && "
                     "printf 'a\\0b\\0\\377' > nul.bin && mkdir -p empty deep/er && chmod 700 "
                     "empty && echo '#!/bin/sh' > deep/er/run.sh && chmod 750 deep/er/run.sh && "
                     "echo secret > key && chmod 600 key && ln -s deep/er/run.sh link && "
                     "touch .hidden");
  EXPECT_EQ(w.value("exit_code", -1), 0) << w.dump();
  MakeSessions(d, id);
  return id;
}

bool HasContainer(const Daemon& d, const std::string& id) {
  return crash::ContainerIds(d.state() + "/docker").count(id) > 0;
}

bool HasJailDir(const Daemon& d, const std::string& id) {
  for (const auto& name : Entries(d.state() + "/jail")) {
    if (name == id) {
      return true;
    }
  }
  return false;
}

class MigrateBackends : public MigrateTest {
 protected:
  MigrateBackends() : MigrateTest("jail") {}
};

TEST_F(MigrateBackends, JailToDockerAndBack) {
  const std::string id = Populate(*d_);
  const Reply bg = d_->Call("POST", "/v1/sandboxes/" + id + "/api/v1/process/start",
                            R"({"session_id":"one","command":"sleep 300"})");
  ASSERT_EQ(bg.status, 200) << bg.body;
  const std::string files = WorkspaceView(*d_, id);
  const std::string sessions = SessionsView(*d_, id);
  ASSERT_NE(files.find("./deep/er/run.sh f 750"), std::string::npos) << files;
  ASSERT_NE(files.find("./empty d 700"), std::string::npos) << files;
  ASSERT_NE(sessions.find("/workspace/dir-two two ptwo fn-two"), std::string::npos) << sessions;
  const Json before = d_->Call("GET", "/v1/sandboxes/" + id).data();

  for (const std::string to : {"docker", "jail"}) {
    SCOPED_TRACE("to " + to);
    const Reply r = Migrate(id, to);
    ASSERT_EQ(r.status, 200) << r.body;
    const Json m = r.data();
    EXPECT_EQ(m["to"], to);
    std::cout << "[ figures ] " << m["from"].get<std::string>() << " -> " << to
              << " total_ms=" << m["timings_ms"]["total"] << " held_ms=" << m["timings_ms"]["held"]
              << "\n";
    const Json after = d_->Call("GET", "/v1/sandboxes/" + id).data();
    EXPECT_EQ(after["backend"], to);
    EXPECT_EQ(after["labels"], before["labels"]);
    EXPECT_EQ(after["expires_at"], before["expires_at"]);
    EXPECT_EQ(WorkspaceView(*d_, id), files);
    EXPECT_EQ(SessionsView(*d_, id), sessions);
    if (to == "docker") {
      bool listed = false;
      for (const auto& n : m["not_moved"]) {
        listed |= n.value("what", "") == "process" && n.value("command", "") == "sleep 300";
      }
      EXPECT_TRUE(listed) << m["not_moved"].dump();
      EXPECT_FALSE(HasJailDir(*d_, id)) << "the jail sandbox is gone";
      EXPECT_TRUE(HasContainer(*d_, id));
    } else {
      EXPECT_FALSE(HasContainer(*d_, id)) << "the container is gone";
      EXPECT_TRUE(HasJailDir(*d_, id));
    }
  }
  EXPECT_EQ(d_->ListedIds().size(), 1u);
  EXPECT_EQ(d_->Metric("agentbox_migrations_total{from=\"jail\",to=\"docker\",outcome=\"ok\"}"), 1);
}

// kill -9 mid-move, restart: before the switch the sandbox is still the jail's (the partial
// container is removed); after it, docker's (the jail sandbox is removed). Never both, never none.
TEST_F(MigrateBackends, KilledMidMoveTheSandboxExistsOnce) {
  for (const std::string point : {"daemon.migrate.journaled", "daemon.migrate.copied",
                                  "daemon.migrate.switched", "daemon.migrate.opened"}) {
    SCOPED_TRACE(point);
    d_->Stop();
    ASSERT_TRUE(d_->Start("", 0));
    const std::string id = Populate(*d_);
    const std::string files = WorkspaceView(*d_, id);
    const std::string sessions = SessionsView(*d_, id);
    d_->Stop();
    ASSERT_TRUE(d_->Start(point, 0));
    const Reply cut = Migrate(id, "docker");
    EXPECT_EQ(cut.status, 0) << "the daemon answered instead of dying: " << cut.body;
    ASSERT_TRUE(d_->WaitKilled());
    ASSERT_TRUE(d_->Start("", 0)) << d_->LogText();
    const bool switched = point == "daemon.migrate.switched" || point == "daemon.migrate.opened";
    const std::string where = switched ? "docker" : "jail";
    const auto listed = d_->List();
    int seen = 0;
    for (const auto& s : listed) {
      if (s.value("id", "") == id) {
        ++seen;
        EXPECT_EQ(s.value("backend", ""), where);
      }
    }
    EXPECT_EQ(seen, 1);
    // The start-up sweep counts the repair like the backends' (docs/reliability.md).
    const std::string what = switched ? "migration_finished" : "migration_rolled_back";
    EXPECT_EQ(d_->Metric("agentbox_recovered_total{backend=\"" + where + "\",what=\"" + what +
                         "\"}"),
              1)
        << d_->Call("GET", "/metrics").body;
    EXPECT_NE(d_->LogText().find("migration.recovered id=" + id), std::string::npos);
    EXPECT_EQ(HasContainer(*d_, id), switched);
    EXPECT_EQ(HasJailDir(*d_, id), !switched);
    EXPECT_TRUE(d_->Works(id));
    EXPECT_EQ(WorkspaceView(*d_, id), files);
    EXPECT_EQ(SessionsView(*d_, id), sessions);
    EXPECT_EQ(Entries(d_->state() + "/migrations").size(), 0u);
    EXPECT_EQ(d_->Call("DELETE", "/v1/sandboxes/" + id).status, 200);
    EXPECT_FALSE(HasContainer(*d_, id));
    EXPECT_FALSE(HasJailDir(*d_, id));
  }
}

}  // namespace
}  // namespace migrate
