// Latency of the Cloud Storage client (src/gcp) against a running Storage JSON endpoint, e.g.
//   agentbox-gcp-emulator --listen tcp:127.0.0.1:4443 --data /tmp/emu &
//   agentbox-gcp-clients-bench --endpoint http://127.0.0.1:4443
// Per operation: --warmup untimed calls, then --iterations timed ones; prints p50/p99/mean in
// microseconds and how many HTTP attempts and connections it took. Every answer is checked.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "gcp/auth.h"
#include "gcp/storage.h"

using agentbox::gcp::HttpTransport;
using agentbox::gcp::StorageClient;

namespace {

struct Stats {
  double p50, p99, mean;
};

Stats Summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto rank = [&](double q) {
    return us[std::min(us.size() - 1, static_cast<size_t>(q * us.size()))];
  };
  double sum = 0;
  for (double v : us) {
    sum += v;
  }
  return {rank(0.5), rank(0.99), sum / static_cast<double>(us.size())};
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "gcp-clients-bench: %s\n", what.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Cloud Storage client latency"};
  std::string endpoint = "http://127.0.0.1:4443";
  std::string bucket = "agentbox-bench";
  int iterations = 2000, warmup = 100;
  size_t size = 4096;
  app.add_option("--endpoint", endpoint, "Storage JSON API base URL")->capture_default_str();
  app.add_option("--bucket", bucket, "bucket (created when missing)")->capture_default_str();
  app.add_option("--iterations", iterations)->capture_default_str();
  app.add_option("--warmup", warmup)->capture_default_str();
  app.add_option("--size", size, "object size in bytes")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  agentbox::gcp::Endpoints ep;
  ep.storage = endpoint;
  auto http = std::make_shared<HttpTransport>(
      std::make_shared<agentbox::gcp::StaticTokenSource>("bench", "bench token"));
  StorageClient storage(http, ep);
  if (!storage.GetBucket(bucket)) {
    auto made = storage.CreateBucket("bench-project", bucket);
    if (!made) {
      Die("cannot create bucket: " + made.error().message);
    }
  }
  std::string data(size, 'x');
  int64_t generation = 0;
  int counter = 0;
  struct Op {
    const char* name;
    std::function<void()> call;
  };
  std::vector<Op> ops = {
      {"insert (media, ifGenerationMatch)",
       [&] {
         auto m = storage.Insert(bucket, "bench/obj", data, {.if_generation_match = generation});
         if (!m) {
           Die(m.error().message);
         }
         generation = m->generation;
       }},
      {"stat",
       [&] {
         auto m = storage.Stat(bucket, "bench/obj");
         if (!m || m->generation != generation) {
           Die("stat: unexpected answer");
         }
       }},
      {"read",
       [&] {
         auto r = storage.Read(bucket, "bench/obj");
         if (!r || r->data.size() != size) {
           Die("read: unexpected answer");
         }
       }},
      {"read range 100 B",
       [&] {
         auto r = storage.Read(bucket, "bench/obj", agentbox::gcp::ByteRange{10, 100});
         if (!r || r->data.size() != 100) {
           Die("ranged read: unexpected answer");
         }
       }},
      {"list prefix (1 object)",
       [&] {
         auto l = storage.List(bucket, {.prefix = "bench/", .max_results = 10});
         if (!l || l->items.size() != 1) {
           Die("list: unexpected answer");
         }
       }},
      {"insert + delete",
       [&] {
         std::string name = "bench/tmp-" + std::to_string(counter++);
         if (!storage.Insert(bucket, name, data) || !storage.Delete(bucket, name)) {
           Die("insert+delete failed");
         }
       }},
  };
  // The first insert creates the object (generation 0 = must not exist).
  auto stale = storage.Stat(bucket, "bench/obj");
  if (stale) {
    generation = stale->generation;
  }
  std::printf("endpoint %s, object %zu B, %d iterations after %d warm-up\n", endpoint.c_str(), size,
              iterations, warmup);
  std::printf("%-36s %10s %10s %10s\n", "operation", "p50 us", "p99 us", "mean us");
  for (auto& op : ops) {
    for (int i = 0; i < warmup; ++i) {
      op.call();
    }
    std::vector<double> us;
    us.reserve(static_cast<size_t>(iterations));
    for (int i = 0; i < iterations; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      op.call();
      us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    Stats s = Summarize(us);
    std::printf("%-36s %10.0f %10.0f %10.0f\n", op.name, s.p50, s.p99, s.mean);
  }
  std::printf("HTTP attempts: %lu\n", static_cast<unsigned long>(http->attempts()));
  return 0;
}
