#include "images/source.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "archive/tar_format.h"
#include "images/digest.h"

namespace agentbox::images {
namespace {

namespace tar = archive::tar;
constexpr size_t kMaxDocBytes = 4u << 20;  // manifests, indexes and configurations

Error Corrupt(const std::string& what, const std::string& why) {
  return Error(ErrorCode::kInvalidArgument, "corrupt image " + what + ": " + why);
}

// "./a//b/" -> "a/b"; ".." is kept (the lookup then fails: nothing is stored under it).
std::string Normalise(const std::string& name) {
  std::string out;
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string::npos) {
      j = name.size();
    }
    const std::string seg = name.substr(i, j - i);
    i = j + 1;
    if (seg.empty() || seg == ".") {
      continue;
    }
    out += (out.empty() ? "" : "/") + seg;
  }
  return out;
}

// The pax records "path" and "size", the two a member listing needs.
void ParsePax(const std::string& data, std::string& path, uint64_t& size, bool& has_size) {
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t sp = data.find(' ', pos);
    if (sp == std::string::npos) {
      return;
    }
    size_t len = 0;
    for (size_t i = pos; i < sp; ++i) {
      if (data[i] < '0' || data[i] > '9' || len > kMaxDocBytes) {
        return;
      }
      len = len * 10 + static_cast<size_t>(data[i] - '0');
    }
    if (len <= sp - pos + 1 || pos + len > data.size()) {
      return;
    }
    const std::string rec = data.substr(sp + 1, pos + len - 1 - (sp + 1));
    pos += len;
    const size_t eq = rec.find('=');
    if (eq == std::string::npos) {
      continue;
    }
    const std::string key = rec.substr(0, eq);
    const std::string value = rec.substr(eq + 1);
    if (key == "path") {
      path = value;
    } else if (key == "size" && !value.empty() && value.size() < 20 &&
               value.find_first_not_of("0123456789") == std::string::npos) {
      size = std::stoull(value);
      has_size = true;
    }
  }
}

Result<void> ReadExactly(const ReadAt& read_at, uint64_t off, char* buf, size_t n) {
  size_t have = 0;
  while (have < n) {
    auto got = read_at(off + have, buf + have, n - have);
    if (!got) {
      return Fail(got.error());
    }
    if (*got == 0) {
      return Fail(ErrorCode::kInvalidArgument, "the archive is truncated");
    }
    have += *got;
  }
  return {};
}

Result<size_t> PreadSome(int fd, uint64_t off, char* buf, size_t n) {
  for (;;) {
    const ssize_t got = ::pread(fd, buf, n, static_cast<off_t>(off));
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      return Fail(ErrnoError(errno, "read image archive"));
    }
    return static_cast<size_t>(got);
  }
}

}  // namespace

