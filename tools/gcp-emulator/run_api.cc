#include "run_api.h"

#include <dirent.h>

#include <thread>

#include "common/fs_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"

namespace agentbox::gcpemu {
namespace {

constexpr char kDataLabel[] = "agentbox.gcp-emulator.data";
constexpr char kExecLabel[] = "agentbox.gcp-emulator.execution";

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t e = s.find(sep, pos);
    if (e == std::string::npos) {
      e = s.size();
    }
    out.push_back(s.substr(pos, e - pos));
    pos = e + 1;
  }
  return out;
}

// "/v2/projects/p/locations/r/jobs/j:run" -> segments + verb ("run").
struct RunPath {
  std::vector<std::string> seg;
  std::string verb;
  bool ok = false;
};

RunPath ParseRunPath(const std::string& path) {
  RunPath p;
  if (!path.starts_with("/v2/projects/")) {
    return p;
  }
  std::string rest = path.substr(4);
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    p.verb = rest.substr(colon + 1);
    rest.resize(colon);
  }
  while (!rest.empty() && rest.back() == '/') {
    rest.pop_back();
  }
  p.seg = Split(rest, '/');
  p.ok = p.seg.size() >= 5 && p.seg[0] == "projects" && p.seg[2] == "locations" &&
         !p.seg[1].empty() && !p.seg[3].empty();
  for (const auto& s : p.seg) {
    p.ok = p.ok && !s.empty();
  }
  return p;
}

std::string Prefix(const RunPath& p, size_t n) {
  std::string out;
  for (size_t i = 0; i < n && i < p.seg.size(); ++i) {
    out += (i ? "/" : "") + p.seg[i];
  }
  return out;
}

http::Response NotFound(const std::string& kind, const std::string& name) {
  return ErrorResponse(
      {404,
       "Resource '" + ShortName(name) + "' of kind '" + kind + "' does not exist (" + name + ").",
       "notFound"});
}

std::string RandomSuffix() {
  const std::string hex = RandomId(10);
  std::string out;
  for (size_t i = 0; i < 5; ++i) {
    const int v = HexValue(hex[i]) * 16 + HexValue(hex[i + 5]);
    out += "abcdefghijklmnopqrstuvwxyz0123456789"[v % 36];
  }
  return out;
}

std::string Uuid() {
  const std::string h = RandomId(32);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

}  // namespace

RunApi::RunApi(std::string data_dir, std::string docker_socket, Faults& faults)
    : data_dir_(std::move(data_dir)), executor_(std::move(docker_socket)), faults_(faults) {
  EnsureDir(data_dir_ + "/run", 0755);
  EnsureDir(data_dir_ + "/run/jobs", 0755);
  EnsureDir(data_dir_ + "/run/executions", 0755);
  EnsureDir(data_dir_ + "/run/logs", 0755);
  Load();
}

RunApi::~RunApi() {
  std::unique_lock lock(mu_);
  stopping_ = true;
  for (auto& [n, x] : execs_) {
    if (!x->state.done()) {
      x->state.cancel_requested = true;
      for (auto& t : x->tokens) {
        t->Cancel(executor_.engine());
      }
    }
  }
  changed_.notify_all();
  changed_.wait(lock, [&] { return active_ == 0; });
  lock.unlock();
  if (cleanup_.joinable()) {
    cleanup_.join();
  }
}

std::string RunApi::PathFor(const char* kind, const std::string& name) const {
  std::string flat = name;
  for (auto& c : flat) {
    c = c == '/' ? '~' : c;
  }
  return data_dir_ + "/run/" + kind + "/" + flat + ".json";
}

