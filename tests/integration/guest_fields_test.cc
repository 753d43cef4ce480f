// Unknown request fields on the guest API (docs/guest-api.md, "Unknown fields"), end to end: a
// real agentbox-guest on a unix socket, libcurl as the client. Every JSON endpoint accepts an
// unknown field with a Warning header and a log line; a field that probably means `timeout` is a
// 422; the bodies ai-manus's own clients send get no warning at all.
#include <gtest/gtest.h>
#include <strings.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "fakes/guest_child.h"

namespace agentbox::integration {
namespace {

using Json = nlohmann::json;
using test_support::ReadLog;

struct Reply {
  long status = 0;
  std::string body;
  Json json;
  std::vector<std::string> warnings;  // values of the Warning headers, in order
};

// The values of the Warning header lines of a response head.
std::vector<std::string> Warnings(const std::string& head) {
  std::vector<std::string> out;
  std::istringstream lines(head);
  for (std::string line; std::getline(lines, line);) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
      line.pop_back();
    }
    if (line.size() > 8 && strncasecmp(line.c_str(), "warning:", 8) == 0) {
      out.push_back(line.substr(line.find_first_not_of(' ', 8)));
    }
  }
  return out;
}

// One agentbox-guest serving a unix socket in a temporary directory (tests/fakes/guest_child.h).
class GuestFieldsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    guest_ = std::make_unique<test_support::GuestChild>(AGENTBOX_GUEST_BIN,
                                                        "agentbox-guest-fields");
    ASSERT_TRUE(guest_->Ready()) << "agentbox-guest is not serving (exit code "
                                 << guest_->exit_code() << "):\n"
                                 << guest_->log();
  }

  void TearDown() override { guest_.reset(); }

  Reply Call(const std::string& method, const std::string& path, const std::string& body,
             const std::string& content_type = "application/json") {
    test_support::Reply r = guest_->Call(method, path, body, content_type);
    return {r.status, std::move(r.body), std::move(r.json), Warnings(r.headers)};
  }

  Reply Post(const std::string& op, const Json& body) {
    return Call("POST", "/api/v1/" + op, body.dump());
  }

  std::unique_ptr<test_support::GuestChild> guest_;
};

// The value of the Warning header for an ignored top-level field.
std::string Ignored(const std::string& field, const std::string& suggestion = "") {
  return "299 agentbox \"unknown field '" + field + "' ignored" +
         (suggestion.empty() ? "" : "; did you mean '" + suggestion + "'?") + "\"";
}

TEST_F(GuestFieldsTest, EveryEndpointWarnsAboutAnUnknownFieldAndStillAnswers) {
  // In an order in which each call finds what it needs; every body carries one unknown field.
  struct Case {
    std::string op;
    Json body;
  };
  const std::vector<Case> cases = {
      {"shell/exec", {{"id", "s"}, {"command", "echo hi"}}},
      {"shell/view", {{"id", "s"}}},
      {"shell/wait", {{"id", "s"}, {"seconds", 5}}},
      {"shell/kill", {{"id", "s"}}},
      {"shell/run", {{"session_id", "s"}, {"command", "echo run"}}},
      {"shell/state", {{"id", "s"}}},
      {"shell/list", Json::object()},
      {"process/start", {{"command", "sleep 30"}}},
      {"process/list", Json::object()},
      {"file/write", {{"file", "a.txt"}, {"content", "x\n"}}},
      {"file/read", {{"file", "a.txt"}}},
      {"file/exists", {{"path", "a.txt"}}},
      {"file/list", {{"path", "."}}},
      {"file/replace", {{"file", "a.txt"}, {"old_str", "x"}, {"new_str", "y"}}},
      {"file/search", {{"file", "a.txt"}, {"regex", "y"}}},
      {"file/find", {{"path", "."}, {"glob", "*.txt"}}},
      {"file/delete", {{"path", "a.txt"}}},
      {"shell/delete", {{"id", "s"}}},
  };
  for (const auto& c : cases) {
    Json body = c.body;
    body["request_tag"] = "from a newer client";
    Reply r = Post(c.op, body);
    EXPECT_EQ(r.status, 200) << c.op << ": " << r.body;
    EXPECT_EQ(r.warnings, std::vector<std::string>{Ignored("request_tag")}) << c.op;
    if (c.op == "process/start") {
      const int pid = r.json["data"]["pid"];
      Reply logs = Post("process/logs", {{"pid", pid}, {"ofset", 0}});
      EXPECT_EQ(logs.status, 200) << logs.body;
      EXPECT_EQ(logs.warnings, std::vector<std::string>{Ignored("ofset", "offset")});
      Reply kill = Post("process/kill", {{"pid", pid}, {"signal", "TERM"}, {"force", true}});
      EXPECT_EQ(kill.status, 200) << kill.body;
      EXPECT_EQ(kill.warnings, std::vector<std::string>{Ignored("force")});
    }
  }
  // The field was ignored, not acted on: exec ran its command as usual.
  const std::string log = guest_->log();
  EXPECT_NE(log.find("request.unknown_field endpoint=\"/api/v1/shell/exec\" "
                     "field=\"request_tag\" suggestion=\"\" action=ignored"),
            std::string::npos)
      << log;
}

