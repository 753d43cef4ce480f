#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "auth.h"
#include "common/worker_pool.h"
#include "faults.h"
#include "http/server.h"
#include "object_store.h"
#include "run_api.h"
#include "storage_api.h"

namespace agentbox::gcpemu {

struct EmulatorOptions {
  std::string data_dir;
  std::string docker_socket = "/var/run/docker.sock";
  AuthOptions auth;
  bool fuse_volumes = false;  // --volumes fuse
};

// The one HTTP dispatcher: routes by path to the Storage, Run, auth and fault APIs, applies the
// bearer-token check and the injected faults (by Google method id) first. Handlers run on a
// worker pool, never on the server's I/O threads; upload bodies stream on the I/O threads.
class Emulator : public http::Dispatcher {
 public:
  static Result<std::unique_ptr<Emulator>> Create(boost::asio::io_context& io,
                                                  EmulatorOptions opts);
  ~Emulator() override;

  std::unique_ptr<http::BodySink> StreamBody(const http::Request& req) override;
  void Handle(http::Request req, http::Respond respond) override;

  Faults& faults() { return faults_; }
  // The URL the server listens on, once known ("http://127.0.0.1:PORT"): FUSE volumes mount the
  // buckets through it.
  void SetSelfUrl(const std::string& url);

 private:
  Emulator(boost::asio::io_context& io, EmulatorOptions opts, std::unique_ptr<ObjectStore> store);
  // Runs `fn` after `delay` on the worker pool.
  void After(std::chrono::milliseconds delay, std::function<void()> fn);
  void HandleFaults(const http::Request& req, http::Respond respond);

  boost::asio::io_context& io_;
  EmulatorOptions opts_;
  Faults faults_;
  std::unique_ptr<ObjectStore> store_;
  StorageApi storage_;
  AuthApi auth_;
  std::unique_ptr<RunApi> run_;
  WorkerPool pool_;
};

}  // namespace agentbox::gcpemu
