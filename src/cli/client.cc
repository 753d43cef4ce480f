#include "cli/client.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>

#include "cli/format.h"
#include "cli/interrupt.h"
#include "cli/raw_post.h"
#include "common/json_util.h"
#include "common/page_cache_write.h"
#include "common/unique_fd.h"

namespace agentbox::cli {

namespace {

struct CurlEasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyDeleter>;

struct CurlSlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistDeleter>;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

size_t AppendToString(char* p, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

// libcurl's header callback: keeps the values of Warning headers.
size_t CollectWarning(char* p, size_t size, size_t n, void* out) {
  std::string_view line(p, size * n);
  constexpr std::string_view kName = "warning:";
  if (line.size() > kName.size() && strncasecmp(line.data(), kName.data(), kName.size()) == 0) {
    line.remove_prefix(kName.size());
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) {
      line.remove_prefix(1);
    }
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    static_cast<std::vector<std::string>*>(out)->emplace_back(line);
  }
  return size * n;
}

// libcurl's progress callback: a non-zero return aborts the transfer (CURLE_ABORTED_BY_CALLBACK).
int AbortOnInterrupt(void*, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return InterruptPending() ? 1 : 0;
}

ErrorCode CodeForStatus(long status) {
  switch (status) {
    case 400:
      return ErrorCode::kInvalidArgument;
    case 401:
      return ErrorCode::kUnauthorized;
    case 403:
      return ErrorCode::kForbidden;
    case 404:
      return ErrorCode::kNotFound;
    case 409:
      return ErrorCode::kConflict;
    case 413:
      return ErrorCode::kTooLarge;
    case 422:
      return ErrorCode::kValidation;
    case 503:
      return ErrorCode::kUnavailable;
    default:
      return ErrorCode::kInternal;
  }
}

// Turns a failed curl_easy_perform into the one-line message the CLI prints. Connection
// failures say "cannot reach agentboxd at ..."; anything later says the request broke.
Error TransportError(CURL* c, CURLcode code, const Endpoint& ep, const char* errbuf) {
  if (code == CURLE_ABORTED_BY_CALLBACK && InterruptPending()) {
    return Error{ErrorCode::kUnavailable, "interrupted"};
  }
  std::string what = curl_easy_strerror(code);
  long os_errno = 0;
  curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
  if (os_errno != 0) {
    what += std::string(" (") + std::strerror(static_cast<int>(os_errno)) + ")";
  } else if (errbuf[0] != '\0' && code != CURLE_COULDNT_CONNECT) {
    what += std::string(": ") + errbuf;
  }
  switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
      return Error{ErrorCode::kUnavailable,
                   "cannot reach agentboxd at " + ep.Describe() + ": " + what};
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Error{ErrorCode::kInvalidArgument,
                   "invalid agentboxd address '" + ep.Describe() + "': " + what};
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CONNECT_ERROR:
      return Error{ErrorCode::kUnavailable,
                   "cannot reach agentboxd at " + ep.Describe() + " over TLS: " + what + " (" +
                       (ep.ca_file.empty() ? std::string("checked against the system's CAs; ")
                                           : "checked against --ca-file " + ep.ca_file + "; ") +
                       "give the CA that signed the daemon's certificate with --ca-file or "
                       "AGENTBOX_CA_FILE)"};
    default:
      return Error{ErrorCode::kUnavailable,
                   "request to agentboxd at " + ep.Describe() + " failed: " + what};
  }
}

// Everything a request to the daemon shares: URL, transport, auth, timeouts.
class Request {
 public:
  Request(CURL* c, const Endpoint& ep, const std::string& method, const std::string& path)
      : c_(c), ep_(ep) {
    curl_easy_reset(c_);
    errbuf_[0] = '\0';
    std::string url;
    if (ep.base_url.empty()) {
      curl_easy_setopt(c_, CURLOPT_UNIX_SOCKET_PATH, ep.unix_socket.c_str());
      url = "http://agentboxd" + path;
    } else {
      url = ep.base_url + path;
      if (!ep.ca_file.empty()) {
        curl_easy_setopt(c_, CURLOPT_CAINFO, ep.ca_file.c_str());
      }
    }
    curl_easy_setopt(c_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(c_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c_, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c_, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c_, CURLOPT_USERAGENT, "agentbox-cli/0.1");
    curl_easy_setopt(c_, CURLOPT_ERRORBUFFER, errbuf_);
    if (method == "GET") {
      curl_easy_setopt(c_, CURLOPT_HTTPGET, 1L);
      curl_easy_setopt(c_, CURLOPT_CUSTOMREQUEST, nullptr);
    }
    // What the daemon (or the sandbox's guest) ignored of a request, e.g. a field this CLI knows
    // and an older daemon does not: said on stderr once the response is in.
    curl_easy_setopt(c_, CURLOPT_HEADERFUNCTION, CollectWarning);
    curl_easy_setopt(c_, CURLOPT_HEADERDATA, &warnings_);
    AddHeader("Expect:");  // the daemon answers 100-continue, but there is nothing to wait for
    if (!ep.api_key.empty()) {
      AddHeader("Authorization: Bearer " + ep.api_key);
    }
  }

  ~Request() {
    // The handle outlives this request: leave it no pointers into it.
    curl_easy_setopt(c_, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(c_, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(c_, CURLOPT_POSTFIELDS, nullptr);
    curl_easy_setopt(c_, CURLOPT_HEADERDATA, nullptr);
    curl_easy_setopt(c_, CURLOPT_HEADERFUNCTION, nullptr);
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  void AddHeader(const std::string& h) {
    curl_slist* l = curl_slist_append(headers_.get(), h.c_str());
    if (l) {
      static_cast<void>(headers_.release());  // l is the same list, or a new one when it was empty
      headers_.reset(l);
    }
  }

  // Sends `body` as the JSON request body (kept alive by the request).
  void JsonBody(const Json& body) {
    payload_ = DumpJson(body);
    AddHeader("Content-Type: application/json");
    curl_easy_setopt(c_, CURLOPT_POSTFIELDS, payload_.c_str());
    curl_easy_setopt(c_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload_.size()));
  }

  void Interruptible() {
    curl_easy_setopt(c_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c_, CURLOPT_XFERINFOFUNCTION, AbortOnInterrupt);
  }

  // Performs the request; the response body goes wherever the caller pointed WRITEFUNCTION
  // (by default into `body`).
  Result<long> Perform() {
    curl_easy_setopt(c_, CURLOPT_HTTPHEADER, headers_.get());
    CURLcode rc = curl_easy_perform(c_);
    for (const auto& w : warnings_) {
      std::cerr << "agentbox: warning: " << WarningText(w) << "\n";
    }
    if (rc != CURLE_OK) {
      return Fail(TransportError(c_, rc, ep_, errbuf_));
    }
    long status = 0;
    curl_easy_getinfo(c_, CURLINFO_RESPONSE_CODE, &status);
    return status;
  }

  CURL* handle() const { return c_; }

 private:
  CURL* c_;
  const Endpoint& ep_;
  CurlSlist headers_;
  std::string payload_;                // the JSON body, alive until the request is done
  std::vector<std::string> warnings_;  // Warning header values of the response
  char errbuf_[CURL_ERROR_SIZE];
};

// For write callbacks: when the response is not 2xx, keeps its bytes (capped at 64 KiB) in
// `error_body` for the error message and returns true; the body is then not the caller's.
bool KeepErrorBody(CURL* c, const char* p, size_t len, std::string& error_body) {
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 200 && status < 300) {
    return false;
  }
  if (error_body.size() < (64u << 10)) {
    error_body.append(p, len);
  }
  return true;
}

Reply MakeReply(long status, std::string body) {
  Reply r;
  r.status = status;
  r.body = std::move(body);
  r.envelope = ParseUntrustedJson(r.body);
  if (r.envelope.is_discarded()) {
    r.envelope = nullptr;
  }
  return r;
}

}  // namespace

std::string Endpoint::Describe() const {
  return base_url.empty() ? "unix:" + unix_socket : base_url;
}

Endpoint ResolveEndpoint(const std::string& url_flag, const std::string& socket_flag,
                         const std::string& key_flag, const std::string& ca_flag) {
  Endpoint ep;
  std::string url = url_flag;
  std::string socket = socket_flag;
  if (url.empty() && socket.empty()) {
    url = Env("AGENTBOX_URL");
    socket = Env("AGENTBOX_SOCKET");
  }
  if (url.starts_with("unix:")) {
    ep.unix_socket = url.substr(5);
  } else if (!url.empty()) {
    while (url.size() > 1 && url.back() == '/') {
      url.pop_back();
    }
    ep.base_url = url.find("://") == std::string::npos ? "http://" + url : url;
  } else {
    ep.unix_socket = socket.empty() ? kDefaultSocket : socket;
  }
  ep.api_key = key_flag.empty() ? Env("AGENTBOX_API_KEY") : key_flag;
  ep.ca_file = ca_flag.empty() ? Env("AGENTBOX_CA_FILE") : ca_flag;
  return ep;
}

const Json& Reply::data() const {
  static const Json kNull = nullptr;
  if (envelope.is_object()) {
    auto it = envelope.find("data");
    if (it != envelope.end()) {
      return *it;
    }
  }
  return kNull;
}

std::string Reply::ErrorMessage() const {
  const std::string suffix = "(HTTP " + std::to_string(status) + ")";
  if (envelope.is_object()) {
    auto it = envelope.find("message");
    if (it != envelope.end() && it->is_string() && !it->get<std::string>().empty()) {
      return it->get<std::string>() + " " + suffix;
    }
  }
  std::string text = body.substr(0, body.find('\n'));
  if (text.size() > 200) {
    text = text.substr(0, 200) + "...";
  }
  return text.empty() ? "agentboxd answered " + suffix : text + " " + suffix;
}

struct DaemonClient::Impl {
  CurlEasy easy{curl_easy_init()};
};

DaemonClient::DaemonClient(Endpoint endpoint)
    : endpoint_(std::move(endpoint)), impl_(std::make_unique<Impl>()) {}

DaemonClient::~DaemonClient() = default;

Result<Reply> DaemonClient::Send(const std::string& method, const std::string& path,
                                 const Json* body, bool interruptible,
                                 const std::vector<std::string>& headers) {
  CURL* c = impl_->easy.get();
  if (!c) {
    return Fail(ErrorCode::kInternal, "cannot initialise libcurl");
  }
  Request req(c, endpoint_, method, path);
  for (const auto& h : headers) {
    req.AddHeader(h);
  }
  if (body) {
    req.JsonBody(*body);
  }
  if (interruptible) {
    req.Interruptible();
  }
  std::string out;
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, AppendToString);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  auto status = req.Perform();
  if (!status) {
    return Fail(status.error());
  }
  return MakeReply(*status, std::move(out));
}

Result<Json> DaemonClient::Call(const std::string& method, const std::string& path,
                                const Json* body, bool interruptible,
                                const std::vector<std::string>& headers) {
  auto r = Send(method, path, body, interruptible, headers);
  if (!r) {
    return Fail(r.error());
  }
  if (!r->ok()) {
    return Fail(CodeForStatus(r->status), r->ErrorMessage());
  }
  return r->data();
}

namespace {

// Bulk transfers move large blocks: libcurl's defaults (16 KiB receive, 64 KiB send buffers)
// cost a system call and a callback per small block.
constexpr long kRecvBuffer = 1L << 20;
constexpr long kSendBuffer = 2L << 20;  // the largest libcurl accepts

struct BodyPull {
  const DaemonClient::BodyReader* read = nullptr;
  std::optional<Error> error;
  static size_t Read(char* p, size_t size, size_t n, void* self_ptr) {
    auto* self = static_cast<BodyPull*>(self_ptr);
    auto got = (*self->read)(p, size * n);
    if (!got) {
      self->error = got.error();
      return CURL_READFUNC_ABORT;
    }
    return *got;
  }
};

// Progress and Ctrl-C for bulk transfers.
struct BulkProgress {
  const DaemonClient::Progress* progress = nullptr;
  bool upload = false;
  static int Call(void* self_ptr, curl_off_t, curl_off_t dlnow, curl_off_t, curl_off_t ulnow) {
    auto* self = static_cast<BulkProgress*>(self_ptr);
    if (self->progress && *self->progress) {
      (*self->progress)(static_cast<uint64_t>(self->upload ? ulnow : dlnow));
    }
    return InterruptPending() ? 1 : 0;
  }
};

// Receives a body: 2xx bodies go to `on_data`, anything else is kept (capped) as the error body.
struct BodyPush {
  CURL* c = nullptr;
  const std::function<Result<void>(std::string_view)>* on_data = nullptr;
  const std::function<void(const std::string&, const std::string&)>* on_header = nullptr;
  std::string error_body;
  std::optional<Error> error;
  static size_t Write(char* p, size_t size, size_t n, void* self_ptr) {
    auto* self = static_cast<BodyPush*>(self_ptr);
    const size_t len = size * n;
    if (KeepErrorBody(self->c, p, len, self->error_body)) {
      return len;
    }
    if (auto r = (*self->on_data)(std::string_view(p, len)); !r) {
      self->error = r.error();
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    return len;
  }
  static size_t Header(char* p, size_t size, size_t n, void* self_ptr) {
    auto* self = static_cast<BodyPush*>(self_ptr);
    const std::string line(p, size * n);
    const size_t colon = line.find(':');
    if (colon != std::string::npos && self->on_header && *self->on_header) {
      std::string name = line.substr(0, colon);
      for (auto& ch : name) {
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      }
      std::string value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
        value.erase(0, 1);
      }
      while (!value.empty() &&
             (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
        value.pop_back();
      }
      (*self->on_header)(name, value);
    }
    return size * n;
  }
};

}  // namespace

Result<Json> DaemonClient::PostBody(const std::string& path, const std::string& content_type,
                                    const BodyReader& read, int64_t size,
                                    const Progress& progress) {
  CURL* c = impl_->easy.get();
  if (!c) {
    return Fail(ErrorCode::kInternal, "cannot initialise libcurl");
  }
  Request req(c, endpoint_, "POST", path);
  req.AddHeader("Content-Type: " + content_type);
  if (size < 0) {
    req.AddHeader("Transfer-Encoding: chunked");
  }
  BodyPull pull{&read, std::nullopt};
  BulkProgress prog{&progress, true};
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "POST");
  curl_easy_setopt(c, CURLOPT_READFUNCTION, BodyPull::Read);
  curl_easy_setopt(c, CURLOPT_READDATA, &pull);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
  curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, kSendBuffer);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, BulkProgress::Call);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &prog);
  std::string out;
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, AppendToString);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  auto status = req.Perform();
  curl_easy_setopt(c, CURLOPT_READDATA, nullptr);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, nullptr);
  if (pull.error) {
    return Fail(*pull.error);
  }
  if (!status) {
    return Fail(status.error());
  }
  Reply r = MakeReply(*status, std::move(out));
  if (!r.ok()) {
    return Fail(CodeForStatus(r.status), r.ErrorMessage());
  }
  return r.data();
}

