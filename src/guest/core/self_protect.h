#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::guest {

// Makes the guest process non-dumpable (PR_SET_DUMPABLE 0). The sandbox's own processes run as
// the guest's user but without CAP_SYS_PTRACE, and the kernel then refuses them ptrace attach,
// /proc/<guest>/mem, process_vm_readv and /proc/<guest>/environ: they can neither stop nor read
// the guest. Programs the guest starts become dumpable again at execve (for a readable,
// non-setuid binary), so debugging the workload's own processes keeps working. Call first in
// main, before any thread or child exists.
Result<void> ProtectFromSandbox();

// Whether a signal with si_code `code` and si_pid `sender` comes from a process of the sandbox
// itself when the guest is `pid`: only pid 1 of a pid namespace can tell, because a sender outside
// the namespace (the host, the engine, the jail helper) appears with si_pid 0 there, while a sender
// inside has its own pid. Signals raised by the kernel (si_code > 0) never count as the sandbox's.
bool SentFromInsideSandbox(int pid, int code, int sender);

// The guest's shutdown signals (SIGTERM, SIGINT), delivered on the io_context, except those a
// process of the sandbox sent to pid 1: `kill 1` from inside must not take the sandbox's API
// away (the kernel already drops SIGKILL and SIGSTOP from inside a pid namespace to its init).
// One instance per process; it owns the handlers until destroyed.
class ShutdownSignals {
 public:
  ShutdownSignals(boost::asio::io_context& io, std::vector<int> signals);
  ~ShutdownSignals();
  ShutdownSignals(const ShutdownSignals&) = delete;
  ShutdownSignals& operator=(const ShutdownSignals&) = delete;

  // Calls `fn(signal)` once, for the first signal accepted.
  void AsyncWait(std::function<void(int)> fn);

 private:
  void Arm();

  boost::asio::posix::stream_descriptor pipe_;
  std::function<void(int)> fn_;
  unsigned char byte_ = 0;
  std::vector<int> signals_;
};

}  // namespace agentbox::guest
