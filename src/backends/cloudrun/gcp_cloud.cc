#include "backends/cloudrun/gcp_cloud.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "common/unique_fd.h"
#include "gcp/auth.h"
#include "gcp/endpoints.h"

namespace agentbox::cloudrun {

Result<gcp::ListResult> ListAll(ObjectStore& store, const std::string& prefix,
                                const std::string& delimiter, size_t limit) {
  gcp::ListResult out;
  gcp::ListOptions o;
  o.prefix = prefix;
  o.delimiter = delimiter;
  do {
    auto page = store.List(o);
    if (!page) {
      return Fail(page.error());
    }
    out.items.insert(out.items.end(), page->items.begin(), page->items.end());
    out.prefixes.insert(out.prefixes.end(), page->prefixes.begin(), page->prefixes.end());
    o.page_token = page->next_page_token;
    if (limit > 0 && out.items.size() + out.prefixes.size() > limit) {
      break;
    }
  } while (!o.page_token.empty());
  return out;
}

ExecutionStatus ParseExecution(const Json& e) {
  ExecutionStatus s;
  s.done = gcp::RunClient::ExecutionDone(e);
  auto count = [&](const char* key) { return e.is_object() ? ValueOr(e, key, 0) : 0; };
  s.started = (e.is_object() && e.contains("startTime")) || count("runningCount") > 0 ||
              count("succeededCount") > 0 || count("failedCount") > 0;
  s.cancelled = count("cancelledCount") > 0;
  s.succeeded = count("succeededCount") > 0;
  if (e.is_object() && e.contains("conditions") && e["conditions"].is_array()) {
    for (const auto& c : e["conditions"]) {
      if (c.is_object() && ValueOr(c, "type", "") == "Completed") {
        const std::string state = ValueOr(c, "state", "");
        if (state == "CONDITION_SUCCEEDED") {
          s.succeeded = true;
        }
        s.message = ValueOr(c, "message", "");
      }
    }
  }
  if (s.cancelled) {
    s.succeeded = false;
  }
  return s;
}

std::optional<int> TaskExitCode(const std::vector<Json>& tasks) {
  for (const auto& t : tasks) {
    if (t.is_object() && t.contains("lastAttemptResult") && t["lastAttemptResult"].is_object()) {
      const Json& r = t["lastAttemptResult"];
      if (r.contains("exitCode") && r["exitCode"].is_number_integer()) {
        return r["exitCode"].get<int>();
      }
      if (r.contains("termSignal") && r["termSignal"].is_number_integer()) {
        return 128 + r["termSignal"].get<int>();
      }
    }
  }
  return std::nullopt;
}

namespace {

class GcsStore final : public ObjectStore {
 public:
  GcsStore(std::shared_ptr<gcp::HttpTransport> http, gcp::Endpoints ep, std::string bucket)
      : http_(http), client_(std::move(http), std::move(ep)), bucket_(std::move(bucket)) {}

  const std::string& bucket() const override { return bucket_; }
  Result<void> CheckBucket() override {
    auto b = client_.GetBucket(bucket_);
    if (!b) {
      return Fail(b.error());
    }
    return {};
  }
  Result<gcp::ObjectMeta> Stat(const std::string& name) override {
    return client_.Stat(bucket_, name);
  }
  Result<gcp::ObjectData> Read(const std::string& name,
                               std::optional<gcp::ByteRange> range) override {
    return client_.Read(bucket_, name, range);
  }
  Result<gcp::ObjectMeta> ReadToFile(const std::string& name, const std::string& path,
                                     uint64_t max_bytes) override {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) {
      return Fail(ErrnoError(errno, "create " + path));
    }
    int err = 0;
    uint64_t total = 0;
    bool too_large = false;
    auto r = client_.ReadTo(bucket_, name, [&](std::string_view bytes) {
      total += bytes.size();
      if (total > max_bytes) {
        too_large = true;
        return false;
      }
      // A resumed transfer restarts from the last byte delivered, so plain appends are right.
      size_t off = 0;
      while (off < bytes.size()) {
        ssize_t n = ::write(fd.Get(), bytes.data() + off, bytes.size() - off);
        if (n <= 0) {
          err = errno;
          return false;
        }
        off += static_cast<size_t>(n);
      }
      return true;
    });
    if (err != 0) {
      return Fail(ErrnoError(err, "write " + path));
    }
    if (too_large) {
      return Fail(ErrorCode::kTooLarge, name + " is over " + std::to_string(max_bytes) + " bytes");
    }
    return r;
  }
  Result<gcp::ObjectMeta> Insert(const std::string& name, std::string_view data,
                                 std::optional<int64_t> if_generation_match,
                                 const std::string& content_type) override {
    gcp::InsertOptions o;
    o.content_type = content_type;
    o.if_generation_match = if_generation_match;
    return client_.Insert(bucket_, name, data, o);
  }
  Result<gcp::ObjectMeta> UploadFile(const std::string& name, const std::string& path,
                                     std::optional<int64_t> if_generation_match) override {
    gcp::InsertOptions o;
    o.if_generation_match = if_generation_match;
    return client_.UploadFile(bucket_, name, path, o);
  }
  Result<gcp::ListPage> List(const gcp::ListOptions& opts) override {
    return client_.List(bucket_, opts);
  }
  Result<void> Delete(const std::string& name,
                      std::optional<int64_t> if_generation_match) override {
    return client_.Delete(bucket_, name, if_generation_match);
  }
  Result<size_t> DeletePrefix(const std::string& prefix) override {
    return client_.DeletePrefix(bucket_, prefix);
  }
  uint64_t calls() const override { return http_->attempts(); }

