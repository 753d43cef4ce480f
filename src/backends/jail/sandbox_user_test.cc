// The `user` account a jail over a shared read-only /etc gets (sandbox_user.h).
#include "backends/jail/sandbox_user.h"

#include <gtest/gtest.h>

namespace agentbox::jail {
namespace {

TEST(SandboxUserTest, PicksTheFirstIdFreeInBothFiles) {
  const std::string passwd =
      "root:x:0:0:root:/root:/bin/bash\ncloudsdk:x:1000:1000::/home/cloudsdk:/bin/bash\n";
  const std::string group = "root:x:0:\ncloudsdk:x:1000:\nstaff:x:1001:\n";
  const UserEntries e = PlanUserEntries(passwd, group, "/bin/bash");
  EXPECT_EQ(e.uid, 1002u);
  EXPECT_EQ(e.gid, 1002u);
  EXPECT_EQ(e.passwd_line, "user:x:1002:1002:user:/home/user:/bin/bash\n");
  EXPECT_EQ(e.group_line, "user:x:1002:\n");
}

TEST(SandboxUserTest, UsesOneThousandOnAPlainSystem) {
  const UserEntries e = PlanUserEntries("root:x:0:0::/root:/bin/sh\n", "root:x:0:\n", "/bin/sh");
  EXPECT_EQ(e.uid, 1000u);
  EXPECT_EQ(e.passwd_line, "user:x:1000:1000:user:/home/user:/bin/sh\n");
}

TEST(SandboxUserTest, KeepsAnExistingUserEntry) {
  const UserEntries e = PlanUserEntries(
      "root:x:0:0::/root:/bin/sh\nuser:x:1500:1501::/home/user:/bin/sh\nusers2:x:7:7::/:/x\n",
      "user:x:1501:\n", "/bin/sh");
  EXPECT_EQ(e.uid, 1500u);
  EXPECT_EQ(e.gid, 1501u);
  EXPECT_TRUE(e.passwd_line.empty());
  EXPECT_TRUE(e.group_line.empty());
}

TEST(SandboxUserTest, IgnoresMalformedLines) {
  const UserEntries e = PlanUserEntries("garbage\n\n:x\nroot:x:1000\n", "", "/bin/sh");
  EXPECT_EQ(e.uid, 1000u);  // "root:x:1000" has no fourth field: not an entry
}

}  // namespace
}  // namespace agentbox::jail
