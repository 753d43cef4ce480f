#include "guest/files/multipart.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/strings.h"

namespace agentbox::guest {
namespace {

// Longest run of transport padding (RFC 2046 LWSP) accepted after a boundary.
constexpr size_t kMaxBoundaryPadding = 1024;
constexpr size_t kMaxBoundaryLength = 70;  // RFC 2046 §5.1.1

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && IsSpace(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  return out;
}

// Shortened copy of untrusted text for an error message.
std::string Excerpt(std::string_view s) {
  constexpr size_t kMax = 80;
  return s.size() <= kMax ? std::string(s) : std::string(s.substr(0, kMax)) + "...";
}

// A header value such as `form-data; name="a b"; filename=x.txt`: the lower-cased leading
// token and the parameters in order (names lower-cased). Quoted values may contain ';' and
// escape '"' and '\' with a backslash; any other backslash is kept, so Windows paths survive.
struct HeaderValue {
  std::string type;
  std::vector<std::pair<std::string, std::string>> params;
};

HeaderValue ParseHeaderValue(std::string_view v) {
  HeaderValue out;
  size_t i = v.find(';');
  out.type = Lower(Trim(v.substr(0, i)));
  while (i != std::string_view::npos && i < v.size()) {
    ++i;  // past ';'
    while (i < v.size() && IsSpace(v[i])) {
      ++i;
    }
    const size_t name_end = v.find_first_of("=;", i);
    std::string name = Lower(Trim(v.substr(i, name_end - i)));
    if (name_end == std::string_view::npos || v[name_end] == ';') {
      if (!name.empty()) {
        out.params.emplace_back(std::move(name), std::string());
      }
      i = name_end;
      continue;
    }
    i = name_end + 1;
    while (i < v.size() && IsSpace(v[i])) {
      ++i;
    }
    std::string value;
    if (i < v.size() && v[i] == '"') {
      ++i;
      while (i < v.size() && v[i] != '"') {
        if (v[i] == '\\' && i + 1 < v.size() && (v[i + 1] == '"' || v[i + 1] == '\\')) {
          ++i;
        }
        value += v[i++];
      }
      i = v.find(';', i);  // skip the closing quote and anything up to the next parameter
    } else {
      const size_t end = v.find(';', i);
      value = std::string(Trim(v.substr(i, end - i)));
      i = end;
    }
    if (!name.empty()) {
      out.params.emplace_back(std::move(name), std::move(value));
    }
  }
  return out;
}

// Decodes an RFC 8187 extended value (`UTF-8''na%20me`). Only UTF-8 is understood; other
// charsets yield nullopt so the plain `filename` is used instead.
std::optional<std::string> DecodeExtValue(std::string_view v) {
  const size_t q1 = v.find('\'');
  const size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
  if (q2 == std::string_view::npos || Lower(v.substr(0, q1)) != "utf-8") {
    return std::nullopt;
  }
  std::string out;
  for (size_t i = q2 + 1; i < v.size(); ++i) {
    if (v[i] == '%' && i + 2 < v.size()) {
      const int hi = HexValue(v[i + 1]);
      const int lo = HexValue(v[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += v[i];
  }
  return out;
}

}  // namespace

Result<std::string> MultipartParser::BoundaryFromContentType(std::string_view content_type) {
  const HeaderValue v = ParseHeaderValue(content_type);
  if (v.type != "multipart/form-data") {
    return Fail(ErrorCode::kInvalidArgument,
                "expected Content-Type multipart/form-data, got '" + Excerpt(content_type) + "'");
  }
  const auto it = std::find_if(v.params.begin(), v.params.end(),
                               [](const auto& p) { return p.first == "boundary"; });
  if (it == v.params.end()) {
    return Fail(ErrorCode::kInvalidArgument, "multipart/form-data without a boundary parameter");
  }
  const std::string& b = it->second;
  const bool bad_char =
      std::any_of(b.begin(), b.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
  if (b.empty() || b.size() > kMaxBoundaryLength || bad_char || b.back() == ' ') {
    return Fail(ErrorCode::kInvalidArgument,
                "invalid multipart boundary '" + Excerpt(b) +
                    "': 1 to 70 printable characters, not ending in a space");
  }
  return b;
}

MultipartParser::MultipartParser(std::string boundary)
    : delimiter_("\r\n--" + boundary),
      // The first boundary may open the body without a preceding CRLF; pretend there was one.
      buf_("\r\n") {}

Result<void> MultipartParser::Failed(Error e) {
  state_ = State::kFailed;
  error_ = e;
  buf_.clear();
  buf_.shrink_to_fit();
  return Fail(std::move(e));
}

Result<void> MultipartParser::Feed(std::string_view chunk) {
  if (state_ == State::kFailed) {
    return Fail(*error_);
  }
  if (state_ == State::kEpilogue) {
    return {};
  }
  buf_.append(chunk);
  bool progress = true;
  while (progress && state_ != State::kEpilogue) {
    progress = false;
    if (auto r = Step(progress); !r) {
      return Failed(r.error());
    }
  }
  buf_.erase(0, pos_);
  pos_ = 0;
  if (state_ == State::kEpilogue) {
    buf_.clear();
  }
  return {};
}

Result<void> MultipartParser::Finish() {
  if (state_ == State::kFailed) {
    return Fail(*error_);
  }
  if (state_ != State::kEpilogue) {
    return Failed(
        Error{ErrorCode::kInvalidArgument, "multipart body ended before the closing boundary"});
  }
  return {};
}

size_t MultipartParser::SafePrefix(std::string_view rest) const {
  // Everything before the last position from which the remaining bytes could still grow into
  // the delimiter can be released.
  const size_t from = rest.size() >= delimiter_.size() ? rest.size() - delimiter_.size() + 1 : 0;
  for (size_t p = from; p < rest.size(); ++p) {
    if (rest[p] == '\r' && delimiter_.compare(0, rest.size() - p, rest.substr(p)) == 0) {
      return p;
    }
  }
  return rest.size();
}

Result<void> MultipartParser::Step(bool& progress) {
  const std::string_view rest = std::string_view(buf_).substr(pos_);
  switch (state_) {
    case State::kPreamble: {
      const size_t hit = rest.find(delimiter_);
      if (hit == std::string_view::npos) {
        pos_ += SafePrefix(rest);  // preamble is discarded
        return {};
      }
      pos_ += hit + delimiter_.size();
      state_ = State::kBoundaryEnd;
      progress = true;
      return {};
    }
    case State::kBoundaryEnd: {
      if (rest.size() < 2) {
        return {};
      }
      if (rest.starts_with("--")) {
        state_ = State::kEpilogue;
        pos_ = buf_.size();
        progress = true;
        return {};
      }
      size_t i = 0;
      while (i < rest.size() && IsSpace(rest[i])) {
        ++i;
      }
      if (i > kMaxBoundaryPadding) {
        return Fail(ErrorCode::kInvalidArgument, "malformed multipart boundary line");
      }
      if (i + 2 > rest.size()) {
        if (i == rest.size() || rest[i] == '\r') {
          return {};  // need more
        }
      } else if (rest[i] == '\r' && rest[i + 1] == '\n') {
        pos_ += i + 2;
        state_ = State::kHeaders;
        header_scanned_ = 0;
        progress = true;
        return {};
      }
      return Fail(ErrorCode::kInvalidArgument, "malformed multipart boundary line");
    }
    case State::kHeaders: {
      if (rest.size() < 2) {
        return {};
      }
      size_t section_end = 0;
      size_t skip = 2;  // an empty header section is just the blank line
      if (!rest.starts_with("\r\n")) {
        // Resume where the previous Feed stopped looking, so byte-wise input stays linear.
        section_end = rest.find("\r\n\r\n", header_scanned_ >= 3 ? header_scanned_ - 3 : 0);
        header_scanned_ = rest.size();
        skip = 4;
        if (section_end == std::string_view::npos) {
          if (rest.size() > kMaxHeaderBytes + 3) {
            return Fail(
                ErrorCode::kInvalidArgument,
                "multipart part headers exceed " + std::to_string(kMaxHeaderBytes) + " bytes");
          }
          return {};
        }
      }
      if (section_end > kMaxHeaderBytes) {
        return Fail(ErrorCode::kInvalidArgument,
                    "multipart part headers exceed " + std::to_string(kMaxHeaderBytes) + " bytes");
      }
      const std::string_view section = rest.substr(0, section_end);
      pos_ += section_end + skip;
      state_ = State::kBody;
      progress = true;
      return ParseHeaders(section);
    }
    case State::kBody: {
      const size_t hit = rest.find(delimiter_);
      const size_t data_end = hit == std::string_view::npos ? SafePrefix(rest) : hit;
      if (data_end > 0 && on_part_data) {
        if (auto r = on_part_data(rest.substr(0, data_end)); !r) {
          return r;
        }
      }
      pos_ += data_end;
      if (hit == std::string_view::npos) {
        return {};
      }
      pos_ += delimiter_.size();
      state_ = State::kBoundaryEnd;
      progress = true;
      if (on_part_end) {
        return on_part_end();
      }
      return {};
    }
    case State::kEpilogue:
    case State::kFailed:
      return {};
  }
  return {};
}

Result<void> MultipartParser::ParseHeaders(std::string_view section) {
  // Unfold obsolete continuation lines (RFC 5322 §2.2.3), then read "Name: value" lines.
  std::vector<std::string> lines;
  size_t i = 0;
  while (i < section.size()) {
    size_t eol = section.find("\r\n", i);
    if (eol == std::string_view::npos) {
      eol = section.size();
    }
    const std::string_view line = section.substr(i, eol - i);
    if (!line.empty() && IsSpace(line.front()) && !lines.empty()) {
      lines.back() += ' ';
      lines.back() += Trim(line);
    } else {
      lines.emplace_back(line);
    }
    i = eol + 2;
  }
  PartHeaders h;
  for (const std::string& line : lines) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      return Fail(ErrorCode::kInvalidArgument,
                  "malformed multipart part header '" + Excerpt(line) + "'");
    }
    const std::string name = Lower(Trim(std::string_view(line).substr(0, colon)));
    const std::string_view value = Trim(std::string_view(line).substr(colon + 1));
    if (name == "content-type") {
      h.content_type = std::string(value);
    } else if (name == "content-disposition") {
      std::optional<std::string> ext_filename;
      for (auto& [key, val] : ParseHeaderValue(value).params) {
        if (key == "name") {
          h.name = std::move(val);
        } else if (key == "filename") {
          h.filename = std::move(val);
          h.has_filename = true;
        } else if (key == "filename*") {
          ext_filename = DecodeExtValue(val);
        }
      }
      if (ext_filename) {
        h.filename = std::move(*ext_filename);
        h.has_filename = true;
      }
    }
  }
  if (on_part_begin) {
    return on_part_begin(h);
  }
  return {};
}

}  // namespace agentbox::guest
