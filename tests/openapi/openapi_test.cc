// docs/openapi.json checked against the server: every documented operation answers a valid
// request with a documented status and a body that validates against the documented schema;
// documented error cases get their statuses; and every route the server answers is documented,
// so the document cannot silently drift from the daemon (or the guest it forwards to).
#include <gtest/gtest.h>

#include <future>

#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "daemon/tunnel_endpoint.h"
#include "common/base64.h"
#include "fakes/daemon_fixture.h"
#include "fakes/fixed_config.h"

namespace agentbox {
namespace {

using fakes::HttpReply;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const Json& Document() {
  static const Json doc =
      Json::parse(ReadFile(AGENTBOX_SOURCE_DIR "/docs/openapi.json"), nullptr, false);
  return doc;
}

// A validator for the subset of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that the document
// uses: $ref (local), type (a name or a list of names), enum, required, properties,
// additionalProperties (bool or schema), items, oneOf, minimum, maximum, maxProperties.
// Anything else in a schema is an error, so the document cannot use a keyword this test would
// silently ignore.
class Validator {
 public:
  explicit Validator(const Json& doc) : doc_(doc) {}

  // Follows a local "#/a/b" reference; null when it does not resolve.
  const Json* Resolve(const std::string& ref) const {
    if (!ref.starts_with("#/")) {
      return nullptr;
    }
    const Json* cur = &doc_;
    std::stringstream ss(ref.substr(2));
    for (std::string part; std::getline(ss, part, '/');) {
      if (!cur->is_object() || !cur->contains(part)) {
        return nullptr;
      }
      cur = &(*cur)[part];
    }
    return cur;
  }

  // Resolves `node` if it is {"$ref": ...}.
  const Json& Deref(const Json& node) const {
    if (node.is_object() && node.contains("$ref")) {
      const Json* target = Resolve(node["$ref"].get<std::string>());
      return target ? Deref(*target) : node;
    }
    return node;
  }

  // Appends every violation of `schema` by `v` to `errors`, each prefixed with `where`.
  void Check(const Json& v, const Json& schema_in, const std::string& where,
             std::vector<std::string>& errors) const {
    if (schema_in.is_object() && schema_in.contains("$ref")) {
      const Json* target = Resolve(schema_in["$ref"].get<std::string>());
      if (!target) {
        errors.push_back(where + ": unresolved $ref " + schema_in["$ref"].dump());
        return;
      }
      return Check(v, *target, where, errors);
    }
    const Json& s = schema_in;
    if (!s.is_object()) {
      errors.push_back(where + ": schema is not an object: " + s.dump());
      return;
    }
    if (s.contains("type")) {
      std::vector<std::string> types;
      if (s["type"].is_array()) {
        for (const auto& t : s["type"]) {
          types.push_back(t.get<std::string>());
        }
      } else {
        types.push_back(s["type"].get<std::string>());
      }
      bool any = false;
      for (const auto& t : types) {
        any = any || HasType(v, t);
      }
      if (!any) {
        errors.push_back(where + ": " + v.dump().substr(0, 200) + " is not of type " +
                         s["type"].dump());
        return;
      }
    }
    if (s.contains("enum")) {
      bool found = false;
      for (const auto& e : s["enum"]) {
        found = found || e == v;
      }
      if (!found) {
        errors.push_back(where + ": " + v.dump() + " is not one of " + s["enum"].dump());
      }
    }
    if (v.is_number()) {
      if (s.contains("minimum") && v.get<double>() < s["minimum"].get<double>()) {
        errors.push_back(where + ": " + v.dump() + " < minimum " + s["minimum"].dump());
      }
      if (s.contains("maximum") && v.get<double>() > s["maximum"].get<double>()) {
        errors.push_back(where + ": " + v.dump() + " > maximum " + s["maximum"].dump());
      }
    }
    if (s.contains("oneOf")) {
      int matches = 0;
      std::vector<std::string> why;
      for (const auto& alt : s["oneOf"]) {
        std::vector<std::string> e;
        Check(v, alt, where, e);
        matches += e.empty() ? 1 : 0;
        why.insert(why.end(), e.begin(), e.end());
      }
      if (matches != 1) {
        errors.push_back(where + ": matches " + std::to_string(matches) +
                         " alternatives of oneOf, not exactly one");
        errors.insert(errors.end(), why.begin(), why.end());
      }
    }
    if (v.is_object()) {
      if (s.contains("maxProperties") && v.size() > s["maxProperties"].get<size_t>()) {
        errors.push_back(where + ": more than maxProperties");
      }
      if (s.contains("required")) {
        for (const auto& r : s["required"]) {
          if (!v.contains(r.get<std::string>())) {
            errors.push_back(where + ": required property '" + r.get<std::string>() +
                             "' is missing in " + v.dump().substr(0, 200));
          }
        }
      }
      const Json props = s.value("properties", Json::object());
      for (const auto& [k, child] : v.items()) {
        if (props.contains(k)) {
          Check(child, props[k], where + "." + k, errors);
        } else if (s.contains("additionalProperties")) {
          const Json& ap = s["additionalProperties"];
          if (ap.is_boolean()) {
            if (!ap.get<bool>()) {
              errors.push_back(where + ": property '" + k + "' is not documented");
            }
          } else {
            Check(child, ap, where + "." + k, errors);
          }
        }
      }
    }
    if (v.is_array()) {
      if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) {
        errors.push_back(where + ": fewer than minItems " + s["minItems"].dump());
      }
      if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) {
        errors.push_back(where + ": more than maxItems " + s["maxItems"].dump());
      }
    }
    if (v.is_string() && s.contains("pattern") &&
        !std::regex_search(v.get<std::string>(),
                           std::regex(s["pattern"].get<std::string>(), std::regex::ECMAScript))) {
      errors.push_back(where + ": " + v.dump() + " does not match pattern " + s["pattern"].dump());
    }
    if (v.is_array() && s.contains("items")) {
      for (size_t i = 0; i < v.size(); ++i) {
        Check(v[i], s["items"], where + "[" + std::to_string(i) + "]", errors);
      }
    }
  }

