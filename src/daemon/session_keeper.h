#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/sandbox_backend.h"
#include "common/json_util.h"
#include "common/keyed_mutex.h"
#include "common/metrics.h"
#include "http/client.h"

namespace agentbox::daemon {

// Sends `method target` with a JSON `body` to the guest of `info` and waits for the answer.
// Blocks: call it from a worker thread, never from the client's I/O thread.
Result<http::ClientResponse> CallGuest(http::UnixHttpClient& client, const SandboxInfo& info,
                                       const std::string& method, const std::string& target,
                                       const std::string& body, std::chrono::milliseconds timeout);

// Whether the guest of `info` answers GET /api/v1/health (below 500) before `wait` has passed,
// asking every 200 ms. Blocks (worker thread).
bool GuestAnswers(http::UnixHttpClient& client, const SandboxInfo& info,
                  std::chrono::milliseconds wait);

// Keeps, on the host side, the last state snapshot of every shell session of every sandbox, so
// that a guest that comes back empty (restart-guest, a container the engine restarted, a
// replaced execution) resumes its sessions. After each relayed shell/exec, shell/run,
// shell/wait, shell/kill or shell/restore that answered 200, the session's state is fetched
// with shell/state (one guest round trip, sent after the client has its answer); shell/delete
// forgets the session. A restored session whose command was running, and a sandbox that had
// background processes, say so: shell/view and shell/list carry a `notice` for the session, and
// the next shell/exec, shell/run or shell/wait of the session carries it once. A session whose
// snapshot never arrived (its guest froze right after the command) comes back with the working
// directory of its last answer only, and its notice says so.
//
// With a directory (agentboxd: <state>/sessions), the snapshots live on disk only: each in
// <dir>/<id>.states/<sha256 of the session id>.json (the state as dumped JSON), written
// (temporary file + rename) when it arrives, and read back by Restore; the memory holds a small
// index per session (working directory, running command, notice, snapshot size), kept in
// <dir>/<id>.json too, so that a daemon that restarts finds everything again (Load) and can
// restore the sessions of a guest that restarted while the daemon was down. Without a directory
// the snapshots are held in memory as their dumped text. Either way the snapshots of one sandbox
// are at most kMaxFileBytes together: past that, the largest are dropped and those sessions
// restore with their working directory only (like a snapshot that never arrived). Files are read
// back as untrusted input (size, JSON shape, ids, types checked; anything else skipped).
// Thread-safe.
class SessionKeeper {
 public:
  static constexpr size_t kMaxFileBytes = 1 << 20;

  // `dir` empty: snapshots are kept in memory only.
  SessionKeeper(http::UnixHttpClient& client, Metrics& metrics, std::string dir = "");
  ~SessionKeeper();
  SessionKeeper(const SessionKeeper&) = delete;
  SessionKeeper& operator=(const SessionKeeper&) = delete;

  // After a daemon restart: reads the kept snapshots of sandboxes `ids` (the ones the backends
  // still hold) and, when `complete` (`ids` is every sandbox there is), removes the files of any
  // other sandbox. Returns the ids that have sessions.
  std::vector<std::string> Load(const std::vector<std::string>& ids, bool complete);

  // Durable copies of the snapshots (SandboxBackend::KeepSessionState): `save` gets a session's
  // kept form ({state, cwd, running, running_command, background_started}) after every snapshot
  // and null when the session is deleted; `load` (every kept session of a sandbox, by id) is
  // asked by Restore when this daemon knows nothing of the sandbox's sessions (it restarted
  // since and had no file of them). `backend` is SandboxInfo::backend. Set once, before any call
  // is relayed.
  struct Durable {
    std::function<void(const std::string& backend, const std::string& id,
                       const std::string& session, const Json& kept)>
        save;
    std::function<Result<Json>(const std::string& backend, const std::string& id)> load;
  };
  void SetDurable(Durable durable) { durable_ = std::move(durable); }

  // Whether anything is known of a session of sandbox `id`.
  bool Holds(const std::string& id) const;

  // Whether relayed call `op` ("shell/exec", ...) concerns the keeper (its request body is then
  // needed by Relayed).
  static bool Watches(const std::string& op);