Result<std::map<std::string, TarMember>> ScanTar(const ReadAt& read_at, uint64_t size,
                                                 size_t max_members) {
  std::map<std::string, TarMember> out;
  uint64_t off = 0;
  std::string long_name, pax_path;
  uint64_t pax_size = 0;
  bool has_pax_size = false;
  for (;;) {
    if (off + tar::kBlock > size) {
      return Fail(ErrorCode::kInvalidArgument,
                  "the archive is truncated (it ends without its end-of-archive marker)");
    }
    char h[tar::kBlock];
    if (auto r = ReadExactly(read_at, off, h, sizeof(h)); !r) {
      return Fail(r.error());
    }
    if (std::all_of(h, h + sizeof(h), [](char c) { return c == 0; })) {
      return out;
    }
    if (!tar::ChecksumOk(h)) {
      return Fail(ErrorCode::kInvalidArgument, "not a tar archive (bad header checksum at byte " +
                                                   std::to_string(off) + ")");
    }
    auto field_size = tar::GetNumber(h, tar::kSize);
    if (!field_size || *field_size > size) {
      return Fail(ErrorCode::kInvalidArgument, "malformed tar header (size) at byte " +
                                                   std::to_string(off));
    }
    const char type = h[tar::kType.off];
    const uint64_t data_off = off + tar::kBlock;
    uint64_t data_size = *field_size;
    if (type == tar::kPaxLocal || type == tar::kPaxGlobal || type == tar::kGnuLongName) {
      if (data_size > (1u << 20) || data_off + data_size > size) {
        return Fail(ErrorCode::kInvalidArgument, "malformed tar extended header at byte " +
                                                     std::to_string(off));
      }
      std::string data(data_size, '\0');
      if (auto r = ReadExactly(read_at, data_off, data.data(), data.size()); !r) {
        return Fail(r.error());
      }
      if (type == tar::kGnuLongName) {
        long_name = data.substr(0, strnlen(data.data(), data.size()));
      } else if (type == tar::kPaxLocal) {
        ParsePax(data, pax_path, pax_size, has_pax_size);
      }
      off = data_off + (data_size + tar::kBlock - 1) / tar::kBlock * tar::kBlock;
      continue;
    }
    std::string name = tar::GetString(h, tar::kName);
    if (std::memcmp(h + tar::kMagic.off, "ustar", 5) == 0) {
      const std::string prefix = tar::GetString(h, tar::kPrefix);
      if (!prefix.empty()) {
        name = prefix + "/" + name;
      }
    }
    if (!pax_path.empty()) {
      name = pax_path;
    } else if (!long_name.empty()) {
      name = long_name;
    }
    if (has_pax_size) {
      data_size = pax_size;
    }
    pax_path.clear();
    long_name.clear();
    has_pax_size = false;
    const bool has_data =
        type == tar::kRegular || type == tar::kRegularOld || type == tar::kContiguous;
    if (!has_data && type != tar::kSymlink && type != tar::kHardLink) {
      data_size = type == tar::kDirectory ? 0 : data_size;
    }
    if (has_data && data_off + data_size > size) {
      return Fail(ErrorCode::kInvalidArgument,
                  "the archive is truncated (member '" + name.substr(0, 200) + "')");
    }
    if (has_data || type == tar::kSymlink || type == tar::kHardLink) {
      TarMember m;
      m.offset = data_off;
      m.size = has_data ? data_size : 0;
      if (!has_data) {
        m.link = tar::GetString(h, tar::kLinkname);
        m.symlink = type == tar::kSymlink;
      }
      if (out.size() >= max_members) {
        return Fail(ErrorCode::kTooLarge, "the archive has too many members");
      }
      out[Normalise(name)] = m;
    }
    const uint64_t skip = has_data || (type != tar::kSymlink && type != tar::kHardLink &&
                                       type != tar::kDirectory)
                              ? data_size
                              : 0;
    off = data_off + (skip + tar::kBlock - 1) / tar::kBlock * tar::kBlock;
  }
}

Result<std::unique_ptr<TarFileSource>> TarFileSource::OpenFile(const std::string& path) {
  auto fd = std::make_shared<UniqueFd>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!*fd) {
    return Fail(ErrnoError(errno, "open image archive " + path));
  }
  struct stat st {};
  if (::fstat(fd->Get(), &st) != 0) {
    return Fail(ErrnoError(errno, "stat image archive " + path));
  }
  const int raw = fd->Get();
  auto members = ScanTar([raw](uint64_t off, char* buf,
                               size_t n) { return PreadSome(raw, off, buf, n); },
                         static_cast<uint64_t>(st.st_size));
  if (!members) {
    return Fail(Corrupt(path, members.error().message));
  }
  return std::unique_ptr<TarFileSource>(new TarFileSource(std::move(fd), std::move(*members)));
}

Result<TarMember> TarFileSource::Find(const std::string& path_in) const {
  std::string path = Normalise(path_in);
  for (int hops = 0; hops < 8; ++hops) {
    auto it = members_.find(path);
    if (it == members_.end()) {
      return Fail(ErrorCode::kNotFound, "the archive has no member '" + path.substr(0, 200) + "'");
    }
    if (it->second.link.empty()) {
      return it->second;
    }
    if (it->second.symlink) {
      if (it->second.link[0] == '/') {
        break;
      }
      const size_t slash = path.rfind('/');
      std::string joined =
          (slash == std::string::npos ? "" : path.substr(0, slash + 1)) + it->second.link;
      // Fold "dir/../x" (docker save writes "../<id>/layer.tar").
      std::vector<std::string> parts;
      for (const auto& seg : [&] {
             std::vector<std::string> v;
             size_t i = 0;
             while (i <= joined.size()) {
               size_t j = joined.find('/', i);
               if (j == std::string::npos) {
                 j = joined.size();
               }
               v.push_back(joined.substr(i, j - i));
               i = j + 1;
             }
             return v;
           }()) {
        if (seg.empty() || seg == ".") {
          continue;
        }
        if (seg == "..") {
          if (parts.empty()) {
            return Fail(ErrorCode::kInvalidArgument,
                        "corrupt image: member '" + path + "' links outside the archive");
          }
          parts.pop_back();
        } else {
          parts.push_back(seg);
        }
      }
      path.clear();
      for (const auto& p : parts) {
        path += (path.empty() ? "" : "/") + p;
      }
    } else {
      path = Normalise(it->second.link);
    }
  }
  return Fail(ErrorCode::kInvalidArgument,
              "corrupt image: member '" + path_in.substr(0, 200) + "' is a link loop");
}