void RunApi::Load() {
  for (const char* kind : {"jobs", "executions"}) {
    DIR* dp = ::opendir((data_dir_ + "/run/" + kind).c_str());
    if (dp == nullptr) {
      continue;
    }
    while (auto* e = ::readdir(dp)) {
      const std::string f = e->d_name;
      if (!f.ends_with(".json")) {
        continue;
      }
      auto text = ReadSmallFile(data_dir_ + "/run/" + kind + "/" + f, 64 << 20);
      const Json j = text ? Json::parse(*text, nullptr, false) : Json();
      if (!j.is_object()) {
        continue;
      }
      if (std::string(kind) == "jobs") {
        jobs_[j.value("name", "")] = j;
        continue;
      }
      auto x = std::make_shared<Exec>();
      x->state = ExecutionFromDisk(j);
      if (!x->state.done()) {
        x->state.completion = NowUnix();
        x->state.failure = "The emulator restarted while the execution ran.";
        for (auto& t : x->state.tasks) {
          if (t.phase == TaskPhase::kPending || t.phase == TaskPhase::kRunning) {
            t.phase = TaskPhase::kFailed;
            t.completion = x->state.completion;
          }
        }
        SaveExecLocked(x->state);
      }
      operations_[x->state.operation] = x->state.name;
      execs_[x->state.name] = x;
    }
    ::closedir(dp);
  }
  // Containers of executions that were running when the emulator stopped.
  cleanup_ = std::thread([socket = executor_.engine().socket_path(), dir = data_dir_] {
    Executor(socket).RemoveLabelled(kDataLabel, dir);
  });
}

void RunApi::SaveJobLocked(const std::string& name) {
  WriteFileAtomic(PathFor("jobs", name), DumpJson(jobs_[name]), 0644);
}

void RunApi::SaveExecLocked(const ExecutionState& e) {
  WriteFileAtomic(PathFor("executions", e.name), DumpJson(ExecutionToDisk(e)), 0644);
}

void RunApi::EraseExecLocked(const std::string& name) {
  auto it = execs_.find(name);
  if (it == execs_.end()) {
    return;
  }
  done_operations_[it->second->state.operation] = RunOperation(it->second->state);
  operations_.erase(it->second->state.operation);
  ::unlink(PathFor("executions", name).c_str());
  execs_.erase(it);
}

bool RunApi::Owns(const http::Request& req) { return req.path.starts_with("/v2/"); }

std::string RunApi::MethodId(const http::Request& req) {
  const RunPath p = ParseRunPath(req.path);
  const size_t n = p.seg.size();
  const std::string& m = req.method;
  if (!p.ok) {
    return "run.unknown";
  }
  if (p.seg[4] == "operations") {
    return n == 5             ? "run.operations.list"
           : p.verb == "wait" ? "run.operations.wait"
           : m == "DELETE"    ? "run.operations.delete"
                              : "run.operations.get";
  }
  switch (n) {
    case 5:
      return m == "POST" ? "run.jobs.create" : "run.jobs.list";
    case 6:
      return p.verb == "run" ? "run.jobs.run" : m == "DELETE" ? "run.jobs.delete" : "run.jobs.get";
    case 7:
      return "run.executions.list";
    case 8:
      return p.verb == "cancel" ? "run.executions.cancel"
             : m == "DELETE"    ? "run.executions.delete"
                                : "run.executions.get";
    case 9:
      return "run.tasks.list";
    default:
      return "run.tasks.get";
  }
}

Json RunApi::JobJsonLocked(const std::string& name) {
  Json j = jobs_.at(name);
  int count = 0;
  const ExecutionState* latest = nullptr;
  for (const auto& [n, x] : execs_) {
    if (x->state.job_name == name && !x->state.deleted) {
      ++count;
      if (latest == nullptr || x->state.create > latest->create) {
        latest = &x->state;
      }
    }
  }
  j["executionCount"] = std::max(count, j.value("executionCount", 0));
  if (latest != nullptr) {
    Json ref{{"name", latest->name}, {"createTime", Rfc3339(latest->create)}};
    const char* status = "EXECUTION_RUNNING";
    if (latest->done()) {
      ref["completionTime"] = Rfc3339(latest->completion);
      status = latest->failure.empty()    ? "EXECUTION_SUCCEEDED"
               : latest->cancel_requested ? "EXECUTION_CANCELLED"
                                          : "EXECUTION_FAILED";
    } else if (latest->start == 0) {
      status = "EXECUTION_PENDING";
    }
    ref["completionStatus"] = status;
    j["latestCreatedExecution"] = ref;
  }
  return j;
}