  // Appends an error for every keyword in `schema` (and the schemas inside it) that Check()
  // does not understand, so the document cannot rely on a rule this test would ignore.
  void CheckKeywords(const Json& schema, const std::string& where,
                     std::vector<std::string>& errors) const {
    static const std::set<std::string> kKnown = {
        "$ref",    "type",    "enum",        "required",         "properties",
        "items",   "oneOf",   "minimum",     "maximum",          "maxProperties",
        "default", "example", "description", "contentMediaType", "additionalProperties",
        "minItems", "maxItems", "pattern"};
    if (!schema.is_object()) {
      return;
    }
    for (const auto& [k, child] : schema.items()) {
      if (!kKnown.count(k)) {
        errors.push_back(where + ": schema keyword '" + k + "' is not supported by the test");
      }
    }
    if (schema.contains("properties")) {
      for (const auto& [k, child] : schema["properties"].items()) {
        CheckKeywords(child, where + "." + k, errors);
      }
    }
    for (const char* k : {"items", "additionalProperties"}) {
      if (schema.contains(k)) {
        CheckKeywords(schema[k], where + "/" + k, errors);
      }
    }
    if (schema.contains("oneOf")) {
      for (const auto& alt : schema["oneOf"]) {
        CheckKeywords(alt, where + "/oneOf", errors);
      }
    }
  }

 private:
  static bool HasType(const Json& v, const std::string& t) {
    if (t == "object") {
      return v.is_object();
    }
    if (t == "array") {
      return v.is_array();
    }
    if (t == "string") {
      return v.is_string();
    }
    if (t == "boolean") {
      return v.is_boolean();
    }
    if (t == "integer") {
      return v.is_number_integer();
    }
    if (t == "number") {
      return v.is_number();
    }
    if (t == "null") {
      return v.is_null();
    }
    return false;
  }

  const Json& doc_;
};

std::string Lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

// Splits an event stream into (event name, data) pairs; comments and ids are skipped.
std::vector<std::pair<std::string, std::string>> ParseEvents(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string event = "message";
  std::string data;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) {
    if (line.empty()) {
      if (!data.empty()) {
        out.emplace_back(event, data);
      }
      event = "message";
      data.clear();
    } else if (line.starts_with("event: ")) {
      event = line.substr(7);
    } else if (line.starts_with("data: ")) {
      data += line.substr(6);
    }
  }
  return out;
}

class OpenApiTest : public fakes::DaemonFixture {
 protected:
  void SetUp() override {
    ASSERT_FALSE(Document().is_discarded()) << "docs/openapi.json is not valid JSON";
    options_.max_sandboxes_per_owner = 2;  // so that the 429 of the quota is reachable
    options_.load_config = fakes::FixedConfig({{"SANDBOX_BACKEND", "process"}});
    DaemonFixture::SetUp();
  }

  // The daemon's tunnel endpoint (docs/tunnel.md) behind the server's upgrade hook, as agentboxd
  // wires it; no sandbox registers with it here, so every token is refused.
  SandboxBackendPtr Decorate(fakes::ProcessBackend&) override {
    tunnels_ = std::make_unique<daemon::TunnelEndpoint>(
        io_, daemon::TunnelEndpoint::Options{dir_ + "/tunnels"});
    upgrade_ = [this](http::Request req, http::UpgradedSocket s) {
      tunnels_->Upgrade(std::move(req), std::move(s));
    };
    return nullptr;
  }
  std::unique_ptr<daemon::TunnelEndpoint> tunnels_;

  const Json& Operation(const std::string& method, const std::string& tmpl) {
    static const Json kNull;
    const Json& paths = Document()["paths"];
    if (!paths.contains(tmpl) || !paths[tmpl].contains(Lower(method))) {
      return kNull;
    }
    return paths[tmpl][Lower(method)];
  }

  // Validates `body` against the operation's JSON request schema.
  void CheckRequest(const std::string& method, const std::string& tmpl, const Json& body) {
    const Json& op = Operation(method, tmpl);
    ASSERT_FALSE(op.is_null()) << method << " " << tmpl << " is not documented";
    ASSERT_TRUE(op.contains("requestBody")) << method << " " << tmpl << " documents no body";
    const Json& rb = v_.Deref(op["requestBody"]);
    ASSERT_TRUE(rb.contains("content") && rb["content"].contains("application/json"))
        << method << " " << tmpl << " documents no JSON request body";
    std::vector<std::string> errors;
    v_.Check(body, rb["content"]["application/json"]["schema"], method + " " + tmpl + " request",
             errors);
    EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  }

