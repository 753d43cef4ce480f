#include "guest/sessions/shell_script.h"

#include <gtest/gtest.h>

namespace agentbox::guest {
namespace {

TEST(DecodeShellWord, DoubleQuotedEscapes) {
  std::string t = R"("a \"q\" \$x \\ \` b")";
  size_t pos = 0;
  auto w = DecodeShellWord(t, pos);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, "a \"q\" $x \\ ` b");
  EXPECT_EQ(pos, t.size());
}

TEST(DecodeShellWord, AnsiC) {
  std::string t = R"($'x\ny\t"q" $d \\ `b` \001 \377 \'s\' \u00e9')";
  size_t pos = 0;
  auto w = DecodeShellWord(t, pos);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, std::string("x\ny\t\"q\" $d \\ `b` \x01 \xff 's' \xc3\xa9"));
}

TEST(DecodeShellWord, ConcatenatedSingleQuotes) {
  std::string t = R"('it'\''s' rest)";
  size_t pos = 0;
  auto w = DecodeShellWord(t, pos);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, "it's");
  EXPECT_EQ(t.substr(pos), " rest");
}

TEST(DecodeShellWord, Unterminated) {
  for (std::string t : {"\"abc", "'abc", "$'abc"}) {
    size_t pos = 0;
    EXPECT_FALSE(DecodeShellWord(t, pos)) << t;
  }
}

TEST(ParseDeclareOutput, SplitsEnvAndVariables) {
  const std::string text =
      "declare -x A=$'x\\ny'\n"
      "declare -- B=\"plain\"\n"
      "declare -a arr=([0]=\"1\" [1]=\"a b\" [2]=$'c\\nd')\n"
      "declare -A m=([k]=\"v\" )\n"
      "declare -i I=\"3\"\n"
      "declare -x E\n"
      "declare -ir UID=\"0\"\n"
      "declare -- __ab_post=\"x\"\n"
      "declare -r SHELLOPTS=\"braceexpand:hashall:errexit\"\n"
      "declare -x OLD=\"line1\nline2\"\n";
  SessionState s;
  ASSERT_TRUE(ParseDeclareOutput(text, s));
  EXPECT_EQ(s.env.at("A"), "x\ny");
  EXPECT_EQ(s.env.at("OLD"), "line1\nline2");  // bash 4 style: literal newline in quotes
  EXPECT_EQ(s.env.count("E"), 0u);
  EXPECT_EQ(s.env.count("UID"), 0u);
  EXPECT_EQ(s.set_options, "braceexpand:hashall:errexit");
  ASSERT_EQ(s.variables.size(), 5u);
  EXPECT_EQ(s.variables[0], "declare -- B=\"plain\"");
  EXPECT_EQ(s.variables[1], "declare -a arr=([0]=\"1\" [1]=\"a b\" [2]=$'c\\nd')");
  EXPECT_EQ(s.variables[2], "declare -A m=([k]=\"v\" )");
  EXPECT_EQ(s.variables[3], "declare -i I=\"3\"");
  EXPECT_EQ(s.variables[4], "declare -x E");
}

TEST(ParseExportOutput, DashAndAsh) {
  const std::string text =
      "export HOME='/root'\n"
      "export Q='it'\"'\"'s'\n"
      "export X='a\nb'\n"
      "export NOVAL\n"
      "export PWD='/tmp'\n";
  SessionState s;
  ASSERT_TRUE(ParseExportOutput(text, s));
  EXPECT_EQ(s.env.at("HOME"), "/root");
  EXPECT_EQ(s.env.at("Q"), "it's");
  EXPECT_EQ(s.env.at("X"), "a\nb");
  EXPECT_EQ(s.env.count("NOVAL"), 0u);
  EXPECT_EQ(s.env.count("PWD"), 0u);
}

TEST(StatusParser, RecordInPiecesAndHelperStripped) {
  const std::string nul(1, '\0');
  std::string rec = "R3" + nul + "C/tmp" + nul + "Vdeclare -- X=\"1\"\n" + nul + "F" +
                    "__ab_rc () \n{ \n    return \"$1\"\n}\nf () \n{ \n    echo hi\n}\n" + nul +
                    "Xdeclare -fx f\n" + nul + "Aalias ll='ls -l'\n" + nul;
  StatusParser p(ShellKind::kBash);
  for (char c : rec) {
    EXPECT_FALSE(p.Take().has_value());
    p.Feed(std::string_view(&c, 1));
  }
  auto r = p.Take();
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(*r) << (*r).error().message;
  EXPECT_EQ((*r)->exit_code, 3);
  EXPECT_EQ((*r)->state.cwd, "/tmp");
  EXPECT_EQ((*r)->state.variables, std::vector<std::string>{"declare -- X=\"1\""});
  EXPECT_EQ((*r)->state.functions, "f () \n{ \n    echo hi\n}\n");
  EXPECT_EQ((*r)->state.exported_functions, std::vector<std::string>{"f"});
  EXPECT_EQ((*r)->state.aliases, "alias ll='ls -l'\n");
  EXPECT_FALSE(p.Take().has_value());
}

TEST(CommandLine, QuotesCommandAsOneWord) {
  std::string line = CommandLine(ShellKind::kBash, "echo 'a' \"b\" $HOME; exit 3", 7, Stdio::kNull);
  EXPECT_NE(line.find("__ab_rc 7"), std::string::npos);
  EXPECT_NE(line.find("eval -- 'echo '\\''a'\\'' \"b\" $HOME; exit 3' </dev/null"),
            std::string::npos);
}

TEST(RestoreScript, OptionsLastAndDefaultsTurnedOff) {
  SessionState s;
  s.variables = {"declare -- X=\"1\""};
  s.set_options = "errexit:hashall:interactive-comments";  // braceexpand turned off
  s.shopt_options = "extglob:cmdhist";
  std::string r = RestoreScript(s);
  EXPECT_LT(r.find("declare -- X"), r.find("set -o errexit"));
  EXPECT_NE(r.find("set +o braceexpand"), std::string::npos);
  EXPECT_NE(r.find("shopt -s extglob cmdhist"), std::string::npos);
  EXPECT_NE(r.find("shopt -u checkwinsize"), std::string::npos);
  EXPECT_EQ(r.find("set -o hashall"), std::string::npos);
}

TEST(SessionStateJson, RoundTrip) {
  SessionState s;
  s.cwd = "/w";
  s.env = {{"A", "1"}, {"B", "é\n"}};
  s.variables = {"declare -- X=\"1\""};
  s.functions = "f () \n{ \n    :\n}\n";
  s.exported_functions = {"f"};
  s.aliases = "alias a='b'\n";
  s.set_options = "hashall";
  s.shopt_options = "extglob";
  s.last_exit_code = 4;
  auto back = SessionStateFromJson(SessionStateToJson(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, s);
}

TEST(SessionStateJson, RejectsWrongTypes) {
  EXPECT_FALSE(SessionStateFromJson(Json::array()));
  EXPECT_FALSE(SessionStateFromJson(Json{{"env", {{"A", 1}}}}));
  EXPECT_FALSE(SessionStateFromJson(Json{{"variables", "x"}}));
  EXPECT_FALSE(SessionStateFromJson(Json{{"shell", "zsh"}}));
  EXPECT_FALSE(SessionStateFromJson(Json{{"last_exit_code", 999}}));
  EXPECT_FALSE(SessionStateFromJson(Json{{"env", {{"A=B", "1"}}}}));
}

}  // namespace
}  // namespace agentbox::guest