Result<Json> DaemonClient::Upload(const std::string& path, const std::string& local_file,
                                  const Progress& progress) {
  UniqueFd fd(::open(local_file.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd || ::fstat(fd.Get(), &st) != 0) {
    return Fail(ErrnoError(errno, "read '" + local_file + "'"));
  }
  if (CanPostRaw(endpoint_)) {
    auto r = RawPostFile(endpoint_, path, "application/octet-stream", fd.Get(),
                         static_cast<uint64_t>(st.st_size), progress);
    if (!r) {
      return Fail(r.error());
    }
    if (!r->ok()) {
      return Fail(CodeForStatus(r->status), r->ErrorMessage());
    }
    return r->data();
  }
  BodyReader read = [&fd, &local_file](char* buf, size_t n) -> Result<size_t> {
    for (;;) {
      const ssize_t got = ::read(fd.Get(), buf, n);
      if (got >= 0) {
        return static_cast<size_t>(got);
      }
      if (errno != EINTR) {
        return Fail(ErrnoError(errno, "read '" + local_file + "'"));
      }
    }
  };
  return PostBody(path, "application/octet-stream", read, static_cast<int64_t>(st.st_size),
                  progress);
}

Result<Json> DaemonClient::PostChunked(const std::string& path, const std::string& content_type,
                                       const std::function<Result<void>(const ChunkSink&)>& produce,
                                       const Progress& progress) {
  if (!CanPostRaw(endpoint_)) {
    return Fail(ErrorCode::kInternal, "PostChunked needs a unix socket or http:// endpoint");
  }
  auto r = RawPostChunked(endpoint_, path, content_type, produce, progress);
  if (!r) {
    return Fail(r.error());
  }
  if (!r->ok()) {
    return Fail(CodeForStatus(r->status), r->ErrorMessage());
  }
  return r->data();
}

Result<void> DaemonClient::GetStream(
    const std::string& path,
    const std::function<void(const std::string&, const std::string&)>& on_header,
    const std::function<Result<void>(const Source&)>& consume, const Progress& progress) {
  if (!CanPostRaw(endpoint_)) {
    return Fail(ErrorCode::kInternal, "GetStream needs a unix socket or http:// endpoint");
  }
  auto r = RawGetStream(endpoint_, path, on_header, consume, progress);
  if (!r) {
    return Fail(r.error());
  }
  if (!r->ok()) {
    return Fail(CodeForStatus(r->status), r->ErrorMessage());
  }
  return {};
}

Result<void> DaemonClient::GetBody(
    const std::string& path, const std::function<Result<void>(std::string_view)>& on_data,
    const std::function<void(const std::string&, const std::string&)>& on_header,
    const Progress& progress) {
  CURL* c = impl_->easy.get();
  if (!c) {
    return Fail(ErrorCode::kInternal, "cannot initialise libcurl");
  }
  Request req(c, endpoint_, "GET", path);
  BodyPush push;
  push.c = c;
  push.on_data = &on_data;
  push.on_header = &on_header;
  BulkProgress prog{&progress, false};
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, kRecvBuffer);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, BodyPush::Write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &push);
  if (on_header) {
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, BodyPush::Header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &push);
  }
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, BulkProgress::Call);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &prog);
  auto status = req.Perform();
  curl_easy_setopt(c, CURLOPT_WRITEDATA, nullptr);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, nullptr);
  if (push.error) {
    return Fail(*push.error);
  }
  if (!status) {
    return Fail(status.error());
  }
  if (*status < 200 || *status >= 300) {
    Reply r = MakeReply(*status, std::move(push.error_body));
    return Fail(CodeForStatus(r.status), r.ErrorMessage());
  }
  return {};
}

