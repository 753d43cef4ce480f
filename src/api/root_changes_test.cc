// CollapseRootChanges: the deepest paths only, the backends' own mount points left out (a
// directory made only for one of them too), sorted, capped.
#include "api/root_changes.h"

#include <gtest/gtest.h>

namespace agentbox {
namespace {

std::vector<std::string> Paths(const RootChanges& c) {
  std::vector<std::string> out;
  for (const auto& p : c.paths) {
    out.push_back(p.path + " " + p.kind);
  }
  return out;
}

TEST(RootChanges, DeepestPathsOnlyAndMountPointsLeftOut) {
  // As the Docker engine lists them: every directory on the way, unsorted.
  const RootChanges c = CollapseRootChanges(
      {{"/usr", "changed"},
       {"/usr/local", "added"},
       {"/usr/local/bin", "added"},
       {"/usr/local/bin/tool", "added"},
       {"/usr/local-b", "added"},  // a sibling that sorts between /usr/local and its files
       {"/run", "changed"},
       {"/run/agentbox", "added"},
       {"/.agentbox", "added"},
       {"/.agentbox/guest", "added"},
       {"/workspace", "changed"},
       {"/tmp/x", "added"},
       {"/etc", "changed"},
       {"/etc/hosts", "changed"},
       {"/etc/apt/sources.list", "deleted"},
       {"/", "changed"},
       {"relative", "added"}},
      100);
  EXPECT_EQ(Paths(c),
            (std::vector<std::string>{"/etc/apt/sources.list deleted", "/usr/local-b added",
                                      "/usr/local/bin/tool added"}));
  EXPECT_EQ(c.total, 3u);
}

TEST(RootChanges, CappedWithTheTotalKept) {
  std::vector<RootChange> all;
  for (int i = 0; i < 250; ++i) {
    all.push_back({"/opt/f" + std::to_string(1000 + i), "added"});
  }
  all.push_back({"/opt", "added"});
  const RootChanges c = CollapseRootChanges(all, 100);
  EXPECT_EQ(c.paths.size(), 100u);
  EXPECT_EQ(c.total, 250u);
  EXPECT_EQ(c.paths.front().path, "/opt/f1000");
  const Json j = RootChangesJson(c);
  EXPECT_EQ(j["changed"].size(), 100u);
  EXPECT_EQ(j["changed_total"], 250);
  EXPECT_EQ(CollapseRootChanges({{"/run/agentbox/guest.sock", "added"}}, 100).total, 0u);
}

}  // namespace
}  // namespace agentbox
