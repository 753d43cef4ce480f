// SetLogBudget: a process whose log a sandbox can make it write (agentbox-guest) writes at most
// its budget, says once that it stopped, and cuts long lines.
#include "common/log_budget.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common/log.h"

namespace agentbox {
namespace {

TEST(LogBudget, LinesAreCutAndTheTotalIsBounded) {
  char path[] = "/tmp/agentbox-log-budget-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const int saved = dup(STDERR_FILENO);
  ASSERT_EQ(dup2(fd, STDERR_FILENO), STDERR_FILENO);
  SetLogBudget(20000, 200);
  const std::string huge(100000, 'x');
  for (int i = 0; i < 1000; ++i) {
    Log(LogLevel::kInfo, "test.flood", "i={} cmd={}", i, huge);
  }
  SetLogBudget(0, 0);
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  unlink(path);
  EXPECT_LE(text.size(), 20000u + 300u);
  EXPECT_NE(text.find("...(cut "), std::string::npos);
  size_t spent = 0;
  for (size_t at = text.find("log.budget_spent"); at != std::string::npos;
       at = text.find("log.budget_spent", at + 1)) {
    ++spent;
  }
  EXPECT_EQ(spent, 1u) << text.substr(text.size() > 500 ? text.size() - 500 : 0);
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_LE(line.size(), 240u);
  }
}

}  // namespace
}  // namespace agentbox
