// A small HTTP/1.1 and WebSocket server that the port suite uploads into sandboxes and starts
// there (static: it runs on the jail's host root and in images without python). Usage:
// port_test_server PORT. Routes:
//   GET  /page.html        an HTML page painted red, whose style.css repaints it #12ab34
//   GET  /style.css        that style sheet
//   GET  /big?n=N          N bytes (Content-Length)
//   GET  /chunked?n=N      N bytes, chunked
//   GET  /close            a body ended by closing the connection (no length)
//   POST /echo             the request body back (Content-Length or chunked request)
//   GET  /ws               WebSocket echo (text, binary, ping; close ends it)
//   anything else          JSON: method, target and some request headers as received
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>

#include "ws_util.h"

namespace {

using agentbox::ports_test::WebSocketAccept;

struct Conn {
  int fd;
  std::string buf;

  bool Fill() {
    char tmp[65536];
    const ssize_t n = ::read(fd, tmp, sizeof(tmp));
    if (n <= 0) {
      return false;
    }
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  }
  bool Need(size_t n) {
    while (buf.size() < n) {
      if (!Fill()) {
        return false;
      }
    }
    return true;
  }
  bool Line(std::string* out) {
    size_t eol;
    while ((eol = buf.find("\r\n")) == std::string::npos) {
      if (!Fill()) {
        return false;
      }
    }
    *out = buf.substr(0, eol);
    buf.erase(0, eol + 2);
    return true;
  }
  bool Write(const std::string& s) {
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
};

std::string Lower(std::string s) {
  for (auto& c : s) {
    c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      snprintf(b, sizeof(b), "\\u%04x", c);
      out += b;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  }
  return s;
}

size_t QueryN(const std::string& target) {
  const size_t at = target.find("n=");
  return at == std::string::npos ? 0 : std::strtoull(target.c_str() + at + 2, nullptr, 10);
}

std::string Response(int status, const std::string& type, const std::string& body,
                     const std::string& extra = "") {
  return "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Not Found") +
         "\r\nContent-Type: " + type + "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n" + extra + "\r\n" + body;
}

// Echoes WebSocket frames until a close frame or the end of the connection.
void WebSocketEcho(Conn& c) {
  for (;;) {
    if (!c.Need(2)) {
      return;
    }
    const uint8_t b0 = static_cast<uint8_t>(c.buf[0]);
    const uint8_t b1 = static_cast<uint8_t>(c.buf[1]);
    const int opcode = b0 & 0x0f;
    const bool masked = b1 & 0x80;
    uint64_t len = b1 & 0x7f;
    size_t off = 2;
    if (len == 126) {
      if (!c.Need(4)) {
        return;
      }
      len = (uint64_t(uint8_t(c.buf[2])) << 8) | uint8_t(c.buf[3]);
      off = 4;
    } else if (len == 127) {
      if (!c.Need(10)) {
        return;
      }
      len = 0;
      for (int i = 0; i < 8; ++i) {
        len = (len << 8) | uint8_t(c.buf[2 + i]);
      }
      off = 10;
    }
    uint8_t mask[4] = {0, 0, 0, 0};
    if (masked) {
      if (!c.Need(off + 4)) {
        return;
      }
      for (int i = 0; i < 4; ++i) {
        mask[i] = static_cast<uint8_t>(c.buf[off + i]);
      }
      off += 4;
    }
    if (!c.Need(off + len)) {
      return;
    }
    std::string payload = c.buf.substr(off, len);
    c.buf.erase(0, off + len);
    for (size_t i = 0; i < payload.size(); ++i) {
      payload[i] = static_cast<char>(payload[i] ^ mask[i % 4]);
    }
    const int reply = opcode == 9 ? 10 : opcode;  // ping -> pong
    std::string frame;
    frame += static_cast<char>(0x80 | reply);
    if (payload.size() < 126) {
      frame += static_cast<char>(payload.size());
    } else if (payload.size() < 65536) {
      frame += static_cast<char>(126);
      frame += static_cast<char>(payload.size() >> 8);
      frame += static_cast<char>(payload.size() & 0xff);
    } else {
      frame += static_cast<char>(127);
      for (int i = 7; i >= 0; --i) {
        frame += static_cast<char>((uint64_t(payload.size()) >> (i * 8)) & 0xff);
      }
    }
    if (!c.Write(frame + payload) || opcode == 8) {
      return;
    }
  }
}

void Serve(int fd) {
  Conn c{fd, {}};
  for (;;) {
    std::string line;
    if (!c.Line(&line)) {
      break;
    }
    if (line.empty()) {
      continue;
    }
    const size_t sp1 = line.find(' ');
    const size_t sp2 = line.find(' ', sp1 + 1);
    const std::string method = line.substr(0, sp1);
    const std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    std::map<std::string, std::string> h;
    for (;;) {
      if (!c.Line(&line)) {
        ::close(fd);
        return;
      }
      if (line.empty()) {
        break;
      }
      const size_t colon = line.find(':');
      std::string v = line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(' '));
      h[Lower(line.substr(0, colon))] = v;
    }
    std::string body;
    if (Lower(h["transfer-encoding"]).find("chunked") != std::string::npos) {
      for (;;) {
        std::string size_line;
        if (!c.Line(&size_line)) {
          ::close(fd);
          return;
        }
        const size_t n = std::strtoull(size_line.c_str(), nullptr, 16);
        if (n == 0) {
          std::string trailer;
          while (c.Line(&trailer) && !trailer.empty()) {
          }
          break;
        }
        if (!c.Need(n + 2)) {
          ::close(fd);
          return;
        }
        body += c.buf.substr(0, n);
        c.buf.erase(0, n + 2);
      }
    } else if (h.count("content-length")) {
      const size_t n = std::strtoull(h["content-length"].c_str(), nullptr, 10);
      if (!c.Need(n)) {
        ::close(fd);
        return;
      }
      body = c.buf.substr(0, n);
      c.buf.erase(0, n);
    }
    const std::string path = target.substr(0, target.find('?'));
    bool ok = true;
    if (path == "/ws" && Lower(h["upgrade"]) == "websocket") {
      c.Write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: " +
              WebSocketAccept(h["sec-websocket-key"]) + "\r\n\r\n");
      WebSocketEcho(c);
      break;
    } else if (path == "/page.html") {
      ok = c.Write(Response(200, "text/html",
                            "<!doctype html><html><head><link rel=\"stylesheet\" href=\"style.css\">"
                            "</head><body style=\"margin:0;background:#ff0000\"><div "
                            "style=\"height:100vh\"></div></body></html>"));
    } else if (path == "/style.css") {
      ok = c.Write(Response(200, "text/css", "body { background: #12ab34 !important; }"));
    } else if (path == "/big") {
      std::string r = Response(200, "application/octet-stream", Pattern(QueryN(target)));
      if (method == "HEAD") {
        r.resize(r.find("\r\n\r\n") + 4);
      }
      ok = c.Write(r);
    } else if (path == "/chunked") {
      const std::string data = Pattern(QueryN(target));
      std::string out = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n";
      for (size_t off = 0; off < data.size(); off += 7919) {
        const std::string piece = data.substr(off, 7919);
        char size[32];
        snprintf(size, sizeof(size), "%zx\r\n", piece.size());
        out += size + piece + "\r\n";
      }
      ok = c.Write(out + "0\r\n\r\n");
    } else if (path == "/close") {
      c.Write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
              "until the end");
      break;
    } else if (path == "/echo" && method == "POST") {
      ok = c.Write(Response(200, "application/octet-stream", body));
    } else {
      std::string json = "{\"method\":" + JsonString(method) + ",\"target\":" + JsonString(target);
      for (const char* name : {"host", "authorization", "cookie", "x-forwarded-prefix",
                               "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}) {
        if (h.count(name)) {
          json += ",\"" + std::string(name) + "\":" + JsonString(h[name]);
        }
      }
      json += ",\"body_bytes\":" + std::to_string(body.size()) + "}";
      ok = c.Write(Response(200, "application/json", json));
    }
    if (!ok || Lower(h["connection"]) == "close") {
      break;
    }
  }
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: port_test_server PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const int port = atoi(argv[1]);
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(s, 512) != 0) {
    perror("bind/listen");
    return 1;
  }
  fprintf(stderr, "listening on 127.0.0.1:%d\n", port);
  for (;;) {
    const int fd = ::accept4(s, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      continue;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::thread(Serve, fd).detach();
  }
}
