#include "run_model.h"

#include <sys/stat.h>

#include <cmath>
#include <map>

#include "common/strings.h"

namespace agentbox::gcpemu {
namespace {

void EnumToName(Json& obj, const char* key, const std::map<int, const char*>& names) {
  if (obj.is_object() && obj.contains(key) && obj[key].is_number_integer()) {
    auto it = names.find(obj[key].get<int>());
    obj[key] = it == names.end() ? "UNSPECIFIED" : it->second;
  }
}

const char* PhaseName(TaskPhase p) {
  switch (p) {
    case TaskPhase::kPending:
      return "PENDING";
    case TaskPhase::kRunning:
      return "RUNNING";
    case TaskPhase::kSucceeded:
      return "SUCCEEDED";
    case TaskPhase::kFailed:
      return "FAILED";
    case TaskPhase::kCancelled:
      return "CANCELLED";
  }
  return "PENDING";
}

TaskPhase PhaseFromName(const std::string& s) {
  if (s == "RUNNING") {
    return TaskPhase::kRunning;
  }
  if (s == "SUCCEEDED") {
    return TaskPhase::kSucceeded;
  }
  if (s == "FAILED") {
    return TaskPhase::kFailed;
  }
  if (s == "CANCELLED") {
    return TaskPhase::kCancelled;
  }
  return TaskPhase::kPending;
}

ApiError Bad(const std::string& field, const std::string& what) {
  return ApiError(400, "Invalid value for field '" + field + "': " + what);
}

int IntOf(const Json& obj, const char* key, int def) {
  if (!obj.is_object() || !obj.contains(key)) {
    return def;
  }
  const Json& v = obj[key];
  if (v.is_number_integer()) {
    return v.get<int>();
  }
  if (v.is_string()) {
    try {
      return std::stoi(v.get<std::string>());
    } catch (...) {
      return def;
    }
  }
  return def;
}

Json Condition(const std::string& type, const char* state, const std::string& message, double t) {
  Json c{{"type", type}, {"state", state}, {"lastTransitionTime", Rfc3339(t)}};
  if (!message.empty()) {
    c["message"] = message;
  }
  return c;
}

std::string TaskName(const ExecutionState& e, int index) {
  return e.name + "/tasks/" + ShortName(e.name) + "-task" + std::to_string(index);
}

}  // namespace

void NormalizeJobEnums(Json& job) {
  static const std::map<int, const char*> kLaunch = {{0, "LAUNCH_STAGE_UNSPECIFIED"},
                                                     {1, "EARLY_ACCESS"},
                                                     {2, "ALPHA"},
                                                     {3, "BETA"},
                                                     {4, "GA"},
                                                     {5, "DEPRECATED"},
                                                     {6, "UNIMPLEMENTED"},
                                                     {7, "PRELAUNCH"}};
  static const std::map<int, const char*> kEnv = {{0, "EXECUTION_ENVIRONMENT_UNSPECIFIED"},
                                                  {1, "EXECUTION_ENVIRONMENT_GEN1"},
                                                  {2, "EXECUTION_ENVIRONMENT_GEN2"}};
  static const std::map<int, const char*> kMedium = {{0, "MEDIUM_UNSPECIFIED"}, {1, "MEMORY"}};
  static const std::map<int, const char*> kEgress = {
      {0, "VPC_EGRESS_UNSPECIFIED"}, {1, "ALL_TRAFFIC"}, {2, "PRIVATE_RANGES_ONLY"}};
  EnumToName(job, "launchStage", kLaunch);
  if (!job.contains("template") || !job["template"].is_object()) {
    return;
  }
  Json& exec = job["template"];
  if (!exec.contains("template") || !exec["template"].is_object()) {
    return;
  }
  Json& task = exec["template"];
  EnumToName(task, "executionEnvironment", kEnv);
  if (task.contains("vpcAccess")) {
    EnumToName(task["vpcAccess"], "egress", kEgress);
  }
  if (task.contains("volumes") && task["volumes"].is_array()) {
    for (auto& v : task["volumes"]) {
      if (v.is_object() && v.contains("emptyDir")) {
        EnumToName(v["emptyDir"], "medium", kMedium);
      }
    }
  }
}

std::optional<std::chrono::milliseconds> ParseDuration(const Json& v) {
  if (!v.is_string()) {
    return std::nullopt;
  }
  const std::string s = v.get<std::string>();
  if (s.size() < 2 || s.back() != 's') {
    return std::nullopt;
  }
  try {
    size_t used = 0;
    const double secs = std::stod(s.substr(0, s.size() - 1), &used);
    if (used != s.size() - 1 || secs < 0) {
      return std::nullopt;
    }
    return std::chrono::milliseconds(static_cast<int64_t>(std::llround(secs * 1000)));
  } catch (...) {
    return std::nullopt;
  }
}

std::string FormatDuration(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) {
    return std::to_string(d.count() / 1000) + "s";
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3fs", static_cast<double>(d.count()) / 1000.0);
  return buf;
}

bool ValidJobId(const std::string& id) {
  if (id.empty() || id.size() > 63 || !(id[0] >= 'a' && id[0] <= 'z') || id.back() == '-') {
    return false;
  }
  for (const char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return false;
    }
  }
  return true;
}