http::Response RunApi::Handle(const http::Request& req) {
  const RunPath p = ParseRunPath(req.path);
  if (!p.ok) {
    return ErrorResponse({404,
                          "The requested URL " + req.path +
                              " was not found: Run v2 names "
                              "are projects/{project}/locations/{region}/...",
                          "notFound"});
  }
  const size_t n = p.seg.size();
  const std::string& m = req.method;
  const std::string name = Prefix(p, n);
  if (p.seg[4] == "operations") {
    if (n == 5) {
      std::lock_guard lock(mu_);
      Json ops = Json::array();
      for (const auto& [op, exec] : operations_) {
        if (op.starts_with(name + "/")) {
          ops.push_back(RunOperation(execs_.at(exec)->state));
        }
      }
      return JsonResponse(200, {{"operations", ops}});
    }
    if (m == "DELETE") {
      std::lock_guard lock(mu_);
      done_operations_.erase(name);
      return JsonResponse(200, Json::object());
    }
    return GetOperation(name, p.verb == "wait", req);
  }
  if (p.seg[4] != "jobs") {
    return ErrorResponse({404, "Unknown collection '" + p.seg[4] + "'", "notFound"});
  }
  if (n == 5) {
    if (m == "POST") {
      return CreateJob(Prefix(p, 4), req);
    }
    std::lock_guard lock(mu_);
    Json list = Json::array();
    for (const auto& [jn, j] : jobs_) {
      if (jn.starts_with(name + "/")) {
        list.push_back(JobJsonLocked(jn));
      }
    }
    return JsonResponse(200, {{"jobs", list}});
  }
  if (n == 6) {
    if (p.verb == "run") {
      return RunJob(name, req);
    }
    if (!p.verb.empty()) {
      return ErrorResponse({404, "Unknown method ':" + p.verb + "' on a job", "notFound"});
    }
    if (m == "DELETE") {
      return DeleteJob(name);
    }
    std::lock_guard lock(mu_);
    if (!jobs_.count(name)) {
      return NotFound("JOB", name);
    }
    return JsonResponse(200, JobJsonLocked(name));
  }
  const std::string job = Prefix(p, 6);
  if (p.seg[6] != "executions") {
    return ErrorResponse({404, "Unknown collection '" + p.seg[6] + "'", "notFound"});
  }
  if (n == 7) {
    std::lock_guard lock(mu_);
    if (!jobs_.count(job)) {
      return NotFound("JOB", job);
    }
    Json list = Json::array();
    std::vector<const ExecutionState*> sorted;
    for (const auto& [en, x] : execs_) {
      if (x->state.job_name == job && !x->state.deleted) {
        sorted.push_back(&x->state);
      }
    }
    std::sort(sorted.begin(), sorted.end(),
              [](auto* a, auto* b) { return a->create > b->create; });  // newest first
    for (auto* e : sorted) {
      list.push_back(ExecutionJson(*e));
    }
    return JsonResponse(200, {{"executions", list}});
  }
  const std::string exec = Prefix(p, 8);
  if (n == 8) {
    if (p.verb == "cancel") {
      return CancelExecution(exec);
    }
    if (m == "DELETE") {
      return DeleteExecution(exec);
    }
    std::lock_guard lock(mu_);
    auto it = execs_.find(exec);
    if (it == execs_.end() || it->second->state.deleted) {
      return NotFound("EXECUTION", exec);
    }
    return JsonResponse(200, ExecutionJson(it->second->state));
  }
  std::lock_guard lock(mu_);
  auto it = execs_.find(exec);
  if (it == execs_.end() || it->second->state.deleted || p.seg[8] != "tasks") {
    return NotFound("EXECUTION", exec);
  }
  const ExecutionState& e = it->second->state;
  if (n == 9) {
    Json list = Json::array();
    for (const auto& t : e.tasks) {
      list.push_back(TaskJson(e, t));
    }
    return JsonResponse(200, {{"tasks", list}});
  }
  for (const auto& t : e.tasks) {
    Json tj = TaskJson(e, t);
    if (tj["name"] == name) {
      return JsonResponse(200, tj);
    }
  }
  return NotFound("TASK", name);
}

