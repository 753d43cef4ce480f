#include "http/tunnel_mux.h"

#include <algorithm>
#include <array>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "common/log.h"
#include "http/envelope.h"

namespace agentbox::http::tunnel {

namespace asio = boost::asio;
using boost::system::error_code;

std::string EncodeFrame(FrameType type, uint32_t stream, std::string_view payload) {
  std::string out;
  out.reserve(5 + payload.size());
  out.push_back(static_cast<char>(type));
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((stream >> shift) & 0xff));
  }
  out.append(payload);
  return out;
}

namespace {

uint32_t ReadU32(std::string_view b) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) {
    v = (v << 8) | static_cast<uint8_t>(b[i]);
  }
  return v;
}

std::string U32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) {
    s[static_cast<size_t>(i)] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
  }
  return s;
}

}  // namespace

Result<Frame> DecodeFrame(std::string_view message) {
  if (message.size() < 5) {
    return agentbox::Fail(ErrorCode::kInvalidArgument, "tunnel frame shorter than 5 bytes");
  }
  const auto type = static_cast<uint8_t>(message[0]);
  if (type < 1 || type > 5) {
    return agentbox::Fail(ErrorCode::kInvalidArgument,
                          "unknown tunnel frame type " + std::to_string(type));
  }
  Frame f;
  f.type = static_cast<FrameType>(type);
  f.stream = ReadU32(message.substr(1));
  f.payload = message.substr(5);
  if (f.type == FrameType::kWindow && f.payload.size() != 4) {
    return agentbox::Fail(ErrorCode::kInvalidArgument, "tunnel window frame without 4-byte credit");
  }
  return f;
}

