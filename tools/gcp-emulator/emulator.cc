#include "emulator.h"

#include <boost/asio/steady_timer.hpp>

#include "common/log.h"

namespace agentbox::gcpemu {
namespace {

// Delays a sink's answer by the injected latency.
class DelayedSink : public http::BodySink {
 public:
  DelayedSink(std::unique_ptr<http::BodySink> inner, boost::asio::io_context& io,
              std::chrono::milliseconds delay)
      : inner_(std::move(inner)), io_(io), delay_(delay) {}
  Result<void> OnData(std::string_view bytes) override { return inner_->OnData(bytes); }
  void OnEnd(http::Respond respond) override {
    auto timer = std::make_shared<boost::asio::steady_timer>(io_, delay_);
    std::shared_ptr<http::BodySink> inner(std::move(inner_));
    timer->async_wait(
        [timer, inner, respond](const boost::system::error_code&) { inner->OnEnd(respond); });
  }

 private:
  std::unique_ptr<http::BodySink> inner_;
  boost::asio::io_context& io_;
  std::chrono::milliseconds delay_;
};

class ErrorSink : public http::BodySink {
 public:
  explicit ErrorSink(http::Response r) : r_(std::move(r)) {}
  Result<void> OnData(std::string_view) override { return {}; }
  void OnEnd(http::Respond respond) override { respond(std::move(r_)); }

 private:
  http::Response r_;
};

ApiError Unauthenticated() {
  return ApiError{401,
                  "Request is missing required authentication credential. Expected OAuth 2 "
                  "access token, login cookie or other valid authentication credential.",
                  "required"};
}

}  // namespace

Result<std::unique_ptr<Emulator>> Emulator::Create(boost::asio::io_context& io,
                                                   EmulatorOptions opts) {
  auto store = ObjectStore::Open(opts.data_dir);
  if (!store) {
    return Fail(store.error());
  }
  return std::unique_ptr<Emulator>(new Emulator(io, std::move(opts), std::move(*store)));
}

Emulator::Emulator(boost::asio::io_context& io, EmulatorOptions opts,
                   std::unique_ptr<ObjectStore> store)
    : io_(io),
      opts_(std::move(opts)),
      store_(std::move(store)),
      storage_(*store_),
      auth_(opts_.auth),
      run_(std::make_unique<RunApi>(opts_.data_dir, opts_.docker_socket, faults_)),
      pool_(16, 1 << 20) {}

Emulator::~Emulator() = default;

void Emulator::SetSelfUrl(const std::string& url) {
  if (opts_.fuse_volumes) {
    run_->UseFuseVolumes(url);
  }
}

std::unique_ptr<http::BodySink> Emulator::StreamBody(const http::Request& req) {
  if (!StorageApi::IsUpload(req)) {
    return nullptr;
  }
  std::unique_ptr<http::BodySink> sink;
  FaultDecision d;
  if (!HasBearer(req)) {
    sink = std::make_unique<ErrorSink>(ErrorResponse(Unauthenticated()));
  } else {
    d = faults_.Decide(StorageApi::MethodId(req));
    if (d.status != 0) {
      sink = std::make_unique<ErrorSink>(FaultResponse(d));
    } else {
      sink = storage_.OpenUpload(req, d);
    }
  }
  Log(LogLevel::kDebug, "gcpemu.request", "method={} target={}", req.method, req.target);
  if (d.latency.count() > 0) {
    return std::make_unique<DelayedSink>(std::move(sink), io_, d.latency);
  }
  return sink;
}

void Emulator::After(std::chrono::milliseconds delay, std::function<void()> fn) {
  if (delay.count() <= 0) {
    pool_.Post(std::move(fn));
    return;
  }
  auto timer = std::make_shared<boost::asio::steady_timer>(io_, delay);
  timer->async_wait([this, timer, fn = std::move(fn)](const boost::system::error_code&) mutable {
    pool_.Post(std::move(fn));
  });
}

void Emulator::HandleFaults(const http::Request& req, http::Respond respond) {
  if (req.method == "GET") {
    return respond(JsonResponse(200, faults_.Get()));
  }
  if (req.method == "DELETE") {
    faults_.Clear();
    return respond(JsonResponse(200, faults_.Get()));
  }
  if (req.method == "PUT" || req.method == "POST") {
    auto body = ParseJsonObject(req.body);
    if (!body) {
      return respond(ErrorResponse({400, body.error().message, ""}));
    }
    if (auto r = faults_.Set(*body); !r) {
      return respond(ErrorResponse(r.error()));
    }
    Log(LogLevel::kInfo, "gcpemu.faults_set", "faults={}", DumpJson(faults_.Get()));
    return respond(JsonResponse(200, faults_.Get()));
  }
  respond(ErrorResponse({405, "faults take GET, PUT or DELETE", ""}));
}

void Emulator::Handle(http::Request req, http::Respond respond) {
  Log(LogLevel::kDebug, "gcpemu.request", "method={} target={}", req.method, req.target);
  if (req.path == "/emulator/v1/faults") {
    return HandleFaults(req, std::move(respond));
  }
  if (req.path == "/emulator/v1/health" || req.path == "/") {
    return respond(JsonResponse(200, {{"ok", true}, {"data", opts_.data_dir}}));
  }
  std::string method;
  if (StorageApi::Owns(req)) {
    method = StorageApi::MethodId(req);
  } else if (RunApi::Owns(req)) {
    method = RunApi::MethodId(req);
  } else if (AuthApi::Owns(req)) {
    method = AuthApi::MethodId(req);
  } else {
    return respond(ErrorResponse({404,
                                  "The requested URL " + req.path +
                                      " was not found on this server (agentbox GCP "
                                      "emulator).",
                                  ""}));
  }
  const bool needs_bearer = !AuthApi::Owns(req);
  if (needs_bearer && !HasBearer(req)) {
    return respond(ErrorResponse(Unauthenticated()));
  }
  const FaultDecision d = faults_.Decide(method);
  auto shared = std::make_shared<http::Request>(std::move(req));
  After(d.latency, [this, shared, d, respond = std::move(respond)]() mutable {
    if (d.status != 0) {
      return respond(FaultResponse(d));
    }
    if (StorageApi::Owns(*shared)) {
      return storage_.Handle(*shared, d, std::move(respond));
    }
    if (RunApi::Owns(*shared)) {
      return respond(run_->Handle(*shared));
    }
    respond(auth_.Handle(*shared));
  });
}

}  // namespace agentbox::gcpemu