Result<void> DaemonClient::Download(const std::string& path, int fd, const Progress& progress) {
  // In writes of at most 64 KiB: small page-cache folios (common/page_cache_write.h).
  std::function<Result<void>(std::string_view)> write = [fd](std::string_view b) -> Result<void> {
    return WriteInBlocks(fd, b, "write the downloaded file");
  };
  return GetBody(path, write, nullptr, progress);
}

namespace {

// Receives an event stream: 2xx bodies go to `on_data`, anything else is kept (capped) as the
// error body. `stopped` records that the caller ended the transfer on purpose.
struct StreamSink {
  CURL* c = nullptr;
  const std::function<bool(std::string_view)>* on_data = nullptr;
  const std::function<bool()>* stop = nullptr;
  std::string error_body;
  bool stopped = false;

  static size_t Write(char* p, size_t size, size_t n, void* self_ptr) {
    auto* self = static_cast<StreamSink*>(self_ptr);
    const size_t len = size * n;
    if (KeepErrorBody(self->c, p, len, self->error_body)) {
      return len;
    }
    if (!(*self->on_data)(std::string_view(p, len))) {
      self->stopped = true;
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    return len;
  }

  static int Progress(void* self_ptr, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* self = static_cast<StreamSink*>(self_ptr);
    if ((*self->stop)()) {
      self->stopped = true;
      return 1;
    }
    return 0;
  }
};

}  // namespace

Result<Reply> DaemonClient::Stream(const std::string& path,
                                   const std::function<bool(std::string_view)>& on_data,
                                   const std::function<bool()>& stop, const Json* body) {
  CURL* c = impl_->easy.get();
  if (!c) {
    return Fail(ErrorCode::kInternal, "cannot initialise libcurl");
  }
  Request req(c, endpoint_, body ? "POST" : "GET", path);
  if (body) {
    req.JsonBody(*body);
  } else {
    req.AddHeader("Accept: text/event-stream");
  }
  StreamSink sink;
  sink.c = c;
  sink.on_data = &on_data;
  sink.stop = &stop;
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, StreamSink::Write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, StreamSink::Progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &sink);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, kStreamIdleSeconds);
  auto status = req.Perform();
  if (sink.stopped) {
    return MakeReply(200, "");
  }
  if (!status) {
    return Fail(status.error());
  }
  if (*status < 200 || *status >= 300) {
    return MakeReply(*status, std::move(sink.error_body));
  }
  return MakeReply(*status, "");
}

std::string UrlEscape(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

std::string GuestPath(const std::string& sandbox_id, const std::string& endpoint) {
  return "/v1/sandboxes/" + UrlEscape(sandbox_id) + "/api/v1/" + endpoint;
}

}  // namespace agentbox::cli
