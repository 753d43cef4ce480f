#include "backends/cloudrun/memory_cloud.h"

#include <fstream>
#include <set>
#include <sstream>

namespace agentbox::cloudrun {

Result<void> MemoryObjectStore::CheckBucket() {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  if (!bucket_exists) {
    return Fail(ErrorCode::kNotFound, "Cloud Storage: 404 notFound: bucket " + bucket_);
  }
  return {};
}

gcp::ObjectMeta MemoryObjectStore::Meta(const std::string& name, const Object& o) const {
  gcp::ObjectMeta m;
  m.name = name;
  m.bucket = bucket_;
  m.generation = o.generation;
  m.metageneration = 1;
  m.size = static_cast<int64_t>(o.data.size());
  m.updated = "2026-12-04T12:00:00.000Z";
  return m;
}

Result<gcp::ObjectMeta> MemoryObjectStore::Stat(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  auto it = objects_.find(name);
  if (it == objects_.end()) {
    return Fail(ErrorCode::kNotFound, "Cloud Storage: 404 notFound: " + name);
  }
  return Meta(name, it->second);
}

Result<gcp::ObjectData> MemoryObjectStore::Read(const std::string& name,
                                                std::optional<gcp::ByteRange> range) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  auto it = objects_.find(name);
  if (it == objects_.end()) {
    return Fail(ErrorCode::kNotFound, "Cloud Storage: 404 notFound: " + name);
  }
  gcp::ObjectData d;
  d.meta = Meta(name, it->second);
  d.data = it->second.data;
  if (range) {
    d.data = d.data.substr(std::min<size_t>(d.data.size(), static_cast<size_t>(range->offset)),
                           range->length ? static_cast<size_t>(*range->length) : std::string::npos);
  }
  return d;
}

Result<gcp::ObjectMeta> MemoryObjectStore::ReadToFile(const std::string& name,
                                                      const std::string& path, uint64_t max_bytes) {
  auto d = Read(name, std::nullopt);
  if (!d) {
    return Fail(d.error());
  }
  if (d->data.size() > max_bytes) {
    return Fail(ErrorCode::kTooLarge, name + " is too large");
  }
  std::ofstream(path, std::ios::binary) << d->data;
  return d->meta;
}

Result<gcp::ObjectMeta> MemoryObjectStore::Insert(const std::string& name, std::string_view data,
                                                  std::optional<int64_t> if_generation_match,
                                                  const std::string&) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  auto it = objects_.find(name);
  if (if_generation_match) {
    const int64_t live = it == objects_.end() ? 0 : it->second.generation;
    if (live != *if_generation_match) {
      return Fail(ErrorCode::kConflict,
                  "Cloud Storage: 412 conditionNotMet: precondition failed for " + name);
    }
  }
  Object& o = objects_[name];
  o.data = std::string(data);
  o.generation = ++next_generation_;
  return Meta(name, o);
}

Result<gcp::ObjectMeta> MemoryObjectStore::UploadFile(const std::string& name,
                                                      const std::string& path,
                                                      std::optional<int64_t> if_generation_match) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Fail(ErrorCode::kNotFound, "read " + path);
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return Insert(name, ss.str(), if_generation_match, "application/octet-stream");
}

Result<gcp::ListPage> MemoryObjectStore::List(const gcp::ListOptions& opts) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  gcp::ListPage page;
  std::set<std::string> prefixes;
  const size_t max = opts.max_results > 0 ? static_cast<size_t>(opts.max_results) : 1000;
  size_t n = 0;
  for (auto it = objects_.lower_bound(std::max(opts.prefix, opts.page_token));
       it != objects_.end() && it->first.starts_with(opts.prefix); ++it) {
    if (n >= max) {
      page.next_page_token = it->first;
      break;
    }
    const std::string rest = it->first.substr(opts.prefix.size());
    if (!opts.delimiter.empty()) {
      if (size_t d = rest.find(opts.delimiter); d != std::string::npos) {
        const std::string p = opts.prefix + rest.substr(0, d + opts.delimiter.size());
        if (prefixes.insert(p).second) {
          page.prefixes.push_back(p);
          ++n;
        }
        continue;
      }
    }
    page.items.push_back(Meta(it->first, it->second));
    ++n;
  }
  return page;
}

Result<void> MemoryObjectStore::Delete(const std::string& name,
                                       std::optional<int64_t> if_generation_match) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  auto it = objects_.find(name);
  if (it == objects_.end()) {
    return Fail(ErrorCode::kNotFound, "Cloud Storage: 404 notFound: " + name);
  }
  if (if_generation_match && *if_generation_match != it->second.generation) {
    return Fail(ErrorCode::kConflict, "Cloud Storage: 412 conditionNotMet: precondition");
  }
  objects_.erase(it);
  return {};
}

