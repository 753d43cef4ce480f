// The E2B translation layer without I/O: Connect envelopes and error codes, process events,
// entries, paths, users, tokens, sandboxes and the control plane's create body.
#include "daemon/e2b/translate.h"

#include <gtest/gtest.h>

#include <cmath>

#include "common/base64.h"
#include "daemon/e2b/e2b_api.h"

namespace agentbox::daemon::e2b {
namespace {

TEST(Envelope, RoundTripAndEndStream) {
  const std::string env = Envelope(0, "{\"a\":1}");
  ASSERT_EQ(env.size(), 5u + 7u);
  EXPECT_EQ(env[0], '\0');
  EXPECT_EQ(static_cast<unsigned char>(env[4]), 7);
  EXPECT_EQ(*FirstEnvelope(env), "{\"a\":1}");
  EXPECT_FALSE(FirstEnvelope("abc"));
  EXPECT_FALSE(FirstEnvelope(env.substr(0, 8)));  // truncated
  std::string compressed = env;
  compressed[0] = 1;
  EXPECT_FALSE(FirstEnvelope(compressed));
  const std::string end = EndStream(std::nullopt);
  EXPECT_EQ(static_cast<unsigned char>(end[0]), kEndStream);
  EXPECT_EQ(end.substr(5), "{}");
  const std::string err = EndStream(std::make_pair(std::string("not_found"), std::string("x")));
  EXPECT_EQ(Json::parse(err.substr(5))["error"]["code"], "not_found");
}

TEST(ConnectCodes, FollowHttpStatuses) {
  EXPECT_EQ(ConnectCode(404), "not_found");
  EXPECT_EQ(ConnectCode(422), "invalid_argument");
  EXPECT_EQ(ConnectCode(401), "unauthenticated");
  EXPECT_EQ(ConnectCode(502), "unavailable");
  EXPECT_EQ(ConnectCode(504), "deadline_exceeded");
  EXPECT_EQ(ConnectCode(500), "internal");
  EXPECT_EQ(ConnectHttpStatus("not_found"), 404);
  EXPECT_EQ(ConnectHttpStatus("already_exists"), 409);
  EXPECT_EQ(ConnectHttpStatus("unimplemented"), 501);
  EXPECT_EQ(ConnectHttpStatus("bogus"), 500);
}

TEST(ProcessEvents, FromGuestLines) {
  EXPECT_EQ(*ProcessEventFromGuest({{"event", "start"}, {"pid", 42}}),
            Json::parse(R"({"event":{"start":{"pid":42}}})"));
  EXPECT_EQ(*ProcessEventFromGuest({{"event", "stderr"}, {"data", "aGk="}}),
            Json::parse(R"({"event":{"data":{"stderr":"aGk="}}})"));
  EXPECT_EQ(*ProcessEventFromGuest({{"event", "keepalive"}}),
            Json::parse(R"({"event":{"keepalive":{}}})"));
  EXPECT_EQ(
      *ProcessEventFromGuest(
          {{"event", "end"}, {"exit_code", 3}, {"exited", true}, {"status", "exit status 3"}}),
      Json::parse(R"({"event":{"end":{"exitCode":3,"exited":true,"status":"exit status 3"}}})"));
  EXPECT_FALSE(ProcessEventFromGuest({{"event", "other"}}));
  EXPECT_FALSE(ProcessEventFromGuest(Json::array()));
  // Fields of another type from a hostile guest read as defaults; nothing throws.
  EXPECT_FALSE(ProcessEventFromGuest({{"event", 5}}));
  EXPECT_EQ(*ProcessEventFromGuest({{"event", "end"}, {"exit_code", "x"}, {"exited", 1}}),
            Json::parse(R"({"event":{"end":{"exitCode":-1,"exited":false,"status":""}}})"));
  EXPECT_EQ(*ProcessEventFromGuest({{"event", "start"}, {"pid", 1e300}}),
            Json::parse(R"({"event":{"start":{"pid":0}}})"));
  EXPECT_FALSE(WatchEventFromGuest({{"event", "fs"}, {"type", Json::array()}}));
}

TEST(ProcessEvents, PtyOutputAndWatchEvents) {
  EXPECT_EQ(*ProcessEventFromGuest(Json::parse(R"({"event":"pty","data":"aGk="})")),
            Json::parse(R"({"event":{"data":{"pty":"aGk="}}})"));
  EXPECT_EQ(*WatchEventFromGuest(Json::parse(R"({"event":"start"})")),
            Json::parse(R"({"start":{}})"));
  EXPECT_EQ(*WatchEventFromGuest(Json::parse(R"({"event":"keepalive"})")),
            Json::parse(R"({"keepalive":{}})"));
  EXPECT_EQ(*WatchEventFromGuest(Json::parse(R"({"event":"fs","name":"a/b","type":"rename"})")),
            Json::parse(R"({"filesystem":{"name":"a/b","type":"EVENT_TYPE_RENAME"}})"));
  EXPECT_FALSE(WatchEventFromGuest(Json::parse(R"({"event":"fs","name":"a","type":"open"})")));
  EXPECT_FALSE(WatchEventFromGuest(Json::parse(R"({"event":"end"})")));
  EXPECT_FALSE(WatchEventFromGuest(Json::array()));
}

TEST(ProcessRequests, StartSelectorSignal) {
  const Json start = Json::parse(R"({"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],
      "envs":{"A":"1"},"cwd":"work"},"stdin":true,"tag":"t"})");
  auto g = ExecStartFromStartRequest(start, "user");
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ((*g)["cmd"], "/bin/bash");
  EXPECT_EQ((*g)["args"][2], "echo hi");
  EXPECT_EQ((*g)["envs"]["A"], "1");
  EXPECT_EQ((*g)["cwd"], "/home/user/work");
  EXPECT_EQ((*g)["user"], "user");
  EXPECT_EQ((*g)["stdin"], true);
  EXPECT_EQ((*g)["tag"], "t");
  EXPECT_FALSE(ExecStartFromStartRequest(Json::parse(R"({"process":{}})"), "user"));
  auto pty = ExecStartFromStartRequest(
      Json::parse(R"({"process":{"cmd":"sh"},"pty":{"size":{"cols":80,"rows":24}}})"), "user");
  ASSERT_TRUE(pty) << pty.error().message;
  EXPECT_EQ((*pty)["pty"], Json({{"cols", 80}, {"rows", 24}}));
  for (const char* bad : {R"({"process":{"cmd":"sh"},"pty":{}})",
                          R"({"process":{"cmd":"sh"},"pty":{"size":{"cols":0,"rows":24}}})",
                          R"({"process":{"cmd":"sh"},"pty":{"size":{"cols":80,"rows":1001}}})",
                          R"({"process":{"cmd":"sh"},"pty":{"size":{"cols":"80","rows":24}}})"}) {
    EXPECT_FALSE(ExecStartFromStartRequest(Json::parse(bad), "user")) << bad;
  }

  EXPECT_EQ(*GuestSelector(Json::parse(R"({"process":{"pid":7}})")), Json({{"pid", 7}}));
  EXPECT_EQ(*GuestSelector(Json::parse(R"({"process":{"pid":"7"}})")), Json({{"pid", 7}}));
  EXPECT_EQ(*GuestSelector(Json::parse(R"({"process":{"tag":"x"}})")), Json({{"tag", "x"}}));
  EXPECT_FALSE(GuestSelector(Json::parse(R"({"process":{}})")));
  EXPECT_FALSE(GuestSelector(Json::object()));

  EXPECT_EQ(*SignalNumber("SIGNAL_SIGKILL"), 9);
  EXPECT_EQ(*SignalNumber("SIGNAL_SIGTERM"), 15);
  EXPECT_EQ(*SignalNumber(9), 9);
  EXPECT_FALSE(SignalNumber("SIGNAL_UNSPECIFIED"));
  EXPECT_FALSE(SignalNumber(3));

  const Json list = ListResponseFromGuest(Json::parse(
      R"({"processes":[{"pid":5,"cmd":"sleep","args":["9"],"envs":{},"cwd":"/","tag":"s"}]})"));
  EXPECT_EQ(list["processes"][0]["pid"], 5);
  EXPECT_EQ(list["processes"][0]["config"]["cmd"], "sleep");
  EXPECT_EQ(list["processes"][0]["config"]["cwd"], "/");
  EXPECT_EQ(list["processes"][0]["tag"], "s");

  // The guest's list is untrusted (it answers from inside the sandbox): entries that are not
  // objects are skipped, fields of another type read as defaults, never a type_error thrown into
  // the daemon's event loop (fuzz_connect_envelope's find; seed process_list_shapes).
  const Json odd = ListResponseFromGuest(Json::parse(
      R"({"processes":[1,"x",{"pid":1e30,"cmd":5,"args":"a","envs":[],"cwd":3,"tag":7}]})"));
  ASSERT_EQ(odd["processes"].size(), 1u);
  EXPECT_EQ(odd["processes"][0]["pid"], 0);
  EXPECT_EQ(odd["processes"][0]["config"]["cmd"], "");
  EXPECT_EQ(odd["processes"][0]["config"]["args"], Json::array());
  EXPECT_EQ(odd["processes"][0]["config"]["envs"], Json::object());
  EXPECT_FALSE(odd["processes"][0]["config"].contains("cwd"));
  EXPECT_FALSE(odd["processes"][0].contains("tag"));
  EXPECT_EQ(ListResponseFromGuest(Json::array())["processes"], Json::array());
}

