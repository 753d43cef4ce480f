#pragma once

#include <string>
#include <vector>

#include "common/error.h"

namespace agentbox::daemon {

// One move of a sandbox between backends, as the journal keeps it (docs/reliability.md §1).
struct MigrationRecord {
  std::string id;
  std::string from;  // the backend that held the sandbox
  std::string to;    // the backend it moves to
  // "copying": the target may exist but is not the sandbox yet (a restart destroys the target);
  // "switched": the target is the sandbox (a restart destroys what is left on `from`).
  std::string phase;
  double started_at = 0;  // unix seconds
};

// The label a moved sandbox carries (set by the daemon, refused from clients): JSON
// {"backend": where it came from, "at": when it moved, "created_at": when it was first created}.
// SandboxJson shows it as `migrated_from` instead of a label.
inline constexpr const char* kMigratedFromLabel = "agentbox.migrated_from";

inline constexpr const char* kPhaseCopying = "copying";
inline constexpr const char* kPhaseSwitched = "switched";

// The intent log of migrations: <dir>/<id>.json, replaced whole (temporary file + rename) at
// each phase and removed when the move is over, so that a daemon killed at any point of a move
// finds the sandbox on exactly one backend once it has applied what it reads here
// (DaemonApi::ResolveMigrations). Files are read back as untrusted input: a file of the wrong
// shape is reported and removed. An empty `dir` keeps nothing (moves are then not crash-safe:
// tests and embeddings without a state directory). Thread-safe (one file per sandbox, and one
// move per sandbox at a time).
class MigrationJournal {
 public:
  explicit MigrationJournal(std::string dir) : dir_(std::move(dir)) {}

  // Records `r` before the step it announces. An error means nothing may be done.
  Result<void> Write(const MigrationRecord& r);
  void Remove(const std::string& id);
  // Every record left by moves that did not finish (a crash).
  std::vector<MigrationRecord> Pending();

 private:
  std::string FileOf(const std::string& id) const { return dir_ + "/" + id + ".json"; }
  std::string dir_;
};

}  // namespace agentbox::daemon