  // The guest of `info` answered `op` (request body `request`) with 200 and `response`: records
  // what it says about the session, starts a snapshot where the session's state may have changed,
  // and returns the response body to relay (with the session's notice added where one is due).
  std::string Relayed(const SandboxInfo& info, const std::string& op, const std::string& request,
                      std::string response);

  // The guest of `info` came back (`why`: "restart-guest", "the Docker engine restarted", ...):
  // recreates with shell/restore every kept session the guest no longer has. One restore per
  // sandbox at a time: a second one (the engine's start event after a restart-guest) finds the
  // sessions present and does nothing. Blocks (worker thread). Returns how many sessions were
  // restored; failures are logged and counted in agentbox_sessions_restored_total{outcome="error"}.
  int Restore(const SandboxInfo& info, const std::string& why);

  // The sandbox is gone: forget its sessions (and remove its file).
  void Forget(const std::string& id);

  // How many sessions of sandbox `id` have a snapshot (tests, logs).
  size_t Kept(const std::string& id) const;

 private:
  struct Session {
    size_t state_bytes = 0;       // size of the last shell/state's data.state (dumped JSON);
                                  // 0 until one arrived (or after it was dropped)
    std::string state;            // that text, when there is no directory (else: in its file)
    std::string cwd;              // the cwd of the last answer: newer than `state` when a
                                  // snapshot did not arrive (the guest froze right after)
    bool running = false;         // a command was running at the last answer
    std::string running_command;  // that command, when known
    std::string notice;           // set when restored; shown by view/list
    bool notice_pending = false;  // not yet carried by an exec/run/wait answer
  };
  struct Box {
    std::map<std::string, Session> sessions;
    int background_started = 0;  // process/start calls since the guest (re)started
  };

  void Snapshot(const SandboxInfo& info, const std::string& session);
  // Stores the answer `r` of shell/state for `session` of sandbox `id`.
  void Keep(const std::string& backend, const std::string& id, const std::string& session,
            Result<http::ClientResponse>& r);
  static Json KeptForm(const Json& state, const Session& s, int background_started);
  // Writes the index of sandbox `id` to its file (nothing without a directory). The Locked form
  // expects file_mu_ held.
  void Persist(const std::string& id);
  void PersistLocked(const std::string& id);
  std::string FileOf(const std::string& id) const { return dir_ + "/" + id + ".json"; }
  std::string StatesOf(const std::string& id) const { return dir_ + "/" + id + ".states"; }
  std::string StateFileOf(const std::string& id, const std::string& session) const;
  // Keeps `text` (a state, dumped JSON) as the snapshot of `session` in `s`: in its file (file_mu_
  // held) or in memory. False when the file could not be written (the snapshot is then dropped).
  bool StoreState(const std::string& id, const std::string& session, Session& s,
                  std::string text);
  // The snapshot of `session` as a parsed object, or null (none, unreadable, not an object).
  Json LoadState(const std::string& id, const std::string& session, const Session& s) const;
  // Removes the file of a dropped snapshot (file_mu_ held; nothing without a directory).
  void DropStateFile(const std::string& id, const std::string& session);

  // Runs `task` on the keeper's own thread: snapshots arrive on the HTTP client's I/O thread,
  // and writing their files there would stall every call that thread serves while the disk is
  // slow (a sandbox filling its disk makes it so). At most kMaxQueued tasks holding at most
  // kMaxQueuedBytes of answers wait; past that a snapshot is dropped (its session restores with
  // its working directory only, or from its previous snapshot). `bytes`: what the task holds.
  void Post(std::function<void()> task, size_t bytes);
  void WriterLoop();
  static constexpr size_t kMaxQueued = 256;
  static constexpr size_t kMaxQueuedBytes = 4 << 20;

  http::UnixHttpClient& client_;
  Metrics& metrics_;
  const std::string dir_;
  KeyedMutex restoring_;  // by sandbox id: one Restore at a time
  Durable durable_;
  std::mutex file_mu_;    // taken before mu_: one writer of the files at a time, newest last
  mutable std::mutex mu_;
  std::map<std::string, Box> boxes_;  // by sandbox id; guarded by mu_
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<std::pair<std::function<void()>, size_t>> queue_;  // guarded by queue_mu_
  size_t queued_bytes_ = 0;                                      // guarded by queue_mu_
  bool stopping_ = false;                    // guarded by queue_mu_
  std::thread writer_;                       // last: started once the rest is constructed
};

}  // namespace agentbox::daemon