std::string CannedResponse(int status, const std::string& message) {
  const std::string body = ErrorBody(status, message);
  const char* reason = status == 502   ? "Bad Gateway"
                       : status == 503 ? "Service Unavailable"
                       : status == 401 ? "Unauthorized"
                       : status == 404 ? "Not Found"
                                       : "Error";
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

struct Mux::Stream {
  Stream(uint32_t i, UnixSocket s) : id(i), sock(std::move(s)) {}
  uint32_t id;
  UnixSocket sock;
  uint32_t credit = kStreamWindow;  // bytes we may still send to the peer
  bool reading = false;
  bool read_done = false;  // local EOF seen and kEof sent
  std::deque<std::string> out;
  bool writing = false;
  bool peer_eof = false;    // peer sent kEof; shut our sending side once `out` drains
  bool write_done = false;  // local sending side shut
  bool closed = false;
  bool close_after_drain = false;
  // Daemon side: bytes went to the guest since the guest last sent any, i.e. a request waits for
  // its response.
  bool awaiting_response = false;
  std::array<char, 64 * 1024> buf;
};

Mux::Mux(asio::strand<asio::io_context::executor_type> strand, std::unique_ptr<Link> link,
         Role role, Hooks hooks)
    : strand_(std::move(strand)), link_(std::move(link)), role_(role), hooks_(std::move(hooks)) {}

Mux::~Mux() = default;

void Mux::Start() {
  asio::dispatch(strand_, [self = shared_from_this()] { self->ReadLink(); });
}

void Mux::OpenStream(UnixSocket local) {
  asio::dispatch(strand_, [self = shared_from_this(), local = std::move(local)]() mutable {
    if (self->closed_) {
      auto s = std::make_shared<UnixSocket>(std::move(local));
      const auto msg =
          std::make_shared<std::string>(CannedResponse(503, "the sandbox's tunnel is closed"));
      asio::async_write(*s, asio::buffer(*msg), [s, msg](error_code, size_t) {
        error_code ignored;
        s->close(ignored);
      });
      return;
    }
    const uint32_t id = self->next_id_;
    self->next_id_ += 2;  // odd ids: opened by the daemon (leaves even ones for future use)
    self->Send(EncodeFrame(FrameType::kOpen, id));
    self->AddStream(id, std::move(local));
  });
}

void Mux::Shutdown(const std::string& why) {
  asio::dispatch(strand_, [self = shared_from_this(), why] { self->Fail(why); });
}

void Mux::AddStream(uint32_t id, UnixSocket local) {
  auto s = std::make_shared<Stream>(id, std::move(local));
  streams_[id] = s;
  stream_count_ = streams_.size();
  ReadLocal(s);
}

void Mux::ReadLink() {
  link_->Read(in_, asio::bind_executor(strand_, [self = shared_from_this()](error_code ec) {
                if (ec) {
                  self->Fail("tunnel connection lost: " + ec.message());
                  return;
                }
                self->OnMessage();
                self->in_.consume(self->in_.size());
                if (!self->closed_) {
                  self->ReadLink();
                }
              }));
}

void Mux::OnMessage() {
  const auto data = in_.cdata();
  auto frame = DecodeFrame(std::string_view(static_cast<const char*>(data.data()), data.size()));
  if (!frame) {
    Fail("bad tunnel frame: " + frame.error().message);
    return;
  }
  auto it = streams_.find(frame->stream);
  std::shared_ptr<Stream> s = it == streams_.end() ? nullptr : it->second;
  switch (frame->type) {
    case FrameType::kOpen: {
      if (role_ != Role::kGuest || s || !hooks_.on_open) {
        Fail("unexpected open of tunnel stream " + std::to_string(frame->stream));
        return;
      }
      auto local = hooks_.on_open(frame->stream);
      if (!local) {
        Send(EncodeFrame(FrameType::kReset, frame->stream, local.error().message));
        return;
      }
      AddStream(frame->stream, std::move(*local));
      return;
    }
    case FrameType::kData:
      if (!s || s->peer_eof) {
        return;  // stream already reset on our side: its late bytes are dropped
      }
      s->awaiting_response = false;
      s->out.emplace_back(frame->payload);
      WriteLocal(s);
      return;
    case FrameType::kEof:
      if (s) {
        s->peer_eof = true;
        WriteLocal(s);
      }
      return;
    case FrameType::kReset:
      if (s) {
        CloseStream(s, false, std::string(frame->payload));
      }
      return;
    case FrameType::kWindow:
      if (s) {
        s->credit += ReadU32(frame->payload);
        ReadLocal(s);
      }
      return;
  }
}

void Mux::Send(std::string frame) {
  if (closed_) {
    return;
  }
  out_.push_back(std::move(frame));
  Pump();
}

void Mux::Pump() {
  if (writing_ || out_.empty() || closed_) {
    return;
  }
  writing_ = true;
  link_->Write(out_.front(),
               asio::bind_executor(strand_, [self = shared_from_this()](error_code ec) {
                 self->writing_ = false;
                 if (ec) {
                   self->Fail("tunnel write failed: " + ec.message());
                   return;
                 }
                 if (!self->out_.empty()) {
                   self->out_.pop_front();
                 }
                 self->Pump();
               }));
}

void Mux::ReadLocal(const std::shared_ptr<Stream>& s) {
  if (s->closed || s->reading || s->read_done || s->credit == 0 || closed_) {
    return;
  }
  s->reading = true;
  const size_t n = std::min<size_t>(s->buf.size(), s->credit);
  s->sock.async_read_some(
      asio::buffer(s->buf.data(), n),
      asio::bind_executor(strand_, [self = shared_from_this(), s](error_code ec, size_t got) {
        s->reading = false;
        if (s->closed || self->closed_) {
          return;
        }
        if (ec == asio::error::eof) {
          s->read_done = true;
          self->Send(EncodeFrame(FrameType::kEof, s->id));
          self->MaybeFinish(s);
          return;
        }
        if (ec) {
          self->CloseStream(s, true, "local connection failed: " + ec.message());
          return;
        }
        s->credit -= static_cast<uint32_t>(got);
        s->awaiting_response = true;
        self->Send(EncodeFrame(FrameType::kData, s->id, std::string_view(s->buf.data(), got)));
        self->ReadLocal(s);
      }));
}

void Mux::WriteLocal(const std::shared_ptr<Stream>& s) {
  if (s->closed || s->writing) {
    return;
  }
  if (s->out.empty()) {
    if (s->close_after_drain) {
      CloseStream(s, false, "");
      return;
    }
    if (s->peer_eof && !s->write_done) {
      s->write_done = true;
      error_code ignored;
      s->sock.shutdown(UnixSocket::shutdown_send, ignored);
      MaybeFinish(s);
    }
    return;
  }
  s->writing = true;
  asio::async_write(
      s->sock, asio::buffer(s->out.front()),
      asio::bind_executor(strand_, [self = shared_from_this(), s](error_code ec, size_t n) {
        s->writing = false;
        if (s->closed) {
          return;
        }
        if (ec) {
          self->CloseStream(s, true, "local connection failed: " + ec.message());
          return;
        }
        s->out.pop_front();
        if (!s->close_after_drain) {
          self->Send(EncodeFrame(FrameType::kWindow, s->id, U32(static_cast<uint32_t>(n))));
        }
        self->WriteLocal(s);
      }));
}

void Mux::MaybeFinish(const std::shared_ptr<Stream>& s) {
  if (s->read_done && s->write_done) {
    CloseStream(s, false, "");
  }
}

void Mux::CloseStream(const std::shared_ptr<Stream>& s, bool send_reset, const std::string& why) {
  if (s->closed) {
    return;
  }
  s->closed = true;
  if (send_reset) {
    Send(EncodeFrame(FrameType::kReset, s->id, why));
  }
  error_code ignored;
  s->sock.close(ignored);
  streams_.erase(s->id);
  stream_count_ = streams_.size();
}

void Mux::Fail(const std::string& why) {
  if (closed_) {
    return;
  }
  closed_ = true;
  link_->Close();
  // out_ is left alone: an in-flight write may still refer to its front; Send() drops new frames.
  auto streams = streams_;
  for (auto& [id, s] : streams) {
    if (role_ == Role::kDaemon && s->awaiting_response && !s->write_done) {
      // A request is on its way or waiting: answer it rather than cutting the connection.
      s->out.push_back(CannedResponse(
          502, "the tunnel to the sandbox's guest broke while the request was in flight (" + why +
                   "); the guest reconnects and the request may be retried"));
      s->close_after_drain = true;
      s->peer_eof = false;
      WriteLocal(s);
      continue;
    }
    CloseStream(s, false, why);
  }
  Log(LogLevel::kInfo, "tunnel.closed", "streams={} reason=\"{}\"", streams.size(), why);
  if (hooks_.on_closed) {
    auto cb = std::move(hooks_.on_closed);
    hooks_.on_closed = nullptr;
    cb(why);
  }
}

}  // namespace agentbox::http::tunnel