bool TarFileSource::Exists(const std::string& path) { return Find(path).has_value(); }

Result<std::string> TarFileSource::ReadSmall(const std::string& path, size_t max_bytes) {
  auto m = Find(path);
  if (!m) {
    return Fail(m.error());
  }
  if (m->size > max_bytes) {
    return Fail(ErrorCode::kTooLarge, "'" + path + "' in the image is over " +
                                          std::to_string(max_bytes) + " bytes");
  }
  std::string out(m->size, '\0');
  const int fd = fd_->Get();
  if (auto r = ReadExactly([fd](uint64_t off, char* b,
                                size_t n) { return PreadSome(fd, off, b, n); },
                           m->offset, out.data(), out.size());
      !r) {
    return Fail(r.error());
  }
  return out;
}

Result<archive::Source> TarFileSource::Open(const std::string& path) {
  auto m = Find(path);
  if (!m) {
    return Fail(m.error());
  }
  struct Cursor {
    std::shared_ptr<UniqueFd> fd;
    uint64_t off, end;
  };
  auto c = std::make_shared<Cursor>(Cursor{fd_, m->offset, m->offset + m->size});
  return archive::Source([c](char* buf, size_t n) -> Result<size_t> {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(n, c->end - c->off));
    if (want == 0) {
      return 0;
    }
    auto got = PreadSome(c->fd->Get(), c->off, buf, want);
    if (got && *got == 0) {
      return Fail(ErrorCode::kInvalidArgument, "the image archive is truncated");
    }
    if (got) {
      c->off += *got;
    }
    return got;
  });
}

Result<std::unique_ptr<DirSource>> DirSource::OpenDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    return Fail(ErrnoError(errno, "open image layout " + dir));
  }
  return std::unique_ptr<DirSource>(new DirSource(std::move(fd)));
}

Result<UniqueFd> DirSource::OpenFile(const std::string& path) {
  struct open_how how {};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, dir_.Get(), path.c_str(), &how, sizeof(how))));
  if (!fd) {
    if (errno == ENOENT) {
      return Fail(ErrorCode::kNotFound, "the image layout has no '" + path.substr(0, 200) + "'");
    }
    return Fail(ErrnoError(errno, "open '" + path.substr(0, 200) + "' in the image layout"));
  }
  struct stat st {};
  if (::fstat(fd.Get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument,
                "corrupt image: '" + path.substr(0, 200) + "' in the layout is not a file");
  }
  return fd;
}

bool DirSource::Exists(const std::string& path) { return OpenFile(path).has_value(); }

Result<std::string> DirSource::ReadSmall(const std::string& path, size_t max_bytes) {
  auto fd = OpenFile(path);
  if (!fd) {
    return Fail(fd.error());
  }
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd->Get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError(errno, "read " + path));
    }
    if (n == 0) {
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      return Fail(ErrorCode::kTooLarge, "'" + path + "' in the image is over " +
                                            std::to_string(max_bytes) + " bytes");
    }
  }
}

Result<archive::Source> DirSource::Open(const std::string& path) {
  auto fd = OpenFile(path);
  if (!fd) {
    return Fail(fd.error());
  }
  auto shared = std::make_shared<UniqueFd>(std::move(*fd));
  return archive::Source([shared](char* buf, size_t n) -> Result<size_t> {
    for (;;) {
      const ssize_t got = ::read(shared->Get(), buf, n);
      if (got < 0 && errno == EINTR) {
        continue;
      }
      if (got < 0) {
        return Fail(ErrnoError(errno, "read image layer"));
      }
      return static_cast<size_t>(got);
    }
  });
}

namespace {

const char* HostArch() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#else
  return "";
#endif
}

