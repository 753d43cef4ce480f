#include "guest/run_once.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

namespace agentbox::guest {
namespace {

class RunOnceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/agentbox-runonce-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { ASSERT_EQ(system(("rm -rf '" + dir_ + "'").c_str()), 0); }

  Json Read(const std::string& path) {
    std::ifstream in(path);
    return Json::parse(in);
  }
  std::string dir_;
};

TEST_F(RunOnceTest, ChainsStateBetweenRuns) {
  RunOnceOptions o;
  o.command = "cd " + dir_ + " && export A=1 && B=2 && f() { echo f$1; } && echo first";
  o.out_path = dir_ + "/1.json";
  ASSERT_TRUE(RunOnceToFile(o));
  Json first = Read(o.out_path);
  EXPECT_EQ(first["exit_code"], 0);
  EXPECT_EQ(first["stdout"], "first\n");
  EXPECT_EQ(first["state"]["cwd"], dir_);
  EXPECT_EQ(first["state"]["env"]["A"], "1");

  // The whole previous output is accepted as the next --state.
  RunOnceOptions o2;
  o2.state_path = o.out_path;
  o2.command = "echo $PWD $A $B; f 2; echo err >&2; exit 4";
  o2.out_path = dir_ + "/2.json";
  ASSERT_TRUE(RunOnceToFile(o2));
  Json second = Read(o2.out_path);
  EXPECT_EQ(second["exit_code"], 4);
  EXPECT_EQ(second["stdout"], dir_ + " 1 2\nf2\n");
  EXPECT_EQ(second["stderr"], "err\n");
  EXPECT_EQ(second["state"]["last_exit_code"], 4);
}

TEST_F(RunOnceTest, WorkdirExecDirAndCombinedOutput) {
  ASSERT_EQ(system(("mkdir -p " + dir_ + "/w " + dir_ + "/x").c_str()), 0);
  RunOnceOptions o;
  o.workdir = dir_ + "/w";
  o.exec_dir = dir_ + "/x";
  o.command = "pwd; echo err >&2; echo out";
  o.out_path = dir_ + "/new/dirs/1.json";  // missing parents are created
  o.combined_output = true;
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof(cwd)), nullptr);
  auto ok = RunOnceToFile(o);
  ASSERT_EQ(chdir(cwd), 0);  // --workdir changed this test process's directory
  ASSERT_TRUE(ok) << ok.error().message;
  Json r = Read(o.out_path);
  // Both streams in `output`, as the session's console shows them (shell/exec).
  const std::string out = r["output"];
  EXPECT_TRUE(out == dir_ + "/x\nerr\nout\n" || out == dir_ + "/x\nout\nerr\n") << out;
  EXPECT_EQ(r["stdout"], "");
  // exec_dir is for that command only: the session stays in its working directory.
  EXPECT_EQ(r["state"]["cwd"], dir_ + "/w");
}

TEST_F(RunOnceTest, ARefusedRequestIsAResultWithTheError) {
  RunOnceOptions o;
  o.exec_dir = dir_ + "/missing";
  o.command = "true";
  o.out_path = dir_ + "/e.json";
  ASSERT_TRUE(RunOnceToFile(o));
  Json r = Read(o.out_path);
  EXPECT_TRUE(r["exit_code"].is_null());
  EXPECT_NE(r["error"]["message"].get<std::string>().find("is not a directory"), std::string::npos);
  EXPECT_TRUE(r["state"].is_object());
}

TEST_F(RunOnceTest, TimeoutKeepsPreviousState) {
  RunOnceOptions o;
  o.command = "export LOST=1; sleep 20";
  o.timeout_s = 0.3;
  o.out_path = dir_ + "/t.json";
  ASSERT_TRUE(RunOnceToFile(o));
  Json r = Read(o.out_path);
  EXPECT_EQ(r["exit_code"], 124);
  EXPECT_EQ(r["timed_out"], true);
  EXPECT_FALSE(r["state"]["env"].contains("LOST"));
}

TEST_F(RunOnceTest, BadStateFileIsAClearError) {
  std::ofstream(dir_ + "/bad.json") << "{not json";
  RunOnceOptions o;
  o.state_path = dir_ + "/bad.json";
  o.command = "true";
  o.out_path = dir_ + "/o.json";
  auto r = RunOnceToFile(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("malformed JSON"), std::string::npos);
  o.state_path = dir_ + "/missing.json";
  r = RunOnceToFile(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(access((dir_ + "/o.json").c_str(), F_OK), 0);  // nothing written on failure
}

}  // namespace
}  // namespace agentbox::guest
