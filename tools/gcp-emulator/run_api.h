#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "executor.h"
#include "faults.h"
#include "http/server.h"
#include "run_model.h"

// The Cloud Run Admin API v2 subset (gcp-wire.md), under /v2/projects/{p}/locations/{r}/:
//
//   POST   jobs?jobId=J            create (an Operation, done at once)
//   GET    jobs, jobs/J            list, get
//   DELETE jobs/J                  delete (cancels and deletes its executions)
//   POST   jobs/J:run              run with overrides -> Operation whose metadata is the execution
//   GET    jobs/J/executions[/E]   list, get
//   POST   jobs/J/executions/E:cancel;  DELETE jobs/J/executions/E
//   GET    jobs/J/executions/E/tasks[/T]
//   GET    operations[/O];  POST operations/O:wait;  DELETE operations/O
//
// Every execution really runs: one thread per execution drives its tasks' containers through
// the Executor. State lives in memory and in DIR/run/ (jobs/, executions/ as JSON), so that jobs
// and finished executions survive a restart; an execution that was running when the emulator
// stopped is reported failed ("the emulator restarted") and its containers are removed.
namespace agentbox::gcpemu {

class RunApi {
 public:
  RunApi(std::string data_dir, std::string docker_socket, Faults& faults);
  ~RunApi();  // cancels running executions and joins their threads

  // --volumes fuse: GCS volumes become rclone mounts through the Storage API at `storage_url`
  // ("http://127.0.0.1:PORT"). Call before the first execution.
  void UseFuseVolumes(std::string storage_url) { fuse_url_ = std::move(storage_url); }

  static bool Owns(const http::Request& req);
  static std::string MethodId(const http::Request& req);
  http::Response Handle(const http::Request& req);

 private:
  struct Exec {
    ExecutionState state;
    std::vector<std::shared_ptr<CancelToken>> tokens;  // one per task
  };

  http::Response CreateJob(const std::string& parent, const http::Request& req);
  http::Response RunJob(const std::string& job_name, const http::Request& req);
  http::Response CancelExecution(const std::string& name);
  http::Response DeleteExecution(const std::string& name);
  http::Response DeleteJob(const std::string& name);
  http::Response GetOperation(const std::string& name, bool wait, const http::Request& req);
  Json JobJsonLocked(const std::string& name);

  void Drive(std::string exec_name);  // the execution's thread
  void RunTask(const std::string& exec_name, int index);
  void FinishLocked(Exec& x);
  void SaveJobLocked(const std::string& name);
  void SaveExecLocked(const ExecutionState& e);
  void EraseExecLocked(const std::string& name);
  void Load();
  std::string PathFor(const char* kind, const std::string& name) const;

  std::string data_dir_;
  std::string fuse_url_;
  Executor executor_;
  Faults& faults_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Json> jobs_;                    // guarded by mu_
  std::map<std::string, std::shared_ptr<Exec>> execs_;  // guarded by mu_
  std::map<std::string, std::string> operations_;       // op name -> execution or "" (done ops)
  std::map<std::string, Json> done_operations_;         // guarded by mu_
  std::thread cleanup_;    // removes containers left by a previous run (Load)
  int active_ = 0;         // executions whose (detached) thread still runs; guarded by mu_
  bool stopping_ = false;  // guarded by mu_
};

}  // namespace agentbox::gcpemu
