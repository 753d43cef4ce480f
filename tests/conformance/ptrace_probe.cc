// A tiny static program the conformance suite uploads into a sandbox to try, from inside, what a
// debugger or a stray agent could do to the sandbox's guest (pid 1), and what debugging the
// workload's own processes needs. One line of output per probe; exit code 0 when the operation
// succeeded, 1 when the kernel refused it, 2 on a usage or setup error.
//
//   ptrace_probe attach PID   PTRACE_ATTACH to PID, wait for the stop, detach
//   ptrace_probe mem PID      open /proc/PID/mem and read 4 bytes of its first mapping
//   ptrace_probe child        start `sleep 30`, attach to it, read the ELF magic of its first
//                             mapping through /proc/PID/mem, detach and kill it (strace/gdb)
#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

int Attach(pid_t pid) {
  if (::ptrace(PTRACE_ATTACH, pid, nullptr, nullptr) != 0) {
    std::printf("attach %d: refused: %s\n", pid, std::strerror(errno));
    return 1;
  }
  int status = 0;
  ::waitpid(pid, &status, __WALL);
  ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  std::printf("attach %d: ok\n", pid);
  return 0;
}

// The start address of the first mapping in /proc/PID/maps, or 0.
unsigned long FirstMapping(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/maps", pid);
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) {
    return 0;
  }
  unsigned long start = 0;
  if (std::fscanf(f, "%lx-", &start) != 1) {
    start = 0;
  }
  std::fclose(f);
  return start;
}

int Mem(pid_t pid, bool quiet_ok = false) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/mem", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::printf("mem %d: refused: open: %s\n", pid, std::strerror(errno));
    return 1;
  }
  const unsigned long at = FirstMapping(pid);
  char buf[4] = {};
  const ssize_t n = at ? ::pread(fd, buf, sizeof(buf), static_cast<off_t>(at)) : -1;
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(sizeof(buf))) {
    std::printf("mem %d: refused: read: %s\n", pid, at ? std::strerror(err) : "maps unreadable");
    return 1;
  }
  if (!quiet_ok) {
    std::printf("mem %d: ok %s\n", pid, std::memcmp(buf, "\177ELF", 4) == 0 ? "elf" : "data");
  }
  return std::memcmp(buf, "\177ELF", 4) == 0 ? 0 : 1;
}

int Child() {
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::printf("child: fork: %s\n", std::strerror(errno));
    return 2;
  }
  if (pid == 0) {
    ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Until the child has exec'd it still runs this program: wait for `sleep` to show.
  for (int i = 0; i < 500; ++i) {
    char path[64], comm[64] = {};
    std::snprintf(path, sizeof(path), "/proc/%d/comm", pid);
    if (FILE* f = std::fopen(path, "r")) {
      const bool got = std::fgets(comm, sizeof(comm), f) != nullptr;
      std::fclose(f);
      if (got && std::strncmp(comm, "sleep", 5) == 0) {
        break;
      }
    }
    ::usleep(10000);
  }
  int rc = 1;
  if (::ptrace(PTRACE_ATTACH, pid, nullptr, nullptr) != 0) {
    std::printf("child %d: refused: attach: %s\n", pid, std::strerror(errno));
  } else {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFSTOPPED(status)) {
      std::printf("child %d: attached but it did not stop\n", pid);
    } else if (Mem(pid, true) != 0) {
      std::printf("child %d: attached but its memory is unreadable\n", pid);
    } else {
      std::printf("child %d: ok traced and read\n", pid);
      rc = 0;
    }
    ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "attach") == 0) {
    return Attach(std::atoi(argv[2]));
  }
  if (argc == 3 && std::strcmp(argv[1], "mem") == 0) {
    return Mem(std::atoi(argv[2]));
  }
  if (argc == 2 && std::strcmp(argv[1], "child") == 0) {
    return Child();
  }
  std::fprintf(stderr, "usage: ptrace_probe attach PID | mem PID | child\n");
  return 2;
}
