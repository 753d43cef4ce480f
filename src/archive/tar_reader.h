#pragma once

// The reading half of the tar format (internal to the archive library): entries one by one from
// a Source, with pax and GNU long-name headers folded into the entry they describe.

#include <sys/types.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "archive/archive.h"
#include "archive/tar_format.h"

namespace agentbox::archive {

// Extended headers (pax, GNU long names) larger than this are refused.
inline constexpr size_t kMaxPaxBytes = 1u << 20;

struct Entry {
  char type = tar::kRegular;
  std::string name;
  std::string link;
  uint64_t size = 0;
  mode_t mode = 0644;
  uint64_t uid = 0;
  uint64_t gid = 0;
  int64_t mtime = 0;
};

// Reads tar entries from a Source. Not thread-safe.
class TarReader {
 public:
  explicit TarReader(Source src) : src_(std::move(src)), buf_(1u << 20) {}

  // The next entry, or false at the end-of-archive marker.
  Result<bool> Next(Entry& e) {
    if (auto s = SkipRest(); !s) {
      return Fail(s.error());
    }
    std::optional<std::string> long_name, long_link, pax_path, pax_link;
    std::optional<uint64_t> pax_size, pax_uid, pax_gid;
    std::optional<int64_t> pax_mtime;
    for (;;) {
      char h[tar::kBlock];
      auto got = ReadFull(h, sizeof(h));
      if (!got) {
        return Fail(got.error());
      }
      if (!*got) {
        return Fail(ErrorCode::kInvalidArgument,
                    "the archive ends without its end marker (truncated?)");
      }
      if (std::all_of(h, h + sizeof(h), [](char c) { return c == 0; })) {
        ended_ = true;
        return false;
      }
      if (!tar::ChecksumOk(h)) {
        return Fail(ErrorCode::kInvalidArgument, "not a tar archive (bad header checksum)");
      }
      auto size = tar::GetNumber(h, tar::kSize);
      if (!size) {
        return Fail(ErrorCode::kInvalidArgument, "malformed tar header (size)");
      }
      const char type = h[tar::kType.off];
      if (type == tar::kPaxLocal || type == tar::kPaxGlobal || type == tar::kGnuLongName ||
          type == tar::kGnuLongLink) {
        if (*size > kMaxPaxBytes) {
          return Fail(ErrorCode::kInvalidArgument,
                      "tar extended header of " + std::to_string(*size) + " bytes (limit 1 MiB)");
        }
        std::string data(*size, '\0');
        if (auto r = ReadData(data.data(), *size, *size); !r) {
          return Fail(r.error());
        }
        if (type == tar::kGnuLongName || type == tar::kGnuLongLink) {
          data.resize(strnlen(data.data(), data.size()));
          (type == tar::kGnuLongName ? long_name : long_link) = std::move(data);
        } else if (type == tar::kPaxLocal) {
          if (auto p = ParsePax(data, pax_path, pax_link, pax_size, pax_uid, pax_gid, pax_mtime);
              !p) {
            return Fail(p.error());
          }
        }
        continue;  // global headers carry nothing we keep
      }
      e = Entry{};
      e.type = type;
      std::string name = tar::GetString(h, tar::kName);
      if (std::memcmp(h + tar::kMagic.off, "ustar\0", 6) == 0) {
        const std::string prefix = tar::GetString(h, tar::kPrefix);
        if (!prefix.empty()) {
          name = prefix + "/" + name;
        }
      }
      e.name = pax_path ? *pax_path : long_name ? *long_name : name;
      e.link = pax_link ? *pax_link : long_link ? *long_link : tar::GetString(h, tar::kLinkname);
      e.size = pax_size ? *pax_size : *size;
      e.mode = static_cast<mode_t>(tar::GetNumber(h, tar::kMode).value_or(0644) & 07777);
      e.uid = pax_uid ? *pax_uid : tar::GetNumber(h, tar::kUid).value_or(0);
      e.gid = pax_gid ? *pax_gid : tar::GetNumber(h, tar::kGid).value_or(0);
      e.mtime =
          pax_mtime ? *pax_mtime : static_cast<int64_t>(tar::GetNumber(h, tar::kMtime).value_or(0));
      // Only regular files carry data; hard links and the like carry none, whatever they say.
      const bool has_data =
          e.type == tar::kRegular || e.type == tar::kRegularOld || e.type == tar::kContiguous;
      left_ = has_data ? e.size : 0;
      padded_ = has_data ? (e.size + tar::kBlock - 1) / tar::kBlock * tar::kBlock : 0;
      if (!has_data && e.type != tar::kHardLink && e.type != tar::kSymlink &&
          e.type != tar::kDirectory && *size > 0) {
        padded_ = (*size + tar::kBlock - 1) / tar::kBlock * tar::kBlock;  // skipped unread
      }
      return true;
    }
  }