  // Checks a reply of `method tmpl` against the document: a documented status, the documented
  // content type, and a body that validates against the documented schema.
  void CheckReply(const std::string& method, const std::string& tmpl, const HttpReply& r) {
    const std::string what = method + " " + tmpl + " -> " + std::to_string(r.status);
    const Json& op = Operation(method, tmpl);
    ASSERT_FALSE(op.is_null()) << method << " " << tmpl << " is not documented";
    const std::string status = std::to_string(r.status);
    ASSERT_TRUE(op["responses"].contains(status))
        << what << " is not a documented status; body: " << r.body.substr(0, 300);
    covered_.insert(method + " " + tmpl);
    const Json& resp = v_.Deref(op["responses"][status]);
    if (!resp.contains("content")) {
      return;
    }
    const Json& content = resp["content"];
    const std::string ct = r.content_type.substr(0, r.content_type.find(';'));
    ASSERT_TRUE(content.contains(ct))
        << what << ": content type '" << r.content_type << "' is not documented";
    std::vector<std::string> errors;
    if (ct == "application/json") {
      ASSERT_FALSE(r.json.is_discarded()) << what << ": body is not JSON: " << r.body;
      v_.Check(r.json, content[ct]["schema"], what, errors);
    } else if (ct == "application/x-ndjson") {
      std::stringstream lines(r.body);
      size_t n = 0;
      for (std::string line; std::getline(lines, line);) {
        ++n;
        v_.Check(Json::parse(line, nullptr, false), content[ct]["x-ndjson-line"],
                 what + " line " + std::to_string(n), errors);
      }
      EXPECT_GT(n, 0u) << what << ": no lines";
    } else if (ct == "text/event-stream") {
      const Json& kinds = content[ct]["x-sse-events"];
      auto events = ParseEvents(r.body);
      EXPECT_FALSE(events.empty()) << what << ": no events in " << r.body;
      for (const auto& [name, data] : events) {
        if (!kinds.contains(name)) {
          errors.push_back(what + ": undocumented event '" + name + "'");
          continue;
        }
        Json d = Json::parse(data, nullptr, false);
        v_.Check(d, kinds[name], what + " event " + name, errors);
      }
    }
    EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
  }

  // Sends `body` (validated against the documented request schema when JSON) to `path`, an
  // instance of `tmpl`, and checks the reply. `key` as in DaemonFixture::Call.
  HttpReply Do(const std::string& method, const std::string& tmpl, const std::string& path,
               const Json& body = nullptr, const std::string& key = "") {
    if (!body.is_null()) {
      CheckRequest(method, tmpl, body);
    }
    HttpReply r = Call(method, path, body.is_null() ? "" : DumpJson(body), key,
                       body.is_null() ? std::vector<std::string>{}
                                      : std::vector<std::string>{"Content-Type: application/json"});
    CheckReply(method, tmpl, r);
    return r;
  }

  // Do() for a request the document itself rejects: an error case must be one the documented
  // request schema forbids too, so the document's constraints match the server's.
  HttpReply DoInvalid(const std::string& method, const std::string& tmpl, const std::string& path,
                      const Json& body, const std::string& key = "") {
    const Json& op = Operation(method, tmpl);
    std::vector<std::string> errors;
    if (op.contains("requestBody")) {
      v_.Check(body, v_.Deref(op["requestBody"])["content"]["application/json"]["schema"],
               method + " " + tmpl + " request", errors);
    }
    EXPECT_FALSE(errors.empty()) << "the document accepts " << body.dump() << " for " << method
                                 << " " << tmpl;
    HttpReply r = Call(method, path, DumpJson(body), key, {"Content-Type: application/json"});
    CheckReply(method, tmpl, r);
    return r;
  }

  // The documented example of an operation's JSON request body.
  Json Example(const std::string& method, const std::string& tmpl) {
    const Json& op = Operation(method, tmpl);
    if (!op.contains("requestBody")) {
      ADD_FAILURE() << method << " " << tmpl << " documents no request body";
      return Json::object();
    }
    const Json& rb = v_.Deref(op["requestBody"]);
    if (!rb.contains("content") || !rb["content"].contains("application/json") ||
        !rb["content"]["application/json"].contains("example")) {
      ADD_FAILURE() << method << " " << tmpl << " documents no JSON example";
      return Json::object();
    }
    return rb["content"]["application/json"]["example"];
  }

  Validator v_{Document()};
  std::set<std::string> covered_;  // "METHOD /template" answered and checked
};

// Every documented operation, as "METHOD /template".
std::set<std::string> DocumentedOperations() {
  std::set<std::string> out;
  for (const auto& [path, item] : Document()["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      if (method != "parameters") {
        std::string m = method;
        for (char& c : m) {
          c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        }
        out.insert(m + " " + path);
      }
    }
  }
  return out;
}

TEST_F(OpenApiTest, DocumentIsWellFormed) {
  const Json& doc = Document();
  EXPECT_EQ(doc["openapi"], "3.1.0");
  EXPECT_TRUE(doc["components"]["securitySchemes"].contains("bearerAuth"));
  std::set<std::string> ids;
  std::vector<std::string> errors;
  // Every $ref resolves, every operation has a unique id and responses, and every example is
  // valid against its schema.
  std::function<void(const Json&, const std::string&)> walk = [&](const Json& n,
                                                                  const std::string& where) {
    if (n.is_object()) {
      if (n.contains("$ref") && !v_.Resolve(n["$ref"].get<std::string>())) {
        errors.push_back(where + ": unresolved " + n["$ref"].dump());
      }
      if (n.contains("schema") && n.contains("example")) {
        v_.Check(n["example"], n["schema"], where + " example", errors);
      }
      for (const auto& [k, c] : n.items()) {
        walk(c, where + "/" + k);
      }
    } else if (n.is_array()) {
      for (size_t i = 0; i < n.size(); ++i) {
        walk(n[i], where + "/" + std::to_string(i));
      }
    }
  };
  walk(doc, "#");
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters") {
        continue;
      }
      EXPECT_TRUE(ids.insert(op.value("operationId", "")).second)
          << "duplicate or missing operationId at " << method << " " << path;
      EXPECT_FALSE(op["responses"].empty()) << method << " " << path;
    }
  }
  // Every schema keyword is one the validator understands.
  for (const auto& [name, schema] : doc["components"]["schemas"].items()) {
    v_.CheckKeywords(schema, name, errors);
  }
  EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
}