// Picks the one manifest of an index for this platform.
Result<Descriptor> PickManifest(const std::vector<Descriptor>& all, const std::string& what) {
  std::vector<Descriptor> fit;
  for (const auto& d : all) {
    if (d.media_type.find("attestation") != std::string::npos) {
      continue;
    }
    if (d.os.empty() || (d.os == "linux" && d.architecture == HostArch())) {
      fit.push_back(d);
    }
  }
  if (fit.size() == 1) {
    return fit[0];
  }
  if (fit.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                what + " has no image for linux/" + HostArch());
  }
  std::string names;
  for (const auto& d : fit) {
    names += (names.empty() ? "" : ", ") + (d.ref_name.empty() ? d.digest : d.ref_name);
  }
  return Fail(ErrorCode::kInvalidArgument,
              what + " holds several images (" + names + "); give it one image only");
}

}  // namespace

Result<LoadedImage> LoadImage(BlobSource& source, const std::string& what) {
  ManifestEntry entry;
  if (source.Exists("manifest.json")) {
    auto text = source.ReadSmall("manifest.json", kMaxDocBytes);
    if (!text) {
      return Fail(text.error());
    }
    auto all = ParseDockerSaveManifest(*text);
    if (!all) {
      return Fail(all.error());
    }
    if (all->size() != 1) {
      std::string names;
      for (const auto& e : *all) {
        names += (names.empty() ? "" : ", ") + (e.tags.empty() ? e.config_blob : e.tags[0]);
      }
      return Fail(ErrorCode::kInvalidArgument,
                  what + " holds several images (" + names + "); give it one image only");
    }
    entry = std::move((*all)[0]);
  } else if (source.Exists("index.json")) {
    auto text = source.ReadSmall("index.json", kMaxDocBytes);
    if (!text) {
      return Fail(text.error());
    }
    auto index = ParseOciIndex(*text);
    if (!index) {
      return Fail(index.error());
    }
    std::vector<Descriptor> descs = *index;
    for (int depth = 0;; ++depth) {
      auto pick = PickManifest(descs, what);
      if (!pick) {
        return Fail(pick.error());
      }
      auto path = BlobPath(pick->digest);
      auto doc = source.ReadSmall(*path, kMaxDocBytes);
      if (!doc) {
        return Fail(doc.error().code == ErrorCode::kNotFound
                        ? Corrupt(what, "its manifest " + pick->digest + " is missing")
                        : doc.error());
      }
      if (Sha256Digest(*doc) != pick->digest) {
        return Fail(Corrupt(what, "its manifest does not match its digest " + pick->digest));
      }
      if (pick->media_type == kOciIndexType || pick->media_type == kDockerListType) {
        if (depth > 0) {
          return Fail(Corrupt(what, "has image indexes nested too deep"));
        }
        auto nested = ParseOciIndex(*doc);
        if (!nested) {
          return Fail(nested.error());
        }
        descs = *nested;
        continue;
      }
      auto m = ParseOciManifest(*doc);
      if (!m) {
        return Fail(m.error());
      }
      entry = std::move(*m);
      if (!pick->ref_name.empty()) {
        entry.tags.push_back(pick->ref_name);
      }
      break;
    }
  } else {
    return Fail(Corrupt(what, "it has neither manifest.json nor index.json"));
  }

  auto config_text = source.ReadSmall(entry.config_blob, kMaxDocBytes);
  if (!config_text) {
    return Fail(config_text.error().code == ErrorCode::kNotFound
                    ? Corrupt(what, "its configuration " + entry.config_blob + " is missing")
                    : config_text.error());
  }
  LoadedImage out;
  out.id = Sha256Digest(*config_text);
  if (!entry.config_digest.empty() && entry.config_digest != out.id) {
    return Fail(Corrupt(what, "its configuration does not match its digest " +
                                  entry.config_digest));
  }
  auto config = ParseImageConfig(*config_text);
  if (!config) {
    return Fail(config.error());
  }
  if (config->diff_ids.size() != entry.layer_blobs.size()) {
    return Fail(Corrupt(what, "its manifest lists " + std::to_string(entry.layer_blobs.size()) +
                                  " layers and its configuration " +
                                  std::to_string(config->diff_ids.size())));
  }
  if (!config->os.empty() && config->os != "linux") {
    return Fail(ErrorCode::kInvalidArgument,
                what + " is an image for " + config->os + ", not linux");
  }
  for (size_t i = 0; i < entry.layer_blobs.size(); ++i) {
    out.layers.push_back({entry.layer_blobs[i], entry.layer_digests[i], config->diff_ids[i]});
  }
  out.config = std::move(*config);
  out.config_json = std::move(*config_text);
  out.tags = entry.tags;
  return out;
}

}  // namespace agentbox::images
