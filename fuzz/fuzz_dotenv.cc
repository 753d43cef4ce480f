// .env and config files (Config::Load reads both with ParseDotenv), and the typed getters the
// daemon reads its settings through.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto kvs = agentbox::ParseDotenv(text, "fuzz.env");
  if (!kvs) {
    (void)kvs.error().message;
    return 0;
  }
  std::map<std::string, std::string> values;
  for (const auto& [k, v] : *kvs) {
    if (k.empty()) {
      __builtin_trap();  // a parsed line always names a key
    }
    values[k] = v;
  }
  const agentbox::Config cfg = agentbox::Config::FromMap(values);
  for (const auto& [k, v] : values) {
    (void)cfg.Get(k);
    (void)cfg.GetBool(k, false);
    (void)cfg.GetInt(k, 0, INT64_MIN, INT64_MAX);
    (void)cfg.GetInt(k, 5, 1, 100);
    (void)cfg.GetList(k);
    (void)cfg.SourceOf(k);
  }
  return 0;
}