ApiResult<void> ValidateAndDefaultJob(Json& job) {
  if (!job.contains("template") || !job["template"].is_object()) {
    return tl::unexpected(Bad("template", "a job needs an ExecutionTemplate"));
  }
  Json& exec = job["template"];
  if (!exec.contains("template") || !exec["template"].is_object()) {
    return tl::unexpected(Bad("template.template", "a job needs a TaskTemplate"));
  }
  const int task_count = IntOf(exec, "taskCount", 1);
  if (task_count < 1 || task_count > 10000) {
    return tl::unexpected(Bad("template.taskCount", "must be between 1 and 10000"));
  }
  exec["taskCount"] = task_count;
  exec["parallelism"] = IntOf(exec, "parallelism", 0);
  Json& task = exec["template"];
  const int retries = IntOf(task, "maxRetries", 3);
  if (retries < 0 || retries > 10) {
    return tl::unexpected(Bad("template.template.maxRetries", "must be between 0 and 10"));
  }
  task["maxRetries"] = retries;
  if (!task.contains("timeout")) {
    task["timeout"] = "600s";
  }
  auto timeout = ParseDuration(task["timeout"]);
  if (!timeout || timeout->count() <= 0 || *timeout > std::chrono::hours(168)) {
    return tl::unexpected(
        Bad("template.template.timeout", "a duration such as \"600s\", at most 168 hours"));
  }
  if (!task.contains("executionEnvironment")) {
    task["executionEnvironment"] = "EXECUTION_ENVIRONMENT_GEN2";
  }
  if (!task.contains("containers") || !task["containers"].is_array() ||
      task["containers"].size() != 1) {
    return tl::unexpected(Bad("template.template.containers",
                              "exactly one container (the emulator does not run sidecars)"));
  }
  std::map<std::string, std::string> volumes;  // name -> kind
  if (task.contains("volumes")) {
    if (!task["volumes"].is_array()) {
      return tl::unexpected(Bad("template.template.volumes", "must be an array"));
    }
    for (const auto& v : task["volumes"]) {
      const std::string name = v.value("name", "");
      if (name.empty()) {
        return tl::unexpected(Bad("template.template.volumes[].name", "required"));
      }
      if (v.contains("gcs") && v["gcs"].is_object()) {
        if (v["gcs"].value("bucket", "").empty()) {
          return tl::unexpected(
              Bad("template.template.volumes[" + name + "].gcs.bucket", "required"));
        }
        volumes[name] = "gcs";
      } else if (v.contains("emptyDir")) {
        volumes[name] = "emptyDir";
      } else {
        return tl::unexpected(Bad("template.template.volumes[" + name + "]",
                                  "the emulator supports gcs and emptyDir volumes only"));
      }
    }
  }
  Json& c = task["containers"][0];
  if (!c.is_object() || c.value("image", "").empty()) {
    return tl::unexpected(Bad("template.template.containers[0].image", "required"));
  }
  if (c.contains("env")) {
    for (const auto& e : c["env"]) {
      if (!e.is_object() || e.value("name", "").empty()) {
        return tl::unexpected(Bad("template.template.containers[0].env[].name", "required"));
      }
      if (e.contains("valueSource")) {
        return tl::unexpected(
            Bad("template.template.containers[0].env[" + e.value("name", "") + "].valueSource",
                "secrets are not supported by the emulator"));
      }
    }
  }
  if (c.contains("resources") && c["resources"].contains("limits")) {
    const Json& l = c["resources"]["limits"];
    if (l.contains("memory") && (!l["memory"].is_string() || !ParseMemory(l["memory"]))) {
      return tl::unexpected(Bad("template.template.containers[0].resources.limits.memory",
                                "a quantity such as \"512Mi\" or \"2Gi\""));
    }
    if (l.contains("cpu") && (!l["cpu"].is_string() || !ParseNanoCpus(l["cpu"]))) {
      return tl::unexpected(Bad("template.template.containers[0].resources.limits.cpu",
                                "a quantity such as \"1\", \"2\" or \"500m\""));
    }
  }
  if (c.contains("volumeMounts")) {
    for (const auto& m : c["volumeMounts"]) {
      const std::string name = m.value("name", "");
      const std::string path = m.value("mountPath", "");
      if (!volumes.count(name)) {
        return tl::unexpected(Bad("template.template.containers[0].volumeMounts[].name",
                                  "'" + name + "' names no volume of the template"));
      }
      if (path.empty() || path[0] != '/' || path == "/" || path.starts_with("/dev") ||
          path.starts_with("/proc") || path.starts_with("/sys")) {
        return tl::unexpected(Bad("template.template.containers[0].volumeMounts[].mountPath",
                                  "'" + path + "': an absolute path, not /, /dev, /proc or /sys"));
      }
    }
  }
  if (!job.contains("launchStage")) {
    job["launchStage"] = "GA";
  }
  return {};
}