http::Response RunApi::CreateJob(const std::string& parent, const http::Request& req) {
  const std::string id = req.QueryParam("jobId").value_or("");
  if (!ValidJobId(id)) {
    return ErrorResponse({400,
                          "Invalid jobId '" + id +
                              "': lower-case letters, digits and "
                              "hyphens, starting with a letter, at most 63 characters",
                          "invalid"});
  }
  auto body = ParseJsonObject(req.body);
  if (!body) {
    return ErrorResponse({400, body.error().message, "invalid"});
  }
  Json job = *body;
  NormalizeJobEnums(job);
  if (auto ok = ValidateAndDefaultJob(job); !ok) {
    return ErrorResponse(ok.error());
  }
  const std::string image = job["template"]["template"]["containers"][0]["image"];
  if (auto img = executor_.EnsureImage(image); !img) {
    // No engine is the emulator's problem (503); a missing image is the caller's (400).
    const bool engine_down = img.error().code == ErrorCode::kUnavailable;
    return ErrorResponse({engine_down ? 503 : 400, img.error().message, ""});
  }
  const std::string name = parent + "/jobs/" + id;
  const double now = NowUnix();
  job["name"] = name;
  job["uid"] = Uuid();
  job["generation"] = "1";
  job["observedGeneration"] = "1";
  job["createTime"] = job["updateTime"] = Rfc3339(now);
  job["creator"] = job["lastModifier"] = "emulator@emulator-project.iam.gserviceaccount.com";
  job["reconciling"] = false;
  job["terminalCondition"] = {
      {"type", "Ready"}, {"state", "CONDITION_SUCCEEDED"}, {"lastTransitionTime", Rfc3339(now)}};
  job["conditions"] = Json::array();
  job["etag"] = "\"" + job["uid"].get<std::string>() + "\"";
  job.erase("executionCount");
  job.erase("latestCreatedExecution");
  const std::string op = Prefix(ParseRunPath("/v2/" + parent), 4) + "/operations/" + Uuid();
  if (req.QueryParam("validateOnly") == "true") {
    return JsonResponse(200, DoneOperation(op, job, "Job"));
  }
  std::lock_guard lock(mu_);
  if (jobs_.count(name)) {
    return ErrorResponse(
        {409, "Resource '" + id + "' already exists.", "alreadyExists", "ALREADY_EXISTS"});
  }
  jobs_[name] = job;
  SaveJobLocked(name);
  Json res = JobJsonLocked(name);
  if (done_operations_.size() >= 10000) {
    done_operations_.erase(done_operations_.begin());  // finished operations are not kept forever
  }
  done_operations_[op] = DoneOperation(op, res, "Job");
  Log(LogLevel::kInfo, "gcpemu.job_created", "job={} image={}", name, image);
  return JsonResponse(200, done_operations_[op]);
}

