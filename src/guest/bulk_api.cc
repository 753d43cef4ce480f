// Bulk transfers of the guest API: uploads (raw or multipart), downloads and directory archives,
// each on a raw connection and a transfer thread of its own (http/raw_io.h), so the data moves
// with splice(2)/sendfile(2) and large blocks rather than through the event loop.
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "archive/archive.h"
#include "common/log.h"
#include "common/strings.h"
#include "guest/ai_manus_messages.h"
#include "guest/files/multipart.h"
#include "guest/files/upload_form.h"
#include "guest/guest_api.h"
#include "guest/request_fields.h"
#include "http/field_check.h"
#include "http/raw_io.h"

namespace agentbox::guest {

using http::Response;

namespace {

// How long a transfer may make no progress before it is abandoned.
constexpr http::Millis kIdle{std::chrono::seconds(60)};
constexpr size_t kBlock = 1u << 20;

// The multipart form of an upload (guest/files/upload_form.h), answered as the guest does.
class MultipartUpload {
 public:
  MultipartUpload(std::string boundary, std::optional<std::string> path, FileConfig cfg)
      : form_(std::move(boundary), std::move(path), std::move(cfg), /*open_at_path=*/true) {}

  Result<void> Feed(std::string_view bytes) { return form_.Feed(bytes); }

  Response Finish() {
    Response out;
    http::Respond respond = [&out](Response r) { out = std::move(r); };
    if (auto r = form_.Finish(); !r) {
      return GuestApi::Err(r.error());
    }
    if (!http::AcceptFields(CheckUploadFields(form_.field_names()), "/api/v1/file/upload",
                            respond)) {
      return out;
    }
    auto& sink = form_.sink();
    const auto& path = form_.path();
    if (!sink) {
      respond(GuestApi::Err(FieldError("file", "is required (a multipart file part)")));
    } else if (!path || path->empty()) {
      respond(GuestApi::Err(FieldError("path", "is required (form field or ?path=)")));
    } else if (auto committed = sink->Commit(*path); !committed) {
      respond(GuestApi::Err(committed.error()));
    } else {
      respond(GuestApi::Ok(
          {{"file_path", *committed}, {"file_size", sink->bytes_written()}, {"success", true}},
          AiManusMessage("file/upload", nullptr)));
    }
    return out;
  }

 private:
  UploadForm form_;
};

bool IsTrue(const std::optional<std::string>& v) {
  return v && (*v == "1" || *v == "true" || *v == "yes");
}

}  // namespace

bool GuestApi::WantsRaw(const http::Request& req) {
  return PortConnector::Wants(req) || (req.path == "/api/v1/file/upload" && req.method == "POST") ||
         (req.path == "/api/v1/file/download" && req.method == "GET") ||
         (req.path == "/api/v1/file/archive" && (req.method == "GET" || req.method == "POST"));
}

void GuestApi::HandleRaw(http::Request req, http::RawConnection conn) {
  if (PortConnector::Wants(req)) {
    const bool authorized = Authorized(req);
    ports_.Handle(std::move(req), std::move(conn), authorized);
    return;
  }
  UniqueFd refused;
  auto work = [this, req = std::move(req), buffered = std::move(conn.buffered)](int fd) mutable {
    Transfer(req, fd, std::move(buffered));
  };
  if (auto started = transfers_.Start(std::move(conn.fd), std::move(work), &refused); !started) {
    static_cast<void>(http::WriteResponse(refused.Get(), Err(started.error()), kIdle));
  }
}

void GuestApi::Transfer(const http::Request& req, int fd, std::string buffered) {
  if (!Authorized(req)) {
    http::AnswerAndClose(fd, Err({ErrorCode::kUnauthorized, "missing or wrong X-Access-Token"}),
                         kIdle);
    return;
  }
  http::WidenSendBuffer(fd);
  if (req.path == "/api/v1/file/download") {
    Download(req, fd);
    return;
  }
  if (req.path == "/api/v1/file/archive" && req.method == "GET") {
    ArchiveGet(req, fd);
    return;
  }
  Response r = req.path == "/api/v1/file/upload" ? Upload(req, fd, std::move(buffered))
                                                 : ArchivePost(req, fd, std::move(buffered));
  http::AnswerAndClose(fd, r, kIdle);
}

Response GuestApi::Upload(const http::Request& req, int fd, std::string buffered) {
  const std::string type = req.Header("content-type");
  const uint64_t limit = opts_.files.max_upload_bytes;
  if (type.starts_with("multipart/")) {
    auto boundary = MultipartParser::BoundaryFromContentType(type);
    if (!boundary) {
      return Err(boundary.error());
    }
    // Multipart framing adds a little to the file: allow for it.
    auto body =
        http::BodyReader::ForRequest(req, fd, std::move(buffered), limit + (1 << 20), kIdle);
    if (!body) {
      return Err(body.error());
    }
    MultipartUpload upload(*boundary, req.QueryParam("path"), opts_.files);
    std::vector<char> buf(kBlock);
    for (;;) {
      auto n = body->Read(buf.data(), buf.size());
      if (!n) {
        return Err(n.error());
      }
      if (*n == 0) {
        break;
      }
      if (auto f = upload.Feed(std::string_view(buf.data(), *n)); !f) {
        return Err(f.error());
      }
    }
    return upload.Finish();
  }
  // Raw body: the bytes are the file.
  const std::string media = AsciiLower(type.substr(0, type.find(';')));
  if (!media.empty() && media != "application/octet-stream") {
    return Err({ErrorCode::kInvalidArgument,
                "file/upload takes application/octet-stream (path in the query) or "
                "multipart/form-data, not '" +
                    type + "'"});
  }
  auto path = req.QueryParam("path");
  if (!path || path->empty()) {
    return Err(FieldError("path", "is required as a query parameter for a raw upload"));
  }
  auto body = http::BodyReader::ForRequest(req, fd, std::move(buffered), limit, kIdle);
  if (!body) {
    return Err(body.error());
  }
  auto sink = UploadSink::Open(*path, opts_.files);
  if (!sink) {
    return Err(sink.error());
  }
  auto n = body->CopyTo(sink->fd());
  if (!n) {
    return Err(n.error());  // the sink's destructor removes the temporary file
  }
  if (auto w = sink->Wrote(*n); !w) {
    return Err(w.error());
  }
  auto committed = sink->Commit();
  if (!committed) {
    return Err(committed.error());
  }
  return Ok({{"file_path", *committed}, {"file_size", *n}, {"success", true}}, AiManusMessage("file/upload", nullptr));
}

void GuestApi::Download(const http::Request& req, int fd) {
  auto path = req.QueryParam("path");
  if (!path || path->empty()) {
    http::AnswerAndClose(fd, Err(FieldError("path", "is required as a query parameter")), kIdle);
    return;
  }
  auto f = OpenForDownload(*path, opts_.files);
  if (!f) {
    http::AnswerAndClose(fd, Err(f.error()), kIdle);
    return;
  }
  Response r;
  r.content_type = "application/octet-stream";
  std::string name;
  for (char c : f->name) {
    name += (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) ? '_' : c;
  }
  r.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + name + "\"");
  if (auto w = http::WriteAll(fd, http::ResponseHead(r, static_cast<int64_t>(f->size)), kIdle);
      !w) {
    return;
  }
  if (auto s = http::SendFile(fd, f->fd.Get(), f->size, kIdle); !s) {
    Log(LogLevel::kInfo, "guest.download_cut", "path={} reason={}", *path, s.error().message);
  }
}