// A guest's entries are untrusted: any shape gives an entry with defaults, never a type_error
// (fuzz_connect_envelope found a number as an entry; seed
// fuzz/corpus/connect_envelope/entry_number).
TEST(Files, HostileGuestEntriesGiveDefaults) {
  for (const Json& e :
       {Json(7), Json("x"), Json::array({1}), Json(nullptr),
        Json{{"name", 5}, {"size", "big"}, {"mtime", "now"}, {"type", 1}, {"symlink_target", 3}}}) {
    const Json out = EntryInfoFromGuest(e);
    EXPECT_EQ(out["name"], "");
    EXPECT_EQ(out["size"], "0");
    EXPECT_EQ(out["type"], "FILE_TYPE_UNSPECIFIED");
    EXPECT_FALSE(out.contains("symlinkTarget"));
  }
}

TEST(Files, EntriesPathsUsers) {
  const Json e = EntryInfoFromGuest({{"name", "a"},
                                     {"path", "/home/user/a"},
                                     {"type", "directory"},
                                     {"size", 4096},
                                     {"mode", 0755},
                                     {"permissions", "drwxr-xr-x"},
                                     {"owner", "user"},
                                     {"group", "user"},
                                     {"mtime", 1700000000.5}});
  EXPECT_EQ(e["type"], "FILE_TYPE_DIRECTORY");
  EXPECT_EQ(e["size"], "4096");  // int64 as a string
  EXPECT_EQ(e["mode"], 0755);
  EXPECT_EQ(e["modifiedTime"], "2023-11-14T22:13:20.500000000Z");
  EXPECT_EQ(Rfc3339(0), "1970-01-01T00:00:00Z");
  // A guest's numbers out of range read as defaults or the nearest RFC 3339 time, never a cast
  // out of range (fuzz_connect_envelope's find).
  EXPECT_EQ(Rfc3339(-1.7e20), "0001-01-01T00:00:00Z");
  EXPECT_EQ(Rfc3339(1e300), "9999-12-31T23:59:59Z");
  EXPECT_EQ(Rfc3339(std::nan("")), "1970-01-01T00:00:00Z");
  const Json odd =
      EntryInfoFromGuest({{"name", "a"}, {"size", 1e30}, {"mode", 1e12}, {"mtime", -1.7e20}});
  EXPECT_EQ(odd["size"], "0");
  EXPECT_EQ(odd["mode"], 0);
  EXPECT_EQ(odd["modifiedTime"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(EntryInfoFromGuest({{"size", 18446744073709551615ULL}, {"mode", -5}})["mode"], -5);
  EXPECT_EQ(EntryInfoFromGuest({{"size", 18446744073709551615ULL}})["size"], "0");
  EXPECT_EQ(ResolvePath("/etc/x", "user"), "/etc/x");
  EXPECT_EQ(ResolvePath("x/y", "user"), "/home/user/x/y");
  EXPECT_EQ(ResolvePath("x", "root"), "/root/x");
  EXPECT_EQ(ResolvePath("~/x", "user"), "/home/user/x");
  EXPECT_EQ(*BasicUser("Basic " + Base64Encode("root:")), "root");
  EXPECT_EQ(*BasicUser("basic " + Base64Encode("user")), "user");
  EXPECT_FALSE(BasicUser("Bearer abc"));
  EXPECT_FALSE(BasicUser("Basic " + Base64Encode("../x:")));
  EXPECT_FALSE(BasicUser("Basic ***"));
}

TEST(ControlPlane, SandboxShapes) {
  const Json native = {{"id", "sb-1"},
                       {"image", ""},
                       {"labels", {{"e2b.template", "base"}, {"team", "a"}}},
                       {"limits", {{"cpus", 1.5}, {"memory_mb", 512}}},
                       {"created_at", 1700000000.0},
                       {"expires_at", 1700000300.0}};
  const Json s = SandboxFromNative(native, "tok");
  for (const char* k : {"templateID", "sandboxID", "clientID", "envdVersion"}) {
    EXPECT_TRUE(s.contains(k)) << k;
  }
  EXPECT_EQ(s["sandboxID"], "sb-1");
  EXPECT_EQ(s["templateID"], "base");
  EXPECT_EQ(s["envdAccessToken"], "tok");
  const Json d = DetailFromNative(native, "tok");
  EXPECT_EQ(d["startedAt"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(d["endAt"], "2023-11-14T22:18:20Z");
  EXPECT_EQ(d["cpuCount"], 2);
  EXPECT_EQ(d["memoryMB"], 512);
  EXPECT_EQ(d["state"], "running");
  EXPECT_EQ(d["metadata"], Json({{"team", "a"}}));  // reserved labels hidden
  EXPECT_EQ(SandboxFromNative({{"id", "x"}, {"image", "debian:12"}}, "")["templateID"],
            "debian:12");
  EXPECT_NE(EnvdAccessToken("a"), EnvdAccessToken("b"));
  EXPECT_EQ(EnvdAccessToken("a"), EnvdAccessToken("a"));
  EXPECT_EQ(Json::parse(ApiErrorBody(404, "gone")), Json({{"code", 404}, {"message", "gone"}}));
}

TEST(ControlPlane, MetadataFilter) {
  auto f = ParseMetadataFilter("team%3Da%26user%3Db%2520c");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->at("team"), "a");
  EXPECT_EQ(f->at("user"), "b c");
  EXPECT_FALSE(ParseMetadataFilter("novalue"));
  EXPECT_TRUE(ParseMetadataFilter("")->empty());
}

TEST(ControlPlane, MetricsAsOneSandboxMetric) {
  const Json native = {{"sandbox_id", "sb-1"},    {"timestamp", 1767225600.5},
                       {"cpu_count", 0.5},        {"cpu_used_pct", 42.5},
                       {"mem_used_bytes", 1000},  {"mem_cache_bytes", 200},
                       {"mem_total_bytes", 4000}, {"disk_used_bytes", 30},
                       {"disk_total_bytes", 90},  {"disk_source", "sandbox_disk"}};
  const Json out = MetricsFromNative(native);
  ASSERT_TRUE(out.is_array());
  ASSERT_EQ(out.size(), 1u);
  const Json& m = out[0];
  EXPECT_EQ(m["timestamp"], "2026-01-01T00:00:00.500000000Z");
  EXPECT_EQ(m["timestampUnix"], 1767225600);
  EXPECT_EQ(m["cpuCount"], 1);  // whole cores, rounded up
  EXPECT_EQ(m["cpuUsedPct"], 42.5);
  EXPECT_EQ(m["memUsed"], 1000);
  EXPECT_EQ(m["memCache"], 200);
  EXPECT_EQ(m["memTotal"], 4000);
  EXPECT_EQ(m["diskUsed"], 30);
  EXPECT_EQ(m["diskTotal"], 90);
}

TEST(ControlPlane, CreateBody) {
  const std::map<std::string, std::string> templates = {{"base", ""}, {"py", "python:3.12"}};
  auto t = NativeCreateBody(Json::parse(R"({"templateID":"py","timeout":60,
      "metadata":{"k":"v"},"envVars":{"A":"1"},"secure":true,"mcp":null})"),
                            templates, 300);
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->template_id, "py");
  EXPECT_EQ(t->native["image"], "python:3.12");
  EXPECT_EQ(t->native["ttl_s"], 60);
  EXPECT_EQ(t->native["env"]["A"], "1");
  EXPECT_EQ(t->native["labels"]["k"], "v");
  EXPECT_EQ(t->native["labels"]["e2b.template"], "py");
  auto base = NativeCreateBody(Json::object(), templates, 300);
  ASSERT_TRUE(base);
  EXPECT_FALSE(base->native.contains("image"));         // the default image
  EXPECT_EQ(base->native["cloudrun_mode"], "session");  // envd needs a lasting guest
  EXPECT_EQ(base->native["ttl_s"], 300);
  EXPECT_EQ(NativeCreateBody(Json::parse(R"({"timeout":1})"), templates, 300)->native["ttl_s"], 10);
  EXPECT_EQ(NativeCreateBody(Json::parse(R"({"templateID":"nope"})"), templates, 300).error().code,
            ErrorCode::kNotFound);
  EXPECT_FALSE(NativeCreateBody(Json::parse(R"({"autoPause":true})"), templates, 300));
  EXPECT_FALSE(NativeCreateBody(Json::parse(R"({"metadata":{"e2b.x":"1"}})"), templates, 300));
  EXPECT_FALSE(NativeCreateBody(Json::parse(R"({"timeout":"1"})"), templates, 300));
}

TEST(ControlPlane, Templates) {
  auto t = ParseTemplates({"py=python:3.12", "node=node:20"});
  ASSERT_TRUE(t);
  EXPECT_EQ(t->at("base"), "");
  EXPECT_EQ(t->at("py"), "python:3.12");
  EXPECT_FALSE(ParseTemplates({"broken"}));
  EXPECT_FALSE(ParseTemplates({"=x"}));
}

TEST(Envd, CloudRunJobModeCannotServeIt) {
  EXPECT_EQ(EnvdUnsupported("jail", ""), "");
  EXPECT_EQ(EnvdUnsupported("docker", "job"), "");  // other backends ignore the field
  EXPECT_EQ(EnvdUnsupported("cloudrun", "session"), "");
  EXPECT_NE(EnvdUnsupported("cloudrun", "job").find("cloudrun job mode"), std::string::npos);
}

}  // namespace
}  // namespace agentbox::daemon::e2b