ApiResult<Json> ApplyOverrides(const Json& execution_template, const Json& overrides) {
  Json exec = execution_template;
  if (!overrides.is_object()) {
    return exec;
  }
  if (overrides.contains("taskCount")) {
    const int n = IntOf(overrides, "taskCount", 0);
    if (n < 1 || n > 10000) {
      return tl::unexpected(Bad("overrides.taskCount", "must be between 1 and 10000"));
    }
    exec["taskCount"] = n;
  }
  if (overrides.contains("timeout")) {
    auto t = ParseDuration(overrides["timeout"]);
    if (!t || t->count() <= 0 || *t > std::chrono::hours(168)) {
      return tl::unexpected(Bad("overrides.timeout", "a duration such as \"600s\""));
    }
    exec["template"]["timeout"] = FormatDuration(*t);
  }
  if (overrides.contains("containerOverrides")) {
    if (!overrides["containerOverrides"].is_array()) {
      return tl::unexpected(Bad("overrides.containerOverrides", "must be an array"));
    }
    Json& containers = exec["template"]["containers"];
    for (const auto& o : overrides["containerOverrides"]) {
      const std::string name = o.value("name", "");
      Json* target = nullptr;
      for (auto& c : containers) {
        if (c.value("name", "") == name || (name.empty() && containers.size() == 1)) {
          target = &c;
        }
      }
      if (target == nullptr) {
        return tl::unexpected(Bad("overrides.containerOverrides[].name",
                                  "'" + name + "' names no container of the job"));
      }
      if (o.value("clearArgs", false)) {
        target->erase("args");
      }
      if (o.contains("args") && o["args"].is_array() && !o["args"].empty()) {
        (*target)["args"] = o["args"];
      }
      if (o.contains("env") && o["env"].is_array()) {
        Json env = target->value("env", Json::array());
        for (const auto& e : o["env"]) {
          if (!e.is_object() || e.value("name", "").empty() || e.contains("valueSource")) {
            return tl::unexpected(Bad("overrides.containerOverrides[].env[]",
                                      "each needs a name and a value (no valueSource)"));
          }
          bool replaced = false;
          for (auto& have : env) {
            if (have.value("name", "") == e["name"]) {
              have = e;
              replaced = true;
            }
          }
          if (!replaced) {
            env.push_back(e);
          }
        }
        (*target)["env"] = env;
      }
    }
  }
  return exec;
}

std::string ShortName(const std::string& resource_name) {
  const size_t slash = resource_name.rfind('/');
  return slash == std::string::npos ? resource_name : resource_name.substr(slash + 1);
}

