#include "backends/jail/net_ns.h"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"

namespace agentbox::jail {

Result<void> SetupNetwork(const NetNsConfig& cfg) {
  if (cfg.share_host) {
    return {};
  }
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) {
    return Fail(ErrnoError(errno, "socket for loopback setup"));
  }
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(sock.Get(), SIOCGIFFLAGS, &ifr) != 0) {
    return Fail(ErrnoError(errno, "SIOCGIFFLAGS lo"));
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(sock.Get(), SIOCSIFFLAGS, &ifr) != 0) {
    return Fail(ErrnoError(errno, "SIOCSIFFLAGS lo up"));
  }
  return {};
}

}  // namespace agentbox::jail