TEST_F(OpenApiTest, EveryOperationAnswersAsDocumented) {
  const std::string S = "/v1/sandboxes/{id}";
  const std::string G = S + "/api/v1/";
  Do("GET", "/healthz", "/healthz");
  Do("GET", "/readyz", "/readyz");
  Do("GET", "/metrics", "/metrics");
  Do("GET", "/v1/info", "/v1/info");
  Do("GET", "/v1/flags", "/v1/flags");
  EXPECT_EQ(Do("PUT", "/v1/flags", "/v1/flags", Example("PUT", "/v1/flags")).status, 200);
  EXPECT_EQ(
      Do("PUT", "/v1/flags", "/v1/flags", {{"flags", {{"AGENTBOX_ROLLOUT_KILL_SWITCH", nullptr}}}})
          .status,
      200);
  EXPECT_EQ(Do("PUT", "/v1/backends/{name}/validation", "/v1/backends/process/validation",
               Example("PUT", "/v1/backends/{name}/validation"))
                .status,
            200);
  EXPECT_EQ(
      Do("GET", "/v1/backends/{name}/validation", "/v1/backends/process/validation").status, 200);
  HttpReply pull =
      Do("POST", "/v1/images/pull", "/v1/images/pull", Example("POST", "/v1/images/pull"));
  EXPECT_NE(pull.body.find("\"done\":true"), std::string::npos) << pull.body;

  // Guests only (docs/tunnel.md): a WebSocket upgrade without a sandbox's token is refused.
  HttpReply t = Call("GET", "/v1/tunnel", "", "-",
                     {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Authorization: Bearer k1"});
  CheckReply("GET", "/v1/tunnel", t);
  EXPECT_EQ(t.status, 401) << t.body;

  HttpReply c = Do("POST", "/v1/sandboxes", "/v1/sandboxes", Example("POST", "/v1/sandboxes"));
  ASSERT_EQ(c.status, 201) << c.body;
  const std::string id = c.json["data"]["id"];
  const std::string base = "/v1/sandboxes/" + id;
  const std::string g = base + "/api/v1/";
  Do("GET", "/v1/sandboxes", "/v1/sandboxes");
  Do("GET", S, base);
  EXPECT_EQ(Do("POST", S + "/timeout", base + "/timeout", Example("POST", S + "/timeout")).status,
            200);
  // The test double cannot replace a guest: documented 400 saying so (jail and docker can).
  EXPECT_EQ(Do("POST", S + "/restart-guest", base + "/restart-guest").status, 400);
  // Nor report metrics: documented 501 (jail and docker do: cgroup_usage_test.cc, docker_metrics_test.cc).
  EXPECT_EQ(Do("GET", S + "/metrics", base + "/metrics").status, 501);
  // Ports (docs/ports.md): the control API, and the relay to a port where nothing listens.
  const std::string P = S + "/ports/{port}";
  EXPECT_EQ(Do("GET", P, base + "/ports/1").status, 200);
  EXPECT_EQ(Do("POST", P, base + "/ports/1", Example("POST", P)).status, 200);
  EXPECT_EQ(Do("POST", P, base + "/ports/1", {{"public", false}}).status, 200);
  for (const char* m : {"GET", "POST", "PUT", "PATCH", "DELETE"}) {
    EXPECT_EQ(Do(m, P + "/{path}", base + "/ports/1/some/path?q=1").status, 502);
  }
  // One backend only: the sandbox is already on it (docs/migration.md; tests/daemon/migrate_test.cc
  // moves sandboxes between two), and a drain needs somewhere else to go.
  EXPECT_EQ(Do("POST", S + "/migrate", base + "/migrate", Json{{"backend", "process"}}).status, 409);
  EXPECT_EQ(Do("POST", "/v1/admin/drain", "/v1/admin/drain",
               Json{{"backend", "process"}, {"to", "process"}})
                .status,
            400);

  // Files, in an order in which each documented example finds what it needs.
  for (const char* op : {"write", "read", "exists", "search", "find", "list", "replace"}) {
    HttpReply r = Do("POST", G + "file/" + op, g + "file/" + op, Example("POST", G + "file/" + op));
    EXPECT_EQ(r.status, 200) << op << ": " << r.body;
  }
  const std::string boundary = "openapiBoundary7";
  const std::string multipart =
      "--" + boundary +
      "\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\nup.txt\r\n"
      "--" +
      boundary +
      "\r\nContent-Disposition: form-data; name=\"file\"; "
      "filename=\"up.txt\"\r\nContent-Type: application/octet-stream"
      "\r\n\r\nuploaded bytes\r\n--" +
      boundary + "--\r\n";
  HttpReply up = Call("POST", g + "file/upload", multipart, "",
                      {"Content-Type: multipart/form-data; boundary=" + boundary});
  CheckReply("POST", G + "file/upload", up);
  EXPECT_EQ(up.status, 200) << up.body;
  HttpReply down = Do("GET", G + "file/download", g + "file/download?path=up.txt");
  EXPECT_EQ(down.body, "uploaded bytes");
  HttpReply raw = Call("POST", g + "file/upload?path=raw.txt", "raw bytes", "",
                       {"Content-Type: application/octet-stream"});
  CheckReply("POST", G + "file/upload", raw);
  EXPECT_EQ(raw.status, 200) << raw.body;
  HttpReply tarball = Do("GET", G + "file/archive", g + "file/archive?path=.&compression=gzip");
  EXPECT_EQ(tarball.status, 200) << tarball.body.substr(0, 300);
  HttpReply unpacked = Call("POST", g + "file/archive?path=unpacked", tarball.body, "",
                            {"Content-Type: application/gzip"});
  CheckReply("POST", G + "file/archive", unpacked);
  EXPECT_EQ(unpacked.status, 200) << unpacked.body;
  EXPECT_EQ(
      Do("POST", G + "file/delete", g + "file/delete", Example("POST", G + "file/delete")).status,
      200);

  // Shell sessions.
  HttpReply e = Do("POST", G + "shell/exec", g + "shell/exec", Example("POST", G + "shell/exec"));
  EXPECT_EQ(e.json["data"]["status"], "completed") << e.body;
  Do("POST", G + "shell/view", g + "shell/view", Example("POST", G + "shell/view"));
  Do("POST", G + "shell/wait", g + "shell/wait", Example("POST", G + "shell/wait"));
  Do("POST", G + "shell/kill", g + "shell/kill", Example("POST", G + "shell/kill"));
  Do("POST", G + "shell/exec", g + "shell/exec",
     {{"id", "w"}, {"command", "read x; echo got $x"}, {"wait_seconds", 0}});
  Json write = Example("POST", G + "shell/write");
  write["id"] = "w";
  EXPECT_EQ(Do("POST", G + "shell/write", g + "shell/write", write).status, 200);
  HttpReply w = Do("POST", G + "shell/wait", g + "shell/wait", {{"id", "w"}, {"seconds", 20}});
  EXPECT_EQ(w.json["data"]["returncode"], 0) << w.body;
  Do("POST", G + "shell/run", g + "shell/run", Example("POST", G + "shell/run"));
  Do("POST", G + "shell/run", g + "shell/run", {{"session_id", "bgs"}, {"command", "sleep 0.1 &"}});
  HttpReply st =
      Do("POST", G + "shell/state", g + "shell/state", Example("POST", G + "shell/state"));
  Do("POST", G + "shell/restore", g + "shell/restore", Example("POST", G + "shell/restore"));
  HttpReply rs = Do("POST", G + "shell/restore", g + "shell/restore",
                    {{"id", "s3"}, {"state", st.json["data"]["state"]}});
  EXPECT_EQ(rs.json["data"]["cwd"], "/tmp") << rs.body;
  Do("GET", G + "shell/list", g + "shell/list");
  Do("POST", G + "shell/list", g + "shell/list", Json::object());

  // Live output, in the daemon's form and the guest's.
  Do("POST", G + "shell/exec", g + "shell/exec",
     {{"id", "s3"}, {"command", "echo one; sleep 0.3; echo two"}, {"wait_seconds", 0}});
  HttpReply ev;
  ev.body = ReadEvents(base + "/shell/s3/stream", "event: status");
  ev.status = 200;
  ev.content_type = "text/event-stream";
  CheckReply("GET", S + "/shell/{session}/stream", ev);
  EXPECT_NE(ev.body.find("two"), std::string::npos) << ev.body;
  // Opened after the command ended (and resumed from an offset), it still reports the end.
  ev.body = ReadEvents(g + "shell/stream?id=s3&offset=0", "event: status");
  CheckReply("GET", G + "shell/stream", ev);
  EXPECT_NE(ev.body.find("event: status"), std::string::npos) << ev.body;
  Do("POST", G + "shell/delete", g + "shell/delete", Example("POST", G + "shell/delete"));

  // Background processes.
  HttpReply ps = Do("POST", G + "process/start", g + "process/start",
                    {{"session_id", "default"}, {"command", "echo bg-out"}});
  ASSERT_EQ(ps.status, 200) << ps.body;
  const int pid = ps.json["data"]["pid"];
  Do("POST", G + "process/list", g + "process/list", Example("POST", G + "process/list"));
  Do("POST", G + "process/logs", g + "process/logs", {{"pid", pid}, {"offset", 0}});
  Do("POST", G + "process/kill", g + "process/kill", Example("POST", G + "process/kill"));
  Do("GET", G + "health", g + "health");

  // Programs with separate output streams (exec/*). A start answers when its program ends, so
  // the long ones run on another thread while the calls that need them running are made.
  Do("POST", G + "exec/start", g + "exec/start", Example("POST", G + "exec/start"));
  auto start = [&](const Json& body) {
    CheckRequest("POST", G + "exec/start", body);
    return std::async(std::launch::async, [this, path = g + "exec/start", body] {
      return Call("POST", path, DumpJson(body), "", {"Content-Type: application/json"});
    });
  };
  auto listed = [&](const std::string& tag) {
    for (int i = 0; i < 400; ++i) {
      HttpReply l = Call("POST", g + "exec/list", "{}", "", {"Content-Type: application/json"});
      if (l.body.find("\"tag\":\"" + tag + "\"") != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  };
  auto follow = start({{"cmd", "sh"}, {"args", {"-c", "sleep 2; echo done"}}, {"tag", "server"}});
  ASSERT_TRUE(listed("server"));
  HttpReply conn = Do("POST", G + "exec/connect", g + "exec/connect",
                      Example("POST", G + "exec/connect"));
  EXPECT_NE(conn.body.find("\"event\":\"end\""), std::string::npos) << conn.body;
  CheckReply("POST", G + "exec/start", follow.get());
  auto cat = start({{"cmd", "cat"}, {"stdin", true}, {"tag", "server"}});
  ASSERT_TRUE(listed("server"));
  Do("POST", G + "exec/list", g + "exec/list", Example("POST", G + "exec/list"));
  Do("POST", G + "exec/input", g + "exec/input", Example("POST", G + "exec/input"));
  Do("POST", G + "exec/close-stdin", g + "exec/close-stdin",
     Example("POST", G + "exec/close-stdin"));
  HttpReply echoed = cat.get();
  CheckReply("POST", G + "exec/start", echoed);
  EXPECT_NE(echoed.body.find("aGkK"), std::string::npos) << echoed.body;  // "hi\n"
  auto sleeper = start({{"cmd", "sleep"}, {"args", {"30"}}, {"tag", "server"}});
  ASSERT_TRUE(listed("server"));
  Do("POST", G + "exec/signal", g + "exec/signal", Example("POST", G + "exec/signal"));
  HttpReply killed = sleeper.get();
  CheckReply("POST", G + "exec/start", killed);
  EXPECT_NE(killed.body.find("signal: terminated"), std::string::npos) << killed.body;
  // A program on a pseudo-terminal, resized while it runs.
  auto term = start({{"cmd", "sh"},
                     {"args", {"-c", "sleep 1; stty size"}},
                     {"tag", "terminal"},
                     {"pty", {{"rows", 24}, {"cols", 80}}}});
  ASSERT_TRUE(listed("terminal"));
  EXPECT_EQ(
      Do("POST", G + "exec/resize", g + "exec/resize", Example("POST", G + "exec/resize")).status,
      200);
  HttpReply resized = term.get();
  CheckReply("POST", G + "exec/start", resized);
  EXPECT_NE(resized.body.find("\"event\":\"pty\""), std::string::npos) << resized.body;
  std::string screen;
  for (size_t at = 0, nl; (nl = resized.body.find('\n', at)) != std::string::npos; at = nl + 1) {
    const Json line = Json::parse(resized.body.substr(at, nl - at), nullptr, false);
    if (line.is_object() && line.value("event", "") == "pty") {
      screen += Base64Decode(line.value("data", "")).value_or("");
    }
  }
  EXPECT_NE(screen.find("40 120"), std::string::npos) << screen;

  // Directory entries (fs/*).
  for (const char* op : {"fs/stat", "fs/list", "fs/mkdir", "fs/chown", "fs/move"}) {
    HttpReply r = Do("POST", G + op, g + op, Example("POST", G + op));
    EXPECT_EQ(r.status, 200) << op << ": " << r.body;
  }
  // A watch streams until the client leaves: here its documented refusal of a missing directory.
  EXPECT_EQ(Do("POST", G + "fs/watch", g + "fs/watch", {{"path", "/no/such/dir"}}).status, 404);

  // ai-manus's supervisor: the guest and its services; the lifetime, answered by the daemon.
  HttpReply sv = Do("GET", G + "supervisor/status", g + "supervisor/status");
  EXPECT_EQ(sv.json["data"][0]["name"], "agentbox-guest") << sv.body;
  for (const char* op : {"stop", "restart", "shutdown"}) {
    HttpReply r = Do("POST", G + "supervisor/" + op, g + "supervisor/" + op);
    EXPECT_EQ(r.status, 200) << op << ": " << r.body;
  }
  for (const char* op : {"activate", "extend"}) {
    const std::string tmpl = G + "supervisor/timeout/" + op;
    HttpReply r = Do("POST", tmpl, g + "supervisor/timeout/" + op, Example("POST", tmpl));
    EXPECT_EQ(r.status, 200) << op << ": " << r.body;
  }
  EXPECT_EQ(Do("POST", G + "supervisor/timeout/cancel", g + "supervisor/timeout/cancel").status,
            200);
  HttpReply ts = Do("GET", G + "supervisor/timeout/status", g + "supervisor/timeout/status");
  EXPECT_EQ(ts.json["data"]["active"], true) << ts.body;

  HttpReply d = Do("DELETE", S, base);
  EXPECT_EQ(d.status, 200);

  std::set<std::string> missing;
  for (const auto& op : DocumentedOperations()) {
    if (!covered_.count(op)) {
      missing.insert(op);
    }
  }
  EXPECT_TRUE(missing.empty()) << "documented but not exercised: "
                               << ::testing::PrintToString(missing);
}

TEST_F(OpenApiTest, DocumentedErrorsHaveTheirStatuses) {
  const std::string S = "/v1/sandboxes/{id}";
  const std::string G = S + "/api/v1/";
  // 401: TCP without a key.
  EXPECT_EQ(Do("GET", "/v1/sandboxes", "/v1/sandboxes", nullptr, "-").status, 401);
  EXPECT_EQ(Do("GET", "/v1/info", "/v1/info", nullptr, "wrong-key").status, 401);
  // 400: not JSON.
  HttpReply bad = Call("POST", "/v1/sandboxes", "{not json", "key-alice");
  CheckReply("POST", "/v1/sandboxes", bad);
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(
      DoInvalid("POST", "/v1/images/pull", "/v1/images/pull", Json::object(), "key-alice").status,
      422);
  // 403: runtime flags over TCP; 422: a value that does not parse, a key that is not a flag.
  EXPECT_EQ(Do("GET", "/v1/flags", "/v1/flags", nullptr, "key-alice").status, 403);
  EXPECT_EQ(Do("PUT", "/v1/flags", "/v1/flags", {{"flags", Json::object()}}, "key-alice").status,
            403);
  EXPECT_EQ(
      Do("PUT", "/v1/flags", "/v1/flags", {{"flags", {{"AGENTBOX_PROBE_TTL_MS", "soon"}}}}).status,
      422);
  EXPECT_EQ(Do("PUT", "/v1/flags", "/v1/flags", {{"flags", {{"AGENTBOX_LISTEN", "x"}}}}).status,
            422);
  // 403: host network over TCP.
  EXPECT_EQ(Do("POST", "/v1/sandboxes", "/v1/sandboxes", {{"network", "host"}}, "key-alice").status,
            403);
  // 422: out of range; the field is named.
  HttpReply v = DoInvalid("POST", "/v1/sandboxes", "/v1/sandboxes", {{"ttl_s", 1}}, "key-alice");
  EXPECT_EQ(v.status, 422);
  EXPECT_EQ(v.json["data"]["fields"][0], "ttl_s");
  // 413: a body over the server's limit.
  HttpReply big = Call("POST", "/v1/sandboxes", std::string(2 << 20, 'x'), "key-alice");
  CheckReply("POST", "/v1/sandboxes", big);
  EXPECT_EQ(big.status, 413);
  // 405: a known path with the wrong method (listed on the path's operations).
  HttpReply put = Call("PUT", "/v1/sandboxes", "{}", "key-alice");
  CheckReply("POST", "/v1/sandboxes", put);
  EXPECT_EQ(put.status, 405);
  // 503: the backend fails.
  backend_->FailNextCreates(1);
  EXPECT_EQ(Do("POST", "/v1/sandboxes", "/v1/sandboxes", Json::object(), "key-bob").status, 503);
  // 429: bob's quota of 2.
  const std::string id = CreateAs("key-bob");
  CreateAs("key-bob");
  EXPECT_EQ(Do("POST", "/v1/sandboxes", "/v1/sandboxes", Json::object(), "key-bob").status, 429);
  // 404: unknown, and another key's sandbox.
  const std::string base = "/v1/sandboxes/" + id;
  const std::string g = base + "/api/v1/";
  EXPECT_EQ(Do("GET", S, "/v1/sandboxes/sb-nope", nullptr, "key-bob").status, 404);
  EXPECT_EQ(Do("GET", S, base, nullptr, "key-alice").status, 404);
  EXPECT_EQ(Do("DELETE", S, base, nullptr, "key-alice").status, 404);
  EXPECT_EQ(Do("POST", S + "/timeout", base + "/timeout", {{"ttl_s", 60}}, "key-alice").status,
            404);
  EXPECT_EQ(
      Do("POST", G + "shell/exec", g + "shell/exec", {{"command", "true"}}, "key-alice").status,
      404);
  EXPECT_EQ(Call("GET", base + "/shell/nope/stream", "", "key-bob").status, 404);
  // Ports: a bad port, no key, another key's sandbox, a mistyped visibility.
  const std::string PR = S + "/ports/{port}/{path}";
  EXPECT_EQ(Do("GET", PR, base + "/ports/0/x", nullptr, "key-bob").status, 400);
  EXPECT_EQ(Do("GET", PR, base + "/ports/8080/x", nullptr, "-").status, 401);
  EXPECT_EQ(Do("GET", PR, base + "/ports/8080/x", nullptr, "key-alice").status, 404);
  EXPECT_EQ(Do("GET", S + "/ports/{port}", base + "/ports/http", nullptr, "key-bob").status, 400);
  EXPECT_EQ(DoInvalid("POST", S + "/ports/{port}", base + "/ports/8080", {{"public", "yes"}},
                      "key-bob")
                .status,
            422);
  // 422 from the daemon's stream alias and the guest; 400 and 409 from the guest.
  EXPECT_EQ(Do("GET", G + "shell/stream", g + "shell/stream", nullptr, "key-bob").status, 422);
  EXPECT_EQ(DoInvalid("POST", S + "/timeout", base + "/timeout", {{"ttl_s", 0}}, "key-bob").status,
            422);
  HttpReply fv = DoInvalid("POST", G + "shell/view", g + "shell/view", Json::object(), "key-bob");
  EXPECT_EQ(fv.status, 422);
  EXPECT_EQ(Do("POST", G + "shell/exec", g + "shell/exec",
               {{"id", "busy"}, {"command", "sleep 5"}, {"wait_seconds", 0}}, "key-bob")
                .status,
            200);
  EXPECT_EQ(Do("POST", G + "shell/exec", g + "shell/exec", {{"id", "busy"}, {"command", "true"}},
               "key-bob")
                .status,
            409);
  HttpReply wt =
      Do("POST", G + "shell/wait", g + "shell/wait", {{"id", "busy"}, {"seconds", 0.1}}, "key-bob");
  EXPECT_EQ(wt.status, 400);
  EXPECT_NE(wt.body.find("Wait timeout"), std::string::npos);
  EXPECT_EQ(
      Do("POST", G + "shell/view", g + "shell/view", {{"id", "no-such-session"}}, "key-bob").status,
      404);
  EXPECT_EQ(Do("POST", G + "process/kill", g + "process/kill", Json::object(), "key-bob").status,
            422);
  EXPECT_EQ(
      Do("GET", G + "file/download", g + "file/download?path=nope", nullptr, "key-bob").status,
      404);
  // 503 while draining.
  api_->BeginDrain();
  EXPECT_EQ(Do("GET", "/v1/sandboxes", "/v1/sandboxes", nullptr, "key-bob").status, 503);
}

// The document's additionalProperties is the server's rule for unknown request fields: where it is
// false, an unknown field is a 422 naming it; where it is true, the field is ignored and the
// response carries a Warning header naming it, which the operation's 200 documents.
TEST_F(OpenApiTest, UnknownRequestFieldsAreHandledAsDocumented) {
  const std::string id = CreateAs("");
  size_t rejected = 0, warned = 0;
  for (const auto& [tmpl, item] : Document()["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters" || !op.contains("requestBody")) {
        continue;
      }
      const Json& rb = v_.Deref(op["requestBody"]);
      if (!rb["content"].contains("application/json")) {
        continue;  // the multipart upload: tested in tests/integration/guest_fields_test.cc
      }
      const Json& schema = v_.Deref(rb["content"]["application/json"]["schema"]);
      ASSERT_TRUE(schema.contains("additionalProperties"))
          << method << " " << tmpl << ": the request schema must state additionalProperties";
      const bool open = schema["additionalProperties"] == true;
      Json body = rb["content"]["application/json"].value("example", Json::object());
      body["zz_unknown_field"] = 1;
      std::string m = method;
      for (char& c : m) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      }
      const std::string path = std::regex_replace(
          std::regex_replace(std::regex_replace(tmpl, std::regex(R"(\{id\})"), id),
                             std::regex(R"(\{name\})"), "process"),
          std::regex(R"(\{port\})"), "8080");
      HttpReply r = Call(m, path, DumpJson(body), "", {"Content-Type: application/json"});
      CheckReply(m, tmpl, r);
      const std::string warning =
          "Warning: 299 agentbox \"unknown field 'zz_unknown_field' ignored\"";
      if (open) {
        ++warned;
        EXPECT_NE(r.headers.find(warning), std::string::npos)
            << m << " " << tmpl << " -> " << r.status << "\n"
            << r.headers;
        EXPECT_TRUE(
            v_.Deref(op["responses"]["200"]).value("headers", Json::object()).contains("Warning"))
            << m << " " << tmpl << ": the 200 does not document the Warning header";
      } else {
        ++rejected;
        EXPECT_EQ(r.status, 422) << m << " " << tmpl << ": " << r.body;
        EXPECT_EQ(r.json["data"]["fields"], Json::array({"zz_unknown_field"})) << r.body;
        EXPECT_EQ(r.headers.find("Warning:"), std::string::npos) << r.headers;
      }
    }
  }
  EXPECT_EQ(rejected, 7u);  // create, timeout, flags, a backend's validation, a port's visibility,
                           // migrate, drain
  EXPECT_GT(warned, 20u);   // pull and the guest's JSON endpoints
  // The examples in the issue: a mistyped limit and `ttl` for `ttl_s`.
  HttpReply lim = DoInvalid("POST", "/v1/sandboxes", "/v1/sandboxes",
                            {{"limits", {{"memory_bytes", 268435456}}}}, "key-alice");
  EXPECT_EQ(lim.status, 422);
  EXPECT_EQ(lim.json["message"],
            "unknown field 'memory_bytes' in limits; did you mean 'memory_mb'?");
  HttpReply ttl = DoInvalid("POST", "/v1/sandboxes", "/v1/sandboxes", {{"ttl", 3}}, "key-alice");
  EXPECT_EQ(ttl.status, 422);
  EXPECT_EQ(ttl.json["message"], "unknown field 'ttl'; did you mean 'ttl_s'?");
}

// Every (method, path) the server answers, other than with "no such endpoint" (404) or 405, is
// documented. Candidates: every documented path with every method, the daemon's own routes (so
// dropping one from the document fails), paths a client might guess, and every guest operation
// name found in the guest's source (a new guest endpoint forwarded without documentation fails
// here).
TEST_F(OpenApiTest, EveryRouteTheServerAnswersIsDocumented) {
  const std::string id = CreateAs("");
  std::set<std::string> templates;
  for (const auto& [path, item] : Document()["paths"].items()) {
    templates.insert(path);
  }
  for (const char* extra : {"/healthz",
                            "/readyz",
                            "/metrics",
                            "/v1/info",
                            "/v1/sandboxes",
                            "/v1/sandboxes/{id}",
                            "/v1/sandboxes/{id}/timeout",
                            "/v1/sandboxes/{id}/restart-guest",
                            "/v1/sandboxes/{id}/metrics",
                            "/v1/sandboxes/{id}/shell/{session}/stream",
                            "/",
                            "/v1",
                            "/v1/flags",
                            "/v1/health",
                            "/health",
                            "/v1/sandboxes/{id}/shell",
                            "/v1/sandboxes/{id}/shell/{session}",
                            "/v1/sandboxes/{id}/stream",
                            "/v1/sandboxes/{id}/exec",
                            "/v1/sandboxes/{id}/logs",
                            "/v1/sandboxes/{id}/api",
                            "/v1/sandboxes/{id}/api/v1",
                            "/v1/sandboxes/{id}/timeout/extra",
                            "/v1/sandboxes/{id}/shell/{session}/stream/extra",
                            "/v1/info/extra",
                            "/api/v1/health"}) {
    templates.insert(extra);
  }
  const std::string guest_src = ReadFile(AGENTBOX_SOURCE_DIR "/src/guest/guest_api.cc") +
                                ReadFile(AGENTBOX_SOURCE_DIR "/src/guest/exec_api.cc");
  ASSERT_FALSE(guest_src.empty());
  const std::regex op_re(R"re(op == "([a-z_-]+)")re");
  const std::regex path_re(R"re("/api/v1/([a-z_/]+)")re");
  std::set<std::string> guest_ops;
  for (auto it = std::sregex_iterator(guest_src.begin(), guest_src.end(), op_re);
       it != std::sregex_iterator(); ++it) {
    for (const char* area : {"shell/", "process/", "file/", "exec/", "fs/"}) {
      guest_ops.insert(area + (*it)[1].str());
    }
  }
  for (auto it = std::sregex_iterator(guest_src.begin(), guest_src.end(), path_re);
       it != std::sregex_iterator(); ++it) {
    std::string p = (*it)[1].str();
    if (!p.empty() && p.back() != '/') {
      guest_ops.insert(p);
    }
  }
  EXPECT_GT(guest_ops.size(), 20u) << "the guest's routes were not found in its source";
  for (const auto& op : guest_ops) {
    templates.insert("/v1/sandboxes/{id}/api/v1/" + op);
  }
  const auto documented = DocumentedOperations();
  std::vector<std::string> undocumented;
  size_t probes = 0;
  for (const auto& tmpl : templates) {
    std::string path = std::regex_replace(tmpl, std::regex(R"(\{id\})"), id);
    path = std::regex_replace(path, std::regex(R"(\{session\})"), "probe");
    for (const char* method : {"GET", "POST", "PUT", "PATCH", "DELETE"}) {
      if (documented.count(std::string(method) + " " + tmpl)) {
        continue;  // documented; checked by the other tests
      }
      ++probes;
      HttpReply r = Call(method, path, std::string(method) == "GET" ? "" : "{}");
      const bool unknown =
          r.status == 405 || (r.status == 404 && r.json.is_object() &&
                              r.json.value("message", "").starts_with("no such endpoint"));
      if (!unknown) {
        undocumented.push_back(std::string(method) + " " + tmpl + " -> " +
                               std::to_string(r.status) + " " + r.body.substr(0, 120));
      }
    }
  }
  EXPECT_GT(probes, 300u);
  EXPECT_TRUE(undocumented.empty()) << "answered but not in docs/openapi.json:\n"
                                    << ::testing::PrintToString(undocumented);
}

}  // namespace
}  // namespace agentbox