 private:
  std::shared_ptr<gcp::HttpTransport> http_;
  gcp::StorageClient client_;
  std::string bucket_;
};

class CloudRunJobs final : public JobRunner {
 public:
  CloudRunJobs(std::shared_ptr<gcp::HttpTransport> http, gcp::Endpoints ep, std::string parent)
      : http_(http), client_(std::move(http), std::move(ep)), parent_(std::move(parent)) {}

  std::string parent() const override { return parent_; }
  Result<void> CreateJob(const std::string& job_id, const Json& job) override {
    auto op = client_.CreateJob(parent_, job_id, job);
    if (!op) {
      return Fail(op.error());
    }
    if (op->is_object() && !ValueOr(*op, "done", false) && op->contains("name")) {
      auto done = client_.WaitOperation((*op)["name"].get<std::string>(),
                                        std::chrono::steady_clock::now() + std::chrono::minutes(2));
      if (!done) {
        return Fail(done.error());
      }
    }
    return {};
  }
  Result<Json> GetJob(const std::string& job_id) override { return client_.GetJob(Name(job_id)); }
  Result<void> DeleteJob(const std::string& job_id) override {
    auto r = client_.DeleteJob(Name(job_id));
    if (!r) {
      return Fail(r.error());
    }
    return {};
  }
  Result<std::string> Run(const std::string& job_id, const Json& overrides) override {
    auto op = client_.RunJob(Name(job_id), overrides);
    if (!op) {
      return Fail(op.error());
    }
    const Json& meta = op->is_object() && op->contains("metadata") ? (*op)["metadata"] : Json();
    if (!meta.is_object() || !meta.contains("name") || !meta["name"].is_string()) {
      return Fail(ErrorCode::kInternal,
                  "Cloud Run: jobs.run answered an operation without metadata.name (the "
                  "execution): " +
                      DumpJson(*op).substr(0, 300));
    }
    return meta["name"].get<std::string>();
  }
  Result<Json> GetExecution(const std::string& execution) override {
    return client_.GetExecution(execution);
  }
  Result<void> Cancel(const std::string& execution) override {
    auto r = client_.CancelExecution(execution);
    if (!r) {
      return Fail(r.error());
    }
    return {};
  }
  Result<std::vector<Json>> ListTasks(const std::string& execution) override {
    return client_.ListTasks(execution);
  }
  Result<std::vector<Json>> ListExecutions(const std::string& job_id) override {
    return client_.ListExecutions(Name(job_id));
  }
  uint64_t calls() const override { return http_->attempts(); }

 private:
  std::string Name(const std::string& job_id) const { return parent_ + "/jobs/" + job_id; }
  std::shared_ptr<gcp::HttpTransport> http_;
  gcp::RunClient client_;
  std::string parent_;
};

}  // namespace

Result<Cloud> MakeGcpCloud(const Config& cfg, const std::string& project, const std::string& region,
                           const std::string& bucket) {
  auto ep = gcp::EndpointsFromConfig(cfg);
  if (!ep) {
    return Fail(ep.error());
  }
  auto tokens = gcp::MakeTokenSource(cfg, *ep);
  if (!tokens) {
    return Fail(tokens.error());
  }
  // One transport per service, so each counts its own calls.
  auto storage_http = std::make_shared<gcp::HttpTransport>(*tokens);
  auto run_http = std::make_shared<gcp::HttpTransport>(*tokens);
  Cloud c;
  c.store = std::make_shared<GcsStore>(storage_http, *ep, bucket);
  c.jobs =
      std::make_shared<CloudRunJobs>(run_http, *ep, "projects/" + project + "/locations/" + region);
  return c;
}

}  // namespace agentbox::cloudrun