Json ExecutionJson(const ExecutionState& e) {
  int running = 0;
  int succeeded = 0;
  int failed = 0;
  int cancelled = 0;
  int retried = 0;
  for (const auto& t : e.tasks) {
    running += t.phase == TaskPhase::kRunning;
    succeeded += t.phase == TaskPhase::kSucceeded;
    failed += t.phase == TaskPhase::kFailed;
    cancelled += t.phase == TaskPhase::kCancelled;
    retried += t.retried;
  }
  const double updated = std::max({e.create, e.start, e.completion});
  Json conditions = Json::array();
  const bool started = e.start > 0;
  conditions.push_back(Condition("ResourcesAvailable",
                                 started ? "CONDITION_SUCCEEDED" : "CONDITION_PENDING", "",
                                 started ? e.start : e.create));
  conditions.push_back(Condition("Started", started ? "CONDITION_SUCCEEDED" : "CONDITION_PENDING",
                                 "", started ? e.start : e.create));
  Json completed;
  if (!e.done()) {
    completed = Condition("Completed", started ? "CONDITION_RECONCILING" : "CONDITION_PENDING",
                          e.cancel_requested ? "The execution is being cancelled." : "",
                          started ? e.start : e.create);
    if (e.cancel_requested) {
      completed["executionReason"] = "CANCELLING";
    }
  } else if (e.failure.empty()) {
    char msg[96];
    std::snprintf(msg, sizeof(msg), "Execution completed successfully in %.2fs.",
                  e.completion - (started ? e.start : e.create));
    completed = Condition("Completed", "CONDITION_SUCCEEDED", msg, e.completion);
  } else {
    completed = Condition("Completed", "CONDITION_FAILED", e.failure, e.completion);
    if (cancelled > 0 && failed == 0) {
      completed["executionReason"] = "CANCELLED";
    } else if (failed > 0) {
      completed["executionReason"] = "NON_ZERO_EXIT_CODE";
    }
  }
  conditions.push_back(std::move(completed));
  Json j{{"name", e.name},
         {"uid", e.uid},
         {"generation", "1"},
         {"labels", e.labels},
         {"annotations", e.annotations},
         {"createTime", Rfc3339(e.create)},
         {"updateTime", Rfc3339(updated)},
         {"launchStage", "GA"},
         {"job", ShortName(e.job_name)},
         {"parallelism", e.parallelism},
         {"taskCount", e.task_count},
         {"template", e.task_template},
         {"reconciling", !e.done()},
         {"conditions", conditions},
         {"observedGeneration", "1"},
         {"runningCount", running},
         {"succeededCount", succeeded},
         {"failedCount", failed},
         {"cancelledCount", cancelled},
         {"retriedCount", retried},
         {"logUri", "file://emulator/" + e.name},
         {"etag", "\"" + e.uid + "\""}};
  if (started) {
    j["startTime"] = Rfc3339(e.start);
  }
  if (e.done()) {
    j["completionTime"] = Rfc3339(e.completion);
  }
  return j;
}

Json TaskJson(const ExecutionState& e, const TaskState& t) {
  const Json& tt = e.task_template;
  const bool done = t.phase == TaskPhase::kSucceeded || t.phase == TaskPhase::kFailed ||
                    t.phase == TaskPhase::kCancelled;
  const char* state = t.phase == TaskPhase::kSucceeded ? "CONDITION_SUCCEEDED"
                      : done                           ? "CONDITION_FAILED"
                      : t.phase == TaskPhase::kRunning ? "CONDITION_RECONCILING"
                                                       : "CONDITION_PENDING";
  std::string message;
  if (t.last && done) {
    message = t.phase == TaskPhase::kSucceeded ? "Task completed successfully." : t.last->message;
  }
  Json j{{"name", TaskName(e, t.index)},
         {"uid", e.uid + "-" + std::to_string(t.index)},
         {"generation", "1"},
         {"labels", e.labels},
         {"createTime", Rfc3339(e.create)},
         {"updateTime", Rfc3339(std::max({e.create, t.start, t.completion}))},
         {"job", ShortName(e.job_name)},
         {"execution", ShortName(e.name)},
         {"containers", tt.value("containers", Json::array())},
         {"volumes", tt.value("volumes", Json::array())},
         {"maxRetries", tt.value("maxRetries", 0)},
         {"timeout", tt.value("timeout", "600s")},
         {"executionEnvironment", tt.value("executionEnvironment", "EXECUTION_ENVIRONMENT_GEN2")},
         {"reconciling", !done},
         {"conditions",
          Json::array({Condition("Completed", state, message, done ? t.completion : e.create)})},
         {"observedGeneration", "1"},
         {"index", t.index},
         {"retried", t.retried},
         {"logUri", "file://emulator/" + TaskName(e, t.index)},
         {"etag", "\"" + e.uid + "-" + std::to_string(t.index) + "\""}};
  if (tt.contains("serviceAccount")) {
    j["serviceAccount"] = tt["serviceAccount"];
  }
  if (t.start > 0) {
    j["scheduledTime"] = Rfc3339(t.start);
    j["startTime"] = Rfc3339(t.start);
  }
  if (done) {
    j["completionTime"] = Rfc3339(t.completion);
  }
  if (t.last) {
    Json r = Json::object();
    if (t.last->rpc_code != 0 || !t.last->message.empty()) {
      r["status"] = {{"code", t.last->rpc_code}, {"message", t.last->message}};
    }
    if (t.last->started) {
      r["exitCode"] = t.last->exit_code;
      if (t.last->term_signal != 0) {
        r["termSignal"] = t.last->term_signal;
      }
    }
    j["lastAttemptResult"] = r;
  }
  return j;
}

