#include "gcp/testing/fake_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace agentbox::gcp::testing {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) {
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void Reset(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::shutdown(fd, SHUT_RDWR);
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 308:
      return "Resume Incomplete";
    default:
      return "Status";
  }
}

}  // namespace

std::string PercentDecode(const std::string& s, bool form) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else if (form && s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string FakeRequest::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

bool FakeRequest::HasQuery(const std::string& name) const {
  size_t start = 0;
  while (start <= query.size()) {
    size_t amp = query.find('&', start);
    std::string kv =
        query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    if (PercentDecode(kv.substr(0, kv.find('=')), true) == name) {
      return true;
    }
    if (amp == std::string::npos) {
      break;
    }
    start = amp + 1;
  }
  return false;
}

std::string FakeRequest::Query(const std::string& name) const {
  size_t start = 0;
  while (start <= query.size()) {
    size_t amp = query.find('&', start);
    std::string kv =
        query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    size_t eq = kv.find('=');
    if (PercentDecode(kv.substr(0, eq), true) == name) {
      return eq == std::string::npos ? "" : PercentDecode(kv.substr(eq + 1), true);
    }
    if (amp == std::string::npos) {
      break;
    }
    start = amp + 1;
  }
  return "";
}

FakeResponse FakeResponse::Json(int status, const std::string& body) {
  FakeResponse r;
  r.status = status;
  r.headers = {{"Content-Type", "application/json; charset=UTF-8"}};
  r.body = body;
  return r;
}

FakeHttpServer::FakeHttpServer(Handler handler) : handler_(std::move(handler)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    throw std::runtime_error("fake server: cannot listen on 127.0.0.1");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

FakeHttpServer::~FakeHttpServer() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  {
    std::lock_guard lock(mu_);
    for (int fd : open_fds_) {
      ::shutdown(fd, SHUT_RDWR);
    }
  }
  for (auto& t : threads_) {
    t.join();
  }
  for (int fd : open_fds_) {
    ::close(fd);
  }
}

std::vector<FakeRequest> FakeHttpServer::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

void FakeHttpServer::AcceptLoop() {
  while (!stopping_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) {
        return;
      }
      continue;
    }
    int n = ++connections_;
    std::lock_guard lock(mu_);
    open_fds_.push_back(fd);
    threads_.emplace_back([this, fd, n] { Serve(fd, n); });
  }
}

void FakeHttpServer::Serve(int fd, int connection) {
  std::string buf;
  char chunk[65536];
  auto fill = [&]() {
    ssize_t r = ::recv(fd, chunk, sizeof chunk, 0);
    if (r <= 0) {
      return false;
    }
    buf.append(chunk, static_cast<size_t>(r));
    return true;
  };
  for (;;) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) {
        return;  // fd closed in the destructor (stays in open_fds_ until then)
      }
    }
    FakeRequest req;
    req.connection = connection;
    std::string head = buf.substr(0, end);
    buf.erase(0, end + 4);
    size_t line_end = head.find("\r\n");
    std::string first = head.substr(0, line_end);
    size_t sp1 = first.find(' ');
    size_t sp2 = first.rfind(' ');
    req.method = first.substr(0, sp1);
    req.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t q = req.target.find('?');
    req.path = req.target.substr(0, q);
    req.query = q == std::string::npos ? "" : req.target.substr(q + 1);
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      std::string line = head.substr(pos, e == std::string::npos ? std::string::npos : e - pos);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        req.headers[Lower(line.substr(0, colon))] = value;
      }
      if (e == std::string::npos) {
        break;
      }
      pos = e + 2;
    }
    size_t length =
        std::stoul(req.Header("content-length").empty() ? "0" : req.Header("content-length"));
    while (buf.size() < length) {
      if (!fill()) {
        return;
      }
    }
    req.body = buf.substr(0, length);
    buf.erase(0, length);
    {
      std::lock_guard lock(mu_);
      requests_.push_back(req);
    }
    FakeResponse resp = handler_(req);
    if (resp.action == FakeResponse::Action::kHang) {
      continue;  // read on: returns when the client closes the connection
    }
    if (resp.action == FakeResponse::Action::kReset) {
      Reset(fd);
      return;
    }
    std::string out =
        "HTTP/1.1 " + std::to_string(resp.status) + " " + Reason(resp.status) + "\r\n";
    for (const auto& [k, v] : resp.headers) {
      out += k + ": " + v + "\r\n";
    }
    out += "Content-Length: " + std::to_string(resp.body.size()) + "\r\n\r\n";
    if (resp.action == FakeResponse::Action::kPartialAndClose) {
      // A FIN (not an RST, which could discard the bytes still unread by the client): the
      // client sees the body end short of its Content-Length.
      out += resp.body.substr(0, resp.partial_bytes);
      WriteAll(fd, out.data(), out.size());
      ::shutdown(fd, SHUT_RDWR);
      return;
    }
    if (req.method != "HEAD") {
      out += resp.body;
    }
    if (!WriteAll(fd, out.data(), out.size())) {
      return;
    }
  }
}

}  // namespace agentbox::gcp::testing