http::Response RunApi::RunJob(const std::string& job_name, const http::Request& req) {
  auto body = ParseJsonObject(req.body);
  if (!body) {
    return ErrorResponse({400, body.error().message, "invalid"});
  }
  std::unique_lock lock(mu_);
  auto it = jobs_.find(job_name);
  if (it == jobs_.end()) {
    return NotFound("JOB", job_name);
  }
  auto exec_template = ApplyOverrides(it->second["template"], body->value("overrides", Json()));
  if (!exec_template) {
    return ErrorResponse(exec_template.error());
  }
  const RunPath p = ParseRunPath("/v2/" + job_name);
  auto x = std::make_shared<Exec>();
  ExecutionState& e = x->state;
  e.name = job_name + "/executions/" + p.seg[5] + "-" + RandomSuffix();
  e.job_name = job_name;
  e.uid = Uuid();
  e.operation = Prefix(p, 4) + "/operations/" + Uuid();
  e.labels = (*exec_template).value("labels", Json::object());
  e.labels["run.googleapis.com/job"] = p.seg[5];
  e.annotations = (*exec_template).value("annotations", Json::object());
  e.task_template = (*exec_template)["template"];
  e.task_count = (*exec_template).value("taskCount", 1);
  e.parallelism = (*exec_template).value("parallelism", 0);
  e.create = NowUnix();
  for (int i = 0; i < e.task_count; ++i) {
    TaskState t;
    t.index = i;
    e.tasks.push_back(t);
    x->tokens.push_back(std::make_shared<CancelToken>());
  }
  if (body->value("validateOnly", false)) {
    return JsonResponse(200, RunOperation(e));
  }
  execs_[e.name] = x;
  operations_[e.operation] = e.name;
  SaveExecLocked(e);
  Log(LogLevel::kInfo, "gcpemu.execution_created", "execution={} tasks={}", e.name, e.task_count);
  // Detached, so that finished executions leave no thread behind; the destructor waits for
  // active_ to drop to zero.
  ++active_;
  std::thread([this, n = e.name] {
    Drive(n);
    std::lock_guard done(mu_);
    --active_;
    changed_.notify_all();
  }).detach();
  return JsonResponse(200, RunOperation(e));
}

http::Response RunApi::CancelExecution(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = execs_.find(name);
  if (it == execs_.end() || it->second->state.deleted) {
    return NotFound("EXECUTION", name);
  }
  Exec& x = *it->second;
  if (x.state.done()) {
    return ErrorResponse({400, "Execution " + ShortName(name) + " has already completed.",
                          "failedPrecondition", "FAILED_PRECONDITION"});
  }
  x.state.cancel_requested = true;
  for (auto& t : x.tokens) {
    t->Cancel(executor_.engine());
  }
  changed_.notify_all();
  SaveExecLocked(x.state);
  return JsonResponse(200, RunOperation(x.state));
}

http::Response RunApi::DeleteExecution(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = execs_.find(name);
  if (it == execs_.end() || it->second->state.deleted) {
    return NotFound("EXECUTION", name);
  }
  auto x = it->second;
  const std::string op = ParseRunPath("/v2/" + name).ok
                             ? Prefix(ParseRunPath("/v2/" + name), 4) + "/operations/" + Uuid()
                             : name;
  Json res = DoneOperation(op, ExecutionJson(x->state), "Execution");
  if (!x->state.done()) {
    x->state.deleted = true;  // the execution's thread erases it once its containers are gone
    x->state.cancel_requested = true;
    for (auto& t : x->tokens) {
      t->Cancel(executor_.engine());
    }
    changed_.notify_all();
  } else {
    EraseExecLocked(name);
  }
  return JsonResponse(200, res);
}