Json ExecutionToDisk(const ExecutionState& e) {
  Json tasks = Json::array();
  for (const auto& t : e.tasks) {
    Json jt{{"index", t.index},
            {"phase", PhaseName(t.phase)},
            {"retried", t.retried},
            {"start", t.start},
            {"completion", t.completion}};
    if (t.last) {
      jt["last"] = {{"started", t.last->started},         {"exit_code", t.last->exit_code},
                    {"term_signal", t.last->term_signal}, {"timed_out", t.last->timed_out},
                    {"cancelled", t.last->cancelled},     {"rpc_code", t.last->rpc_code},
                    {"message", t.last->message}};
    }
    tasks.push_back(std::move(jt));
  }
  return Json{{"name", e.name},
              {"job_name", e.job_name},
              {"uid", e.uid},
              {"operation", e.operation},
              {"labels", e.labels},
              {"annotations", e.annotations},
              {"template", e.task_template},
              {"task_count", e.task_count},
              {"parallelism", e.parallelism},
              {"create", e.create},
              {"start", e.start},
              {"completion", e.completion},
              {"cancel_requested", e.cancel_requested},
              {"failure", e.failure},
              {"tasks", tasks}};
}

ExecutionState ExecutionFromDisk(const Json& j) {
  ExecutionState e;
  e.name = j.value("name", "");
  e.job_name = j.value("job_name", "");
  e.uid = j.value("uid", "");
  e.operation = j.value("operation", "");
  e.labels = j.value("labels", Json::object());
  e.annotations = j.value("annotations", Json::object());
  e.task_template = j.value("template", Json::object());
  e.task_count = j.value("task_count", 1);
  e.parallelism = j.value("parallelism", 0);
  e.create = j.value("create", 0.0);
  e.start = j.value("start", 0.0);
  e.completion = j.value("completion", 0.0);
  e.cancel_requested = j.value("cancel_requested", false);
  e.failure = j.value("failure", "");
  for (const auto& jt : j.value("tasks", Json::array())) {
    TaskState t;
    t.index = jt.value("index", 0);
    t.phase = PhaseFromName(jt.value("phase", "PENDING"));
    t.retried = jt.value("retried", 0);
    t.start = jt.value("start", 0.0);
    t.completion = jt.value("completion", 0.0);
    if (jt.contains("last")) {
      const Json& l = jt["last"];
      AttemptResult r;
      r.started = l.value("started", false);
      r.exit_code = l.value("exit_code", 0);
      r.term_signal = l.value("term_signal", 0);
      r.timed_out = l.value("timed_out", false);
      r.cancelled = l.value("cancelled", false);
      r.rpc_code = l.value("rpc_code", 0);
      r.message = l.value("message", "");
      t.last = r;
    }
    e.tasks.push_back(std::move(t));
  }
  return e;
}

Json DoneOperation(const std::string& name, const Json& resource, const char* type) {
  Json res = resource;
  res["@type"] = std::string("type.googleapis.com/google.cloud.run.v2.") + type;
  return Json{{"name", name}, {"metadata", res}, {"done", true}, {"response", res}};
}

Json RunOperation(const ExecutionState& e) {
  Json meta = ExecutionJson(e);
  meta["@type"] = "type.googleapis.com/google.cloud.run.v2.Execution";
  Json op{{"name", e.operation}, {"metadata", meta}, {"done", e.done()}};
  if (e.done()) {
    if (e.failure.empty()) {
      op["response"] = meta;
    } else {
      op["error"] = {{"code", 10}, {"message", e.failure}};
    }
  }
  return op;
}