Result<size_t> MemoryObjectStore::DeletePrefix(const std::string& prefix) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  size_t n = 0;
  for (auto it = objects_.lower_bound(prefix);
       it != objects_.end() && it->first.starts_with(prefix);) {
    it = objects_.erase(it);
    ++n;
  }
  return n;
}

uint64_t MemoryObjectStore::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

std::map<std::string, std::string> MemoryObjectStore::Names() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : objects_) {
    out[k] = v.data;
  }
  return out;
}

Result<void> FakeJobRunner::CreateJob(const std::string& job_id, const Json& job) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  if (jobs_.count(job_id)) {
    return Fail(ErrorCode::kConflict, "Cloud Run: 409 ALREADY_EXISTS: job " + job_id);
  }
  jobs_[job_id] = job;
  return {};
}

Result<Json> FakeJobRunner::GetJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return Fail(ErrorCode::kNotFound, "Cloud Run: 404 NOT_FOUND: job " + job_id);
  }
  return it->second;
}

Result<void> FakeJobRunner::DeleteJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  if (!jobs_.erase(job_id)) {
    return Fail(ErrorCode::kNotFound, "Cloud Run: 404 NOT_FOUND: job " + job_id);
  }
  return {};
}

Result<std::string> FakeJobRunner::Run(const std::string& job_id, const Json& overrides) {
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++calls_;
    if (!jobs_.count(job_id)) {
      return Fail(ErrorCode::kNotFound, "Cloud Run: 404 NOT_FOUND: job " + job_id);
    }
    name = parent() + "/jobs/" + job_id + "/executions/" + job_id + "-" +
           std::to_string(executions_.size());
  }
  FakeExecution e;
  e.overrides = overrides;
  executor_(job_id, e);
  std::lock_guard<std::mutex> lock(mu_);
  executions_[name] = e;
  last_ = name;
  return name;
}

Result<Json> FakeJobRunner::GetExecution(const std::string& execution) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  auto it = executions_.find(execution);
  if (it == executions_.end()) {
    return Fail(ErrorCode::kNotFound, "Cloud Run: 404 NOT_FOUND: " + execution);
  }
  const FakeExecution& e = it->second;
  Json j = {{"name", execution}};
  if (e.started) {
    j["startTime"] = "2026-12-04T12:00:00Z";
  }
  if (e.done) {
    j["completionTime"] = "2026-12-04T12:00:01Z";
    j["conditions"] = Json::array(
        {{{"type", "Completed"},
          {"state", e.succeeded && !e.cancelled ? "CONDITION_SUCCEEDED" : "CONDITION_FAILED"},
          {"message", e.message}}});
    j[e.cancelled ? "cancelledCount" : e.succeeded ? "succeededCount" : "failedCount"] = 1;
  } else if (e.started) {
    j["runningCount"] = 1;
  }
  return j;
}

Result<void> FakeJobRunner::Cancel(const std::string& execution) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  auto it = executions_.find(execution);
  if (it == executions_.end()) {
    return Fail(ErrorCode::kNotFound, "Cloud Run: 404 NOT_FOUND: " + execution);
  }
  if (!it->second.done) {
    it->second.done = true;
    it->second.cancelled = true;
    it->second.succeeded = false;
    it->second.exit_code.reset();
  }
  return {};
}

Result<std::vector<Json>> FakeJobRunner::ListTasks(const std::string& execution) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  auto it = executions_.find(execution);
  if (it == executions_.end()) {
    return Fail(ErrorCode::kNotFound, "Cloud Run: 404 NOT_FOUND: " + execution);
  }
  Json t = {{"name", execution + "/tasks/0"}};
  if (it->second.exit_code) {
    t["lastAttemptResult"] = {{"exitCode", *it->second.exit_code}};
  }
  return std::vector<Json>{t};
}

Result<std::vector<Json>> FakeJobRunner::ListExecutions(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  std::vector<Json> out;
  for (const auto& [name, e] : executions_) {
    if (name.find("/jobs/" + job_id + "/") != std::string::npos) {
      out.push_back({{"name", name}});
    }
  }
  return out;
}

uint64_t FakeJobRunner::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

std::map<std::string, Json> FakeJobRunner::Jobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return jobs_;
}

size_t FakeJobRunner::executions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return executions_.size();
}

void FakeJobRunner::Finish(const std::string& execution,
                           const std::function<void(FakeExecution&)>& change) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = executions_.find(execution);
  if (it != executions_.end()) {
    change(it->second);
  }
}

std::string FakeJobRunner::last_execution() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

}  // namespace agentbox::cloudrun
