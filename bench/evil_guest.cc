// The hostile bench's stand-in guest (bench/hostile_bench.cc), for sandboxes whose image has no
// python3 (agentbox/base on docker): run inside the attacking sandbox, it unlinks the guest's
// socket, binds its own in its place and answers every request the daemon sends it as `mode`
// says (headers, body, chunked, garbage, slow, silent), exactly as the bench's Python stand-in
// does. Built static so that it runs in any image.
//
//   agentbox-evil-guest MODE [SOCKET]      # SOCKET: /run/agentbox/guest.sock
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>

namespace {

bool SendAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

void Serve(int c, const std::string& mode) {
  std::string buf;
  char in[65536];
  while (buf.find("\r\n\r\n") == std::string::npos) {
    const ssize_t n = ::recv(c, in, sizeof(in), 0);
    if (n <= 0) {
      ::close(c);
      return;
    }
    buf.append(in, static_cast<size_t>(n));
  }
  if (mode == "headers") {
    std::string line = "X-Flood: " + std::string(1000, 'a') + "\r\n";
    std::string lines;
    for (int i = 0; i < 64; ++i) {
      lines += line;
    }
    if (SendAll(c, "HTTP/1.1 200 OK\r\n")) {
      while (SendAll(c, lines)) {
      }
    }
  } else if (mode == "body") {
    const std::string chunk(65536, 'x');
    if (SendAll(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   "Content-Length: 100000000000\r\n\r\n")) {
      while (SendAll(c, chunk)) {
      }
    }
  } else if (mode == "chunked") {
    const std::string chunk = "10000\r\n" + std::string(65536, 'x') + "\r\n";
    if (SendAll(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n")) {
      while (SendAll(c, chunk)) {
      }
    }
  } else if (mode == "slow") {
    const std::string all =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n" +
        std::string(1000, 'x');
    for (char b : all) {
      if (!SendAll(c, std::string(1, b))) {
        break;
      }
      ::usleep(200000);
    }
  } else if (mode == "garbage") {
    std::mt19937 rng(std::random_device{}());
    std::string junk(65536, '\0');
    for (auto& ch : junk) {
      ch = static_cast<char>(rng());
    }
    SendAll(c, junk);
  } else if (mode == "silent") {
    ::sleep(600);
  }
  ::close(c);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODE [SOCKET]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const std::string path = argc > 2 ? argv[2] : "/run/agentbox/guest.sock";
  std::signal(SIGPIPE, SIG_IGN);
  ::unlink(path.c_str());
  const int srv = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (srv < 0 || ::bind(srv, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(srv, 128) != 0) {
    std::perror("bind");
    return 1;
  }
  ::chmod(path.c_str(), 0660);
  if (FILE* f = std::fopen("/tmp/evil.ready", "w")) {
    std::fclose(f);
  }
  for (;;) {
    const int c = ::accept4(srv, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) {
      std::thread(Serve, c, mode).detach();
    }
  }
}
