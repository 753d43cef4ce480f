#pragma once

// The last shadow validation of each backend (`agentbox conformance --backend B`, the rollout
// plan's "flag on, 0 %" step): what the checks found, kept in the state directory across
// restarts. PUT /v1/flags consults it before raising a backend's share of new sandboxes.

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/error.h"
#include "common/json_util.h"

namespace agentbox::daemon {

class BackendValidations {
 public:
  // `path`: the JSON file they are kept in (empty: memory only). A file that does not parse is
  // set aside as PATH.corrupt and the daemon starts with none, never with made-up verdicts.
  explicit BackendValidations(std::string path);

  // Stores a verdict for `backend` from a PUT body {passed: bool, checks: [{name, outcome, ms,
  // detail}]} (at most 200 checks); returns the record as stored (with ran_at).
  Result<Json> Put(const std::string& backend, const Json& body);
  std::optional<Json> Get(const std::string& backend) const;
  // Whether the last validation of `backend` failed (false when there was none).
  bool LastFailed(const std::string& backend) const;

 private:
  std::string path_;
  mutable std::mutex mu_;
  std::map<std::string, Json> last_;
};

}  // namespace agentbox::daemon
