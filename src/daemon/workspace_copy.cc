// A sandbox's /workspace from one guest to another (daemon/migrate.cc): the guests' own archive
// endpoints on both ends, relayed on raw unix-socket connections.
#include "daemon/workspace_copy.h"

#include "common/json_util.h"
#include "common/strings.h"
#include "common/unique_fd.h"
#include "http/raw_io.h"

namespace agentbox::daemon {

namespace {

using Millis = std::chrono::milliseconds;

struct Head {
  int status = 0;
  http::Request headers;  // only `headers` is used: BodyReader reads the framing from it
  std::string rest;       // body bytes read with the head
};

// Reads a response head (status line and headers) from `fd`.
Result<Head> ReadHead(int fd, Millis idle) {
  std::string buf;
  size_t end = std::string::npos;
  char block[16 << 10];
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (buf.size() > (64 << 10)) {
      return Fail(ErrorCode::kUnavailable, "the guest's answer has a head over 64 KiB");
    }
    auto n = http::ReadSome(fd, block, sizeof(block), idle);
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      return Fail(ErrorCode::kUnavailable, "the guest closed the connection before answering");
    }
    buf.append(block, *n);
  }
  Head h;
  const std::string head = buf.substr(0, end);
  h.rest = buf.substr(end + 4);
  size_t line_end = head.find("\r\n");
  const std::string status_line = head.substr(0, line_end);
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) {
    return Fail(ErrorCode::kUnavailable, "the guest answered something that is not HTTP");
  }
  h.status = std::atoi(status_line.c_str() + 9);
  while (line_end != std::string::npos) {
    const size_t start = line_end + 2;
    line_end = head.find("\r\n", start);
    const std::string line =
        head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
    const size_t colon = line.find(':');
    if (colon == std::string::npos) {
      continue;
    }
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
      value.erase(0, 1);
    }
    h.headers.headers[AsciiLower(line.substr(0, colon))] = value;
  }
  return h;
}

// The rest of a response whose head is `h`, at most `limit` bytes.
Result<std::string> ReadBody(int fd, Head& h, Millis idle, uint64_t limit) {
  auto reader = http::BodyReader::ForRequest(h.headers, fd, std::move(h.rest), limit, idle);
  if (!reader) {
    return Fail(reader.error());
  }
  std::string body;
  char block[16 << 10];
  while (true) {
    auto n = reader->Read(block, sizeof(block));
    if (!n) {
      return Fail(n.error());
    }
    if (*n == 0) {
      return body;
    }
    body.append(block, *n);
  }
}

// The envelope's message of a guest's error answer, for the caller's error.
std::string GuestMessage(const std::string& body) {
  const Json j = ParseUntrustedJson(body);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  return body.substr(0, 200);
}

Result<UniqueFd> Connect(const SandboxInfo& info) {
  if (!info.guest_endpoint.starts_with("unix:")) {
    return Fail(ErrorCode::kUnavailable, "sandbox '" + info.id + "' has no reachable guest");
  }
  return http::ConnectUnixNoFollow(info.guest_endpoint.substr(5));
}

}  // namespace

Result<ArchiveCopy> CopyArchive(const SandboxInfo& src, const std::string& from_dir,
                                const SandboxInfo& dst, const std::string& into_dir, Millis idle) {
  auto in = Connect(src);
  if (!in) {
    return Fail(in.error().code, "connect to the source guest: " + in.error().message);
  }
  auto out = Connect(dst);
  if (!out) {
    return Fail(out.error().code, "connect to the target guest: " + out.error().message);
  }
  const std::string get = "GET /api/v1/file/archive?path=" + PercentEncode(from_dir) +
                          " HTTP/1.1\r\nHost: guest\r\nX-Access-Token: " + src.guest_token +
                          "\r\nConnection: close\r\n\r\n";
  if (auto w = http::WriteAll(in->Get(), get, idle); !w) {
    return Fail(w.error());
  }
  auto head = ReadHead(in->Get(), idle);
  if (!head) {
    return Fail(head.error().code, "read the source's archive: " + head.error().message);
  }
  if (head->status != 200) {
    auto body = ReadBody(in->Get(), *head, idle, 1 << 20);
    return Fail(ErrorCode::kUnavailable, "the source guest refused the archive of " + from_dir +
                                             " (" + std::to_string(head->status) + "): " +
                                             (body ? GuestMessage(*body) : body.error().message));
  }
  auto reader = http::BodyReader::ForRequest(head->headers, in->Get(), std::move(head->rest),
                                             UINT64_MAX, idle);
  if (!reader) {
    return Fail(reader.error());
  }
  const std::string post = "POST /api/v1/file/archive?path=" + PercentEncode(into_dir) +
                           " HTTP/1.1\r\nHost: guest\r\nX-Access-Token: " + dst.guest_token +
                           "\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked"
                           "\r\nConnection: close\r\n\r\n";
  auto answer = [&]() -> Result<ArchiveCopy> {
    auto h = ReadHead(out->Get(), idle);
    if (!h) {
      return Fail(h.error().code,
                  "the target guest did not answer the archive: " + h.error().message);
    }
    auto body = ReadBody(out->Get(), *h, idle, 1 << 20);
    if (!body) {
      return Fail(body.error());
    }
    if (h->status != 200) {
      return Fail(h->status == 409 ? ErrorCode::kConflict : ErrorCode::kUnavailable,
                  "the target guest refused the archive (" + std::to_string(h->status) +
                      "): " + GuestMessage(*body));
    }
    const Json j = ParseUntrustedJson(*body);
    ArchiveCopy c;
    if (j.is_object() && j.contains("data") && j["data"].is_object()) {
      c.entries = ValueOr(j["data"], "entries", uint64_t{0});
      c.bytes = ValueOr(j["data"], "bytes", uint64_t{0});
    }
    return c;
  };
  if (auto w = http::WriteAll(out->Get(), post, idle); !w) {
    return Fail(w.error());
  }
  http::ChunkedWriter writer(out->Get(), idle);
  std::string block(1 << 20, '\0');
  while (true) {
    auto n = reader->Read(block.data(), block.size());
    if (!n) {
      // No last chunk goes out: the target sees a cut upload and keeps nothing of it.
      return Fail(n.error().code, "the source's archive broke off: " + n.error().message);
    }
    if (*n == 0) {
      break;
    }
    if (auto w = writer.Write(std::string_view(block.data(), *n)); !w) {
      // The target stopped reading: its answer (a refusal) says why, when there is one.
      auto a = answer();
      return a ? Fail(w.error()) : a;
    }
  }
  if (auto w = writer.End(); !w) {
    return Fail(w.error());
  }
  return answer();
}

}  // namespace agentbox::daemon