  // Up to `n` bytes of the current entry's data; 0 at its end.
  Result<size_t> Read(char* out, size_t n) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(n, left_));
    if (want == 0) {
      return 0;
    }
    auto got = Take(out, want);
    if (!got) {
      return Fail(got.error());
    }
    if (*got == 0) {
      return Fail(ErrorCode::kInvalidArgument, "the archive ends inside an entry (truncated?)");
    }
    left_ -= *got;
    padded_ -= *got;
    return *got;
  }

  // Reads what follows the end marker, so the sender sees its whole body taken.
  Result<void> Drain() {
    char sink[65536];
    for (uint64_t total = 0; total < (64u << 20);) {
      auto n = Take(sink, sizeof(sink));
      if (!n) {
        return Fail(n.error());
      }
      if (*n == 0) {
        return {};
      }
      total += *n;
    }
    return {};
  }

 private:
  Result<size_t> Take(char* out, size_t n) {
    if (pos_ == len_) {
      auto got = src_(buf_.data(), buf_.size());
      if (!got) {
        return Fail(got.error());
      }
      pos_ = 0;
      len_ = *got;
      if (len_ == 0) {
        return 0;
      }
    }
    const size_t k = std::min(n, len_ - pos_);
    std::memcpy(out, buf_.data() + pos_, k);
    pos_ += k;
    return k;
  }

  // Fills `out` completely; false when the input ended before the first byte.
  Result<bool> ReadFull(char* out, size_t n) {
    size_t have = 0;
    while (have < n) {
      auto got = Take(out + have, n - have);
      if (!got) {
        return Fail(got.error());
      }
      if (*got == 0) {
        if (have == 0) {
          return false;
        }
        return Fail(ErrorCode::kInvalidArgument, "the archive ends inside a header (truncated?)");
      }
      have += *got;
    }
    return true;
  }

  Result<void> ReadData(char* out, uint64_t size, uint64_t) {
    if (auto r = ReadFull(out, size); !r || (!*r && size > 0)) {
      return Fail(r ? Error{ErrorCode::kInvalidArgument, "the archive ends early"} : r.error());
    }
    const uint64_t pad = (tar::kBlock - size % tar::kBlock) % tar::kBlock;
    char skip[tar::kBlock];
    if (pad > 0) {
      if (auto r = ReadFull(skip, pad); !r || !*r) {
        return Fail(r ? Error{ErrorCode::kInvalidArgument, "the archive ends early"} : r.error());
      }
    }
    return {};
  }

  // Skips the unread rest of the current entry and its padding.
  Result<void> SkipRest() {
    char skip[65536];
    while (padded_ > 0) {
      auto got = Take(skip, static_cast<size_t>(std::min<uint64_t>(padded_, sizeof(skip))));
      if (!got) {
        return Fail(got.error());
      }
      if (*got == 0) {
        return Fail(ErrorCode::kInvalidArgument, "the archive ends inside an entry (truncated?)");
      }
      padded_ -= *got;
    }
    left_ = 0;
    return {};
  }

  static Result<void> ParsePax(const std::string& data, std::optional<std::string>& path,
                               std::optional<std::string>& link, std::optional<uint64_t>& size,
                               std::optional<uint64_t>& uid, std::optional<uint64_t>& gid,
                               std::optional<int64_t>& mtime) {
    size_t pos = 0;
    while (pos < data.size()) {
      const size_t sp = data.find(' ', pos);
      if (sp == std::string::npos) {
        return Fail(ErrorCode::kInvalidArgument, "malformed pax header");
      }
      size_t len = 0;
      for (size_t i = pos; i < sp; ++i) {
        if (data[i] < '0' || data[i] > '9' || len > kMaxPaxBytes) {
          return Fail(ErrorCode::kInvalidArgument, "malformed pax header");
        }
        len = len * 10 + static_cast<size_t>(data[i] - '0');
      }
      if (len <= sp - pos + 1 || pos + len > data.size() || data[pos + len - 1] != '\n') {
        return Fail(ErrorCode::kInvalidArgument, "malformed pax header");
      }
      const std::string rec = data.substr(sp + 1, pos + len - 1 - (sp + 1));
      pos += len;
      const size_t eq = rec.find('=');
      if (eq == std::string::npos) {
        return Fail(ErrorCode::kInvalidArgument, "malformed pax header");
      }
      const std::string key = rec.substr(0, eq);
      const std::string value = rec.substr(eq + 1);
      auto number = [&value]() -> std::optional<uint64_t> {
        const std::string whole = value.substr(0, value.find('.'));
        if (whole.empty() || whole.size() > 19 ||
            whole.find_first_not_of("0123456789") != std::string::npos) {
          return std::nullopt;
        }
        return std::stoull(whole);
      };
      if (key == "path") {
        path = value;
      } else if (key == "linkpath") {
        link = value;
      } else if (key == "size" || key == "uid" || key == "gid" || key == "mtime") {
        auto v = number();
        if (!v) {
          if (key == "mtime") {
            continue;  // negative or odd times: keep the header's
          }
          return Fail(ErrorCode::kInvalidArgument, "malformed pax " + key + " '" + value + "'");
        }
        if (key == "size") {
          size = *v;
        } else if (key == "uid") {
          uid = *v;
        } else if (key == "gid") {
          gid = *v;
        } else {
          mtime = static_cast<int64_t>(*v);
        }
      }
    }
    return {};
  }

  Source src_;
  std::vector<char> buf_;
  size_t pos_ = 0;
  size_t len_ = 0;
  uint64_t left_ = 0;    // data bytes of the current entry not yet read
  uint64_t padded_ = 0;  // ... including its padding
  bool ended_ = false;
};

}  // namespace agentbox::archive