void GuestApi::ArchiveGet(const http::Request& req, int fd) {
  auto path = req.QueryParam("path");
  if (!path || path->empty()) {
    http::AnswerAndClose(fd, Err(FieldError("path", "is required as a query parameter")), kIdle);
    return;
  }
  auto compression = archive::ParseCompression(req.QueryParam("compression").value_or(""));
  if (!compression) {
    http::AnswerAndClose(fd, Err(FieldError("compression", compression.error().message)), kIdle);
    return;
  }
  auto dir = ResolvePath(*path, opts_.files);
  if (!dir) {
    http::AnswerAndClose(fd, Err(dir.error()), kIdle);
    return;
  }
  // Checked before the head goes out: after it, an error can only cut the stream.
  auto measured = archive::Measure(*dir);
  if (!measured) {
    http::AnswerAndClose(fd, Err(measured.error()), kIdle);
    return;
  }
  Response r;
  r.content_type = archive::ContentType(*compression);
  r.headers.emplace_back("X-Agentbox-Content-Bytes", std::to_string(measured->bytes));
  r.headers.emplace_back("X-Agentbox-Entries", std::to_string(measured->entries));
  if (auto w = http::WriteAll(fd, http::ResponseHead(r, -2), kIdle); !w) {
    return;
  }
  http::ChunkedWriter out(fd, kIdle);
  auto packed = archive::Pack(*dir, *compression,
                              [&out](std::string_view bytes) { return out.Write(bytes); });
  if (!packed) {
    // No last chunk: the client sees an incomplete body, never a truncated archive as whole.
    Log(LogLevel::kWarn, "guest.archive_cut", "path={} reason={}", *dir, packed.error().message);
    return;
  }
  static_cast<void>(out.End());
}

Response GuestApi::ArchivePost(const http::Request& req, int fd, std::string buffered) {
  auto path = req.QueryParam("path");
  if (!path || path->empty()) {
    return Err(FieldError("path", "is required as a query parameter"));
  }
  auto dir = ResolvePath(*path, opts_.files);
  if (!dir) {
    return Err(dir.error());
  }
  if (*dir == "/") {
    return Err({ErrorCode::kInvalidArgument, "cannot unpack over /"});
  }
  auto body = http::BodyReader::ForRequest(req, fd, std::move(buffered), UINT64_MAX, kIdle);
  if (!body) {
    return Err(body.error());
  }
  archive::UnpackOptions opts;
  opts.keep_owner = ::geteuid() == 0;
  opts.overwrite = IsTrue(req.QueryParam("overwrite"));
  auto stats =
      archive::Unpack([&body](char* buf, size_t n) { return body->Read(buf, n); }, *dir, opts);
  if (!stats) {
    return Err(stats.error());
  }
  return Ok({{"path", *dir}, {"entries", stats->entries}, {"bytes", stats->bytes}}, "unpacked");
}

}  // namespace agentbox::guest