http::Response RunApi::DeleteJob(const std::string& name) {
  std::lock_guard lock(mu_);
  if (!jobs_.count(name)) {
    return NotFound("JOB", name);
  }
  Json res = JobJsonLocked(name);
  std::vector<std::string> finished;
  for (auto& [en, x] : execs_) {
    if (x->state.job_name != name) {
      continue;
    }
    if (x->state.done()) {
      finished.push_back(en);
    } else {
      x->state.deleted = true;
      x->state.cancel_requested = true;
      for (auto& t : x->tokens) {
        t->Cancel(executor_.engine());
      }
    }
  }
  for (const auto& en : finished) {
    EraseExecLocked(en);
  }
  changed_.notify_all();
  jobs_.erase(name);
  ::unlink(PathFor("jobs", name).c_str());
  const std::string op = Prefix(ParseRunPath("/v2/" + name), 4) + "/operations/" + Uuid();
  return JsonResponse(200, DoneOperation(op, res, "Job"));
}

http::Response RunApi::GetOperation(const std::string& name, bool wait, const http::Request& req) {
  std::chrono::milliseconds timeout{0};
  if (wait) {
    auto body = ParseJsonObject(req.body);
    timeout = ParseDuration(body ? body->value("timeout", Json("60s")) : Json("60s"))
                  .value_or(std::chrono::seconds(60));
    timeout = std::min<std::chrono::milliseconds>(timeout, std::chrono::minutes(5));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mu_);
  for (;;) {
    if (auto d = done_operations_.find(name); d != done_operations_.end()) {
      return JsonResponse(200, d->second);
    }
    auto it = operations_.find(name);
    if (it == operations_.end()) {
      return NotFound("OPERATION", name);
    }
    const ExecutionState& e = execs_.at(it->second)->state;
    if (!wait || e.done() || stopping_ ||
        changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return JsonResponse(200, RunOperation(execs_.at(operations_.at(name))->state));
    }
  }
}

void RunApi::Drive(std::string exec_name) {
  const auto delay = faults_.ExecutionStartDelay();
  {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, delay,
                      [&] { return stopping_ || execs_.at(exec_name)->state.cancel_requested; });
    Exec& x = *execs_.at(exec_name);
    if (!x.state.cancel_requested) {
      x.state.start = NowUnix();
      SaveExecLocked(x.state);
    }
  }
  const ExecutionFault fault = faults_.TakeExecutionFault();
  int parallelism = 0;
  int count = 0;
  {
    std::lock_guard lock(mu_);
    const ExecutionState& e = execs_.at(exec_name)->state;
    parallelism = e.parallelism <= 0 ? e.task_count : e.parallelism;
    count = e.task_count;
  }
  for (int first = 0; first < count; first += parallelism) {
    std::vector<std::thread> batch;
    for (int i = first; i < std::min(count, first + parallelism); ++i) {
      if (fault.fail) {
        std::lock_guard lock(mu_);
        ExecutionState& e = execs_.at(exec_name)->state;
        TaskState& t = e.tasks[static_cast<size_t>(i)];
        AttemptResult r;
        r.started = fault.exit_code.has_value();
        r.exit_code = fault.exit_code.value_or(0);
        r.term_signal = r.exit_code > 128 ? r.exit_code - 128 : 0;
        r.rpc_code = fault.exit_code ? 2 : 3;
        r.message = fault.exit_code
                        ? "injected fault: the container exited with code " +
                              std::to_string(*fault.exit_code)
                        : "injected fault: the container could not be started (image pull "
                          "failed)";
        t.start = t.completion = NowUnix();
        t.last = r;
        t.phase = TaskPhase::kFailed;
        continue;
      }
      batch.emplace_back([this, exec_name, i] { RunTask(exec_name, i); });
    }
    for (auto& t : batch) {
      t.join();
    }
  }
  std::lock_guard lock(mu_);
  auto x = execs_.at(exec_name);  // FinishLocked may erase it from the map
  FinishLocked(*x);
}