TEST_F(GuestFieldsTest, WarningsSayWhatWasProbablyMeant) {
  Reply r = Post("shell/exec",
                 {{"id", "t"}, {"comand", "echo x"}, {"command", "echo ok"}, {"wait_secs", 5}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["data"]["output"], "ok\n");
  EXPECT_EQ(r.warnings, (std::vector<std::string>{Ignored("comand", "command"),
                                                  Ignored("wait_secs", "wait_seconds")}));
}

TEST_F(GuestFieldsTest, AMisspelledTimeoutIsRejectedAndNothingRuns) {
  Reply r = Post("shell/exec", {{"id", "bounded"}, {"command", "sleep 30"}, {"timeout_s", 1}});
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'timeout_s'; did you mean 'timeout'?");
  EXPECT_EQ(r.json["data"]["fields"][0], "timeout_s");
  r = Post("shell/run", {{"command", "sleep 30"}, {"time_out", 1}});
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.json["message"], "unknown field 'time_out'; did you mean 'timeout'?");
  Reply list = Call("GET", "/api/v1/shell/list", "");
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(list.json["data"]["sessions"].empty()) << list.body;
}

TEST_F(GuestFieldsTest, AnUnknownFieldInARestoredStateIsWarnedAbout) {
  ASSERT_EQ(Post("shell/exec", {{"id", "src"}, {"command", "cd /tmp"}}).status, 200);
  Reply st = Post("shell/state", {{"id", "src"}});
  ASSERT_EQ(st.status, 200) << st.body;
  Json state = st.json["data"]["state"];
  state["history"] = Json::array();  // what a newer guest might add
  state["options"]["posix"] = "on";
  Reply r = Post("shell/restore", {{"id", "dst"}, {"state", state}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["data"]["cwd"], "/tmp");
  EXPECT_EQ(r.warnings, (std::vector<std::string>{
                            "299 agentbox \"unknown field 'history' in state ignored\"",
                            "299 agentbox \"unknown field 'posix' in state.options ignored\""}));
}

// The bodies ai-manus's backend (app/infrastructure/external/sandbox/docker_sandbox.py) sends,
// field for field, nulls included: accepted without a warning.
TEST_F(GuestFieldsTest, AiManusClientBodiesGetNoWarning) {
  const std::vector<std::pair<std::string, Json>> calls = {
      {"shell/exec", {{"id", "m"}, {"exec_dir", nullptr}, {"command", "echo manus"}}},
      {"shell/view", {{"id", "m"}, {"console", true}}},
      {"shell/wait", {{"id", "m"}, {"seconds", nullptr}}},
      {"shell/kill", {{"id", "m"}}},
      {"file/write",
       {{"file", "m.txt"},
        {"content", "one\n"},
        {"append", false},
        {"leading_newline", false},
        {"trailing_newline", false},
        {"sudo", false}}},
      {"file/read",
       {{"file", "m.txt"}, {"start_line", nullptr}, {"end_line", nullptr}, {"sudo", false}}},
      {"file/exists", {{"path", "m.txt"}}},
      {"file/list", {{"path", "."}}},
      {"file/replace",
       {{"file", "m.txt"}, {"old_str", "one"}, {"new_str", "two"}, {"sudo", false}}},
      {"file/search", {{"file", "m.txt"}, {"regex", "two"}, {"sudo", false}}},
      {"file/find", {{"path", "."}, {"glob", "*.txt"}}},
      {"file/delete", {{"path", "m.txt"}}},
  };
  for (const auto& [op, body] : calls) {
    Reply r = Post(op, body);
    EXPECT_EQ(r.status, 200) << op << ": " << r.body;
    EXPECT_TRUE(r.warnings.empty()) << op << ": " << ::testing::PrintToString(r.warnings);
  }
  // shell/write, as ai-manus sends it, to a command that reads.
  ASSERT_EQ(
      Post("shell/exec", {{"id", "w"}, {"command", "read x; echo got $x"}, {"wait_seconds", 0}})
          .status,
      200);
  Reply w = Post("shell/write", {{"id", "w"}, {"input", "it"}, {"press_enter", true}});
  EXPECT_EQ(w.status, 200) << w.body;
  EXPECT_TRUE(w.warnings.empty());
  // ai-manus's sandbox ignores what it does not know (pydantic); so does the guest, with a word.
  Reply extra = Post("file/read", {{"file", "nope.txt"}, {"sudo", false}, {"encoding", "utf-8"}});
  EXPECT_EQ(extra.status, 404) << extra.body;
  EXPECT_EQ(extra.warnings, std::vector<std::string>{Ignored("encoding")});
}

TEST_F(GuestFieldsTest, UploadWarnsAboutUnknownFormFields) {
  const std::string boundary = "fieldsBoundary9";
  auto part = [&](const std::string& name, const std::string& value,
                  const std::string& filename = "") {
    std::string p = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"";
    if (!filename.empty()) {
      p += "; filename=\"" + filename + "\"\r\nContent-Type: application/octet-stream";
    }
    return p + "\r\n\r\n" + value + "\r\n";
  };
  const std::string ct = "multipart/form-data; boundary=" + boundary;
  // As ai-manus sends it: file and path, nothing else.
  Reply plain =
      Call("POST", "/api/v1/file/upload",
           part("file", "bytes", "u.txt") + part("path", "u.txt") + "--" + boundary + "--\r\n", ct);
  EXPECT_EQ(plain.status, 200) << plain.body;
  EXPECT_TRUE(plain.warnings.empty()) << ::testing::PrintToString(plain.warnings);
  Reply extra = Call("POST", "/api/v1/file/upload",
                     part("path", "v.txt") + part("mode", "0644") + part("file", "v", "v.txt") +
                         "--" + boundary + "--\r\n",
                     ct);
  EXPECT_EQ(extra.status, 200) << extra.body;
  EXPECT_EQ(extra.warnings, std::vector<std::string>{Ignored("mode")});
  EXPECT_EQ(ReadLog(guest_->root() + "/work/v.txt"), "v");
}

TEST_F(GuestFieldsTest, AtMostEightWarningsPerResponse) {
  Json body = {{"command", "true"}};
  for (int i = 0; i < 20; ++i) {
    body["zz" + std::to_string(100 + i)] = i;
  }
  Reply r = Post("shell/exec", body);
  EXPECT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.warnings.size(), 8u);
  EXPECT_EQ(r.warnings.back(), "299 agentbox \"13 more unknown fields ignored\"");
}

}  // namespace
}  // namespace agentbox::integration
