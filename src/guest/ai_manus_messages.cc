#include "guest/ai_manus_messages.h"

namespace agentbox::guest {

namespace {

size_t CountOf(const Json& data, const char* key) {
  return data.is_object() && data.contains(key) && data[key].is_array() ? data[key].size() : 0;
}

}  // namespace

std::string AiManusMessage(std::string_view endpoint, const Json& data) {
  if (endpoint == "shell/exec") {
    return "Command executed";
  }
  if (endpoint == "shell/view") {
    return "Session content retrieved successfully";
  }
  if (endpoint == "shell/wait") {
    const bool has = data.is_object() && data.contains("returncode");
    return "Process completed, return code: " +
           (has && !data["returncode"].is_null() ? data["returncode"].dump() : "None");
  }
  if (endpoint == "shell/write") {
    return "Input written";
  }
  if (endpoint == "shell/kill") {
    return data.is_object() && data.value("status", "") == "terminated" ? "Process terminated"
                                                                         : "Process ended";
  }
  if (endpoint == "file/read") {
    return "File read successfully";
  }
  if (endpoint == "file/write") {
    return "File written successfully";
  }
  if (endpoint == "file/replace") {
    const int64_t n = data.is_object() ? data.value("replaced_count", int64_t{0}) : 0;
    return "Replacement completed, replaced " + std::to_string(n) + " occurrences";
  }
  if (endpoint == "file/search") {
    return "Search completed, found " + std::to_string(CountOf(data, "matches")) + " matches";
  }
  if (endpoint == "file/find") {
    return "Search completed, found " + std::to_string(CountOf(data, "files")) + " files";
  }
  if (endpoint == "file/upload") {
    return "File uploaded successfully";
  }
  return "ok";
}

}  // namespace agentbox::guest