void RunApi::RunTask(const std::string& exec_name, int index) {
  const auto i = static_cast<size_t>(index);
  for (int attempt = 0;; ++attempt) {
    ApiResult<TaskSpec> spec;
    std::shared_ptr<CancelToken> token;
    int max_retries = 0;
    {
      std::lock_guard lock(mu_);
      Exec& x = *execs_.at(exec_name);
      TaskState& t = x.state.tasks[i];
      if (x.state.cancel_requested) {
        t.phase = TaskPhase::kCancelled;
        t.completion = NowUnix();
        return;
      }
      t.phase = TaskPhase::kRunning;
      if (attempt == 0) {
        t.start = NowUnix();
      }
      max_retries = x.state.task_template.value("maxRetries", 0);
      spec = BuildTaskSpec(x.state, index, attempt, data_dir_ + "/buckets");
      token = x.tokens[i];
      if (spec) {
        const std::string tag = x.state.uid.substr(0, 8);
        spec->container_name = "gcpemu-" + ShortName(exec_name) + "-" + tag + "-" +
                               std::to_string(index) + "-" + std::to_string(attempt);
        spec->labels = {{kDataLabel, data_dir_}, {kExecLabel, exec_name}};
        spec->log_path = data_dir_ + "/run/logs/" + ShortName(exec_name) + "-task" +
                         std::to_string(index) + "-attempt" + std::to_string(attempt) + ".log";
        spec->fuse_storage_url = fuse_url_;
        spec->fuse_dir = data_dir_ + "/run/fuse";
      }
      SaveExecLocked(x.state);
    }
    AttemptResult r;
    if (!spec) {
      r.rpc_code = 5;
      r.message = spec.error().message;
    } else if (auto img = executor_.EnsureImage(spec->image); !img) {
      r.rpc_code = img.error().code == ErrorCode::kUnavailable ? 14 : 5;
      r.message = img.error().message;
    } else {
      r = executor_.Run(*spec, *token);
    }
    std::lock_guard lock(mu_);
    Exec& x = *execs_.at(exec_name);
    TaskState& t = x.state.tasks[i];
    t.last = r;
    const bool ok = r.started && r.exit_code == 0 && r.rpc_code == 0;
    if (ok || r.cancelled || x.state.cancel_requested || attempt >= max_retries) {
      t.phase = ok                                          ? TaskPhase::kSucceeded
                : (r.cancelled || x.state.cancel_requested) ? TaskPhase::kCancelled
                                                            : TaskPhase::kFailed;
      t.completion = NowUnix();
      Log(LogLevel::kInfo, "gcpemu.task_done", "execution={} task={} exit={} message={}", exec_name,
          index, r.exit_code, r.message);
      SaveExecLocked(x.state);
      changed_.notify_all();
      return;
    }
    ++t.retried;
    SaveExecLocked(x.state);
  }
}

void RunApi::FinishLocked(Exec& x) {
  ExecutionState& e = x.state;
  e.completion = NowUnix();
  if (e.start == 0) {
    e.start = e.completion;
  }
  for (auto& t : e.tasks) {
    if (t.phase == TaskPhase::kPending || t.phase == TaskPhase::kRunning) {
      t.phase = TaskPhase::kCancelled;
      t.completion = e.completion;
    }
  }
  e.failure.clear();
  for (const auto& t : e.tasks) {
    if (t.phase == TaskPhase::kFailed) {
      std::string why = t.last ? t.last->message : "unknown failure";
      if (!why.empty() && why.back() == '.') {
        why.pop_back();
      }
      e.failure =
          "Task " + ShortName(e.name) + "-task" + std::to_string(t.index) + " failed: " + why + ".";
      break;
    }
  }
  if (e.failure.empty()) {
    for (const auto& t : e.tasks) {
      if (t.phase == TaskPhase::kCancelled) {
        e.failure = "The execution was cancelled.";
        break;
      }
    }
  }
  Log(LogLevel::kInfo, "gcpemu.execution_done", "execution={} failure={}", e.name,
      e.failure.empty() ? "none" : e.failure);
  SaveExecLocked(e);
  if (e.deleted) {
    EraseExecLocked(e.name);
  }
  changed_.notify_all();
}

}  // namespace agentbox::gcpemu