ApiResult<TaskSpec> BuildTaskSpec(const ExecutionState& e, int index, int attempt,
                                  const std::string& buckets_root) {
  const Json& tt = e.task_template;
  const Json& c = tt["containers"][0];
  TaskSpec s;
  s.image = c.value("image", "");
  s.command = c.value("command", std::vector<std::string>());
  s.args = c.value("args", std::vector<std::string>());
  s.working_dir = c.value("workingDir", "");
  for (const auto& env : c.value("env", Json::array())) {
    s.env.emplace_back(env.value("name", ""), env.value("value", ""));
  }
  s.env.emplace_back("CLOUD_RUN_JOB", ShortName(e.job_name));
  s.env.emplace_back("CLOUD_RUN_EXECUTION", ShortName(e.name));
  s.env.emplace_back("CLOUD_RUN_TASK_INDEX", std::to_string(index));
  s.env.emplace_back("CLOUD_RUN_TASK_ATTEMPT", std::to_string(attempt));
  s.env.emplace_back("CLOUD_RUN_TASK_COUNT", std::to_string(e.task_count));
  if (c.contains("resources") && c["resources"].contains("limits")) {
    const Json& l = c["resources"]["limits"];
    if (l.contains("memory")) {
      s.memory_bytes = ParseMemory(l["memory"].get<std::string>()).value_or(0);
    }
    if (l.contains("cpu")) {
      s.nano_cpus = ParseNanoCpus(l["cpu"].get<std::string>()).value_or(0);
    }
  }
  s.timeout = std::chrono::duration_cast<std::chrono::seconds>(
      ParseDuration(tt.value("timeout", Json("600s"))).value_or(std::chrono::seconds(600)));
  if (s.timeout.count() == 0) {
    s.timeout = std::chrono::seconds(1);
  }
  std::map<std::string, Json> volumes;
  for (const auto& v : tt.value("volumes", Json::array())) {
    volumes[v.value("name", "")] = v;
  }
  for (const auto& m : c.value("volumeMounts", Json::array())) {
    const Json& v = volumes[m.value("name", "")];
    const std::string path = m.value("mountPath", "");
    if (v.contains("emptyDir")) {
      s.tmpfs.push_back(path);
      continue;
    }
    const Json& g = v["gcs"];
    VolumeMount vm;
    vm.target = path;
    vm.read_only = g.value("readOnly", false);
    vm.bucket = g.value("bucket", "");
    vm.source = buckets_root + "/" + vm.bucket;
    struct stat st {};
    if (::stat(vm.source.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return ApiFail(404, "Cloud Storage volume '" + m.value("name", "") + "': bucket '" +
                              g.value("bucket", "") + "' does not exist");
    }
    for (const auto& opt : g.value("mountOptions", std::vector<std::string>())) {
      const size_t eq = opt.find('=');
      const std::string key = opt.substr(0, eq);
      const std::string val = eq == std::string::npos ? "" : opt.substr(eq + 1);
      try {
        if (key == "only-dir") {
          std::string dir = val;
          while (!dir.empty() && dir.back() == '/') {
            dir.pop_back();
          }
          if (dir.empty() || dir.find("..") != std::string::npos || dir[0] == '/') {
            return ApiFail(400, "mountOptions only-dir='" + val + "' must be a relative path");
          }
          vm.source += "/" + dir;
          vm.only_dir = dir;
          // gcsfuse shows an absent prefix as an empty directory.
          std::string made = buckets_root + "/" + g.value("bucket", "");
          for (size_t pos = 0; pos <= dir.size();) {
            size_t slash = dir.find('/', pos);
            if (slash == std::string::npos) {
              slash = dir.size();
            }
            made = buckets_root + "/" + g.value("bucket", "") + "/" + dir.substr(0, slash);
            ::mkdir(made.c_str(), 0755);
            pos = slash + 1;
          }
        } else if (key == "file-mode") {
          vm.file_mode = static_cast<mode_t>(std::stoul(val, nullptr, 8));
        } else if (key == "dir-mode") {
          vm.dir_mode = static_cast<mode_t>(std::stoul(val, nullptr, 8));
        } else if (key == "uid") {
          vm.uid = static_cast<uid_t>(std::stoul(val));
        } else if (key == "gid") {
          vm.gid = static_cast<gid_t>(std::stoul(val));
        }
        // Other gcsfuse flags (implicit-dirs, stat-cache-ttl, ...) change nothing here.
      } catch (...) {
        return ApiFail(400, "mountOptions '" + opt + "' has a malformed value");
      }
    }
    s.mounts.push_back(std::move(vm));
  }
  return s;
}

}  // namespace agentbox::gcpemu
