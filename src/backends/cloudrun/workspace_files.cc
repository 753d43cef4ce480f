#include "backends/cloudrun/workspace_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "backends/cloudrun/layout.h"
#include "common/fs_util.h"

namespace agentbox::cloudrun {
namespace {

using FileOp = Result<Json> (*)(const Json&, const guest::FileConfig&);

// A per-request scratch directory, removed with everything in it.
class Scratch {
 public:
  static Result<Scratch> Make(const std::string& root) {
    if (::mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) {
      return Fail(ErrnoError(errno, "create " + root));
    }
    std::string tmpl = root + "/op-XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      return Fail(ErrnoError(errno, "create scratch directory in " + root));
    }
    Scratch s;
    s.dir_ = tmpl;
    if (::mkdir((s.dir_ + layout::kWorkspace).c_str(), 0755) != 0) {
      return Fail(ErrnoError(errno, "create " + s.dir_ + layout::kWorkspace));
    }
    return s;
  }
  Scratch() = default;
  Scratch(Scratch&& o) noexcept : dir_(std::move(o.dir_)) { o.dir_.clear(); }
  ~Scratch() {
    if (!dir_.empty()) {
      (void)RemoveTree(dir_);
    }
  }
  const std::string& dir() const { return dir_; }
  std::string Local(const std::string& rel) const {
    return dir_ + layout::kWorkspace + (rel.empty() ? "" : "/" + rel);
  }

 private:
  std::string dir_;
};

Result<void> MakeDirs(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos == path.size() || path[pos] == '/') {
      const std::string p = path.substr(0, pos);
      if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) {
        return Fail(ErrnoError(errno, "create " + p));
      }
    }
  }
  return {};
}

std::string Parent(const std::string& p) { return p.substr(0, p.rfind('/')); }

// RFC 3339 ("2026-12-04T23:57:18.123Z") -> unix seconds; 0 when it does not parse.
time_t ParseRfc3339(const std::string& s) {
  std::tm tm{};
  if (!strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) {
    return 0;
  }
  return timegm(&tm);
}

// An empty file that looks like the object (size, time) without its bytes.
Result<void> SparseFile(const std::string& path, const gcp::ObjectMeta& m) {
  if (auto r = MakeDirs(Parent(path)); !r) {
    return r;
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd || ::ftruncate(fd.Get(), static_cast<off_t>(m.size)) != 0) {
    return Fail(ErrnoError(errno, "create " + path));
  }
  if (time_t t = ParseRfc3339(m.updated); t > 0) {
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    ::futimens(fd.Get(), ts);
  }
  return {};
}

// Replaces the scratch directory in every string of `j` (answers name /workspace paths).
void Unscratch(Json& j, const std::string& dir) {
  if (j.is_string()) {
    std::string s = j.get<std::string>();
    for (size_t pos = s.find(dir); pos != std::string::npos; pos = s.find(dir, pos)) {
      s.erase(pos, dir.size());
    }
    j = s;
  } else if (j.is_array() || j.is_object()) {
    for (auto& v : j) {
      Unscratch(v, dir);
    }
  }
}

template <class T>
Result<T> Unscratch(Result<T> r, const std::string& dir) {
  if (r) {
    if constexpr (std::is_same_v<T, Json>) {
      Unscratch(*r, dir);
    }
    return r;
  }
  Error e = r.error();
  for (size_t pos = e.message.find(dir); pos != std::string::npos; pos = e.message.find(dir, pos)) {
    e.message.erase(pos, dir.size());
  }
  return Fail(e);
}

enum class Kind { kAbsent, kFile, kDirectory };
struct Entry {
  Kind kind = Kind::kAbsent;
  int64_t generation = 0;  // of a file
  int64_t size = 0;
};

FileOp Lookup(const std::string& op) {
  if (op == "read") return &guest::FileRead;
  if (op == "write") return &guest::FileWrite;
  if (op == "exists") return &guest::FileExists;
  if (op == "delete") return &guest::FileDelete;
  if (op == "list") return &guest::FileList;
  if (op == "replace") return &guest::FileReplace;
  if (op == "search") return &guest::FileSearch;
  if (op == "find") return &guest::FileFind;
  return nullptr;
}

class Materialiser {
 public:
  Materialiser(ObjectStore& store, const std::string& prefix, const Scratch& s, uint64_t max_bytes)
      : store_(store), prefix_(prefix), s_(s), max_bytes_(max_bytes) {}

  std::string Object(const std::string& rel) const { return prefix_ + rel; }

  // What `rel` is; with `bytes`, a file's content is downloaded (else a sparse stand-in).
  // `emptiness`: for a directory, also find out whether it has children (delete needs it).
  // One Storage call in the common cases (a file's download; a listing of the name).
  Result<Entry> One(const std::string& rel, bool bytes, bool emptiness = false) {
    const std::string local = s_.Local(rel);
    if (rel.empty()) {
      return Entry{Kind::kDirectory};
    }
    if (auto r = MakeDirs(Parent(local)); !r) {
      return Fail(r.error());
    }
    if (bytes) {
      auto meta = store_.ReadToFile(Object(rel), local, max_bytes_);
      if (meta) {
        return Entry{Kind::kFile, meta->generation, meta->size};
      }
      if (meta.error().code == ErrorCode::kTooLarge) {
        // Larger than any operation loads: the guest's code refuses it by its size.
        auto st = store_.Stat(Object(rel));
        if (!st) {
          return Fail(st.error());
        }
        if (auto r = SparseFile(local, *st); !r) {
          return Fail(r.error());
        }
        return Entry{Kind::kFile, st->generation, st->size};
      }
      if (meta.error().code != ErrorCode::kNotFound) {
        return Fail(meta.error());
      }
      ::unlink(local.c_str());
    }
    // The name itself sorts first among the names it prefixes; "rel/" marks a directory.
    gcp::ListOptions o;
    o.prefix = Object(rel);
    o.delimiter = "/";
    o.max_results = 1000;
    auto page = store_.List(o);
    if (!page) {
      return Fail(page.error());
    }
    const std::string dir = Object(rel) + "/";
    bool is_dir =
        std::find(page->prefixes.begin(), page->prefixes.end(), dir) != page->prefixes.end();
    if (!bytes) {
      for (const auto& it : page->items) {
        if (it.name == Object(rel)) {
          if (auto r = SparseFile(local, it); !r) {
            return Fail(r.error());
          }
          return Entry{Kind::kFile, it.generation, it.size};
        }
      }
    }
    if (!is_dir && !page->next_page_token.empty()) {
      gcp::ListOptions d;
      d.prefix = dir;
      d.max_results = 1;
      auto more = store_.List(d);
      if (!more) {
        return Fail(more.error());
      }
      is_dir = !more->items.empty() || !more->prefixes.empty();
    }
    if (!is_dir) {
      return Entry{};
    }
    if (auto r = MakeDirs(local); !r) {
      return Fail(r.error());
    }
    if (emptiness) {
      gcp::ListOptions d;
      d.prefix = dir;
      d.max_results = 2;
      auto children = store_.List(d);
      if (!children) {
        return Fail(children.error());
      }
      bool any = !children->prefixes.empty();
      for (const auto& it : children->items) {
        any = any || it.name != dir;  // "dir/" itself is a directory placeholder
      }
      if (any) {
        // Stands for the directory's content, so that "not empty" is answered as on a disk.
        (void)SparseFile(local + "/.agentbox-children", {});
      }
    }
    return Entry{Kind::kDirectory};
  }

  // The tree under `rel` as sparse files (at most `limit` entries).
  Result<Entry> Tree(const std::string& rel, bool recursive, size_t limit) {
    const std::string base = rel.empty() ? prefix_ : Object(rel) + "/";
    auto all = ListAll(store_, base, recursive ? "" : "/", limit);
    if (!all) {
      return Fail(all.error());
    }
    const std::string local = s_.Local(rel);
    if (all->items.empty() && all->prefixes.empty() && !rel.empty()) {
      return One(rel, false);
    }
    if (auto r = MakeDirs(local); !r) {
      return Fail(r.error());
    }
    for (const auto& p : all->prefixes) {
      if (auto r = MakeDirs(local + "/" + p.substr(base.size())); !r) {
        return Fail(r.error());
      }
    }
    for (const auto& it : all->items) {
      std::string sub = it.name.substr(base.size());
      if (sub.empty()) {
        continue;
      }
      if (sub.back() == '/') {
        if (auto r = MakeDirs(local + "/" + sub); !r) {
          return Fail(r.error());
        }
        continue;
      }
      if (auto r = SparseFile(local + "/" + sub, it); !r) {
        return Fail(r.error());
      }
    }
    return Entry{Kind::kDirectory};
  }

 private:
  ObjectStore& store_;
  std::string prefix_;
  const Scratch& s_;
  uint64_t max_bytes_;
};

}  // namespace

WorkspaceFiles::WorkspaceFiles(std::shared_ptr<ObjectStore> store, std::string scratch_root,
                               guest::FileConfig limits)
    : store_(std::move(store)),
      scratch_root_(std::move(scratch_root)),
      limits_(std::move(limits)) {}

Result<std::string> WorkspaceFiles::Relative(const std::string& path) {
  guest::FileConfig cfg;
  cfg.base_dir = layout::kWorkspace;
  auto resolved = guest::ResolvePath(path, cfg);
  if (!resolved) {
    return Fail(resolved.error());
  }
  const std::string ws = layout::kWorkspace;
  if (*resolved == ws) {
    return std::string();
  }
  if (!resolved->starts_with(ws + "/")) {
    return Fail(ErrorCode::kInvalidArgument,
                "cloudrun job mode keeps files only under /workspace (a Cloud Storage volume); '" +
                    *resolved +
                    "' is outside it and exists only while a command runs: reach it with a "
                    "command (shell/exec), or use the docker or jail backend");
  }
  return resolved->substr(ws.size() + 1);
}

Result<void> WorkspaceFiles::CheckRoom(const std::string& sandbox_id, const std::string& rel,
                                       uint64_t new_size, std::optional<uint64_t> disk_bytes) {
  if (!disk_bytes) {
    return {};
  }
  const std::string prefix = layout::WorkspacePrefix(sandbox_id);
  auto all = ListAll(*store_, prefix, "");
  if (!all) {
    return Fail(all.error());
  }
  uint64_t used = 0;
  for (const auto& o : all->items) {
    if (o.name != prefix + rel) {  // the object being replaced does not count
      used += static_cast<uint64_t>(std::max<int64_t>(o.size, 0));
    }
  }
  if (used + new_size <= *disk_bytes) {
    return {};
  }
  return Fail(Error(ErrorCode::kTooLarge,
                    "write '/workspace/" + rel + "': No space left on device (limits.disk_bytes " +
                        std::to_string(*disk_bytes) + ": /workspace holds " + std::to_string(used) +
                        " bytes besides it, and it would be " + std::to_string(new_size) +
                        "); nothing was written",
                    ENOSPC));
}

Result<Json> WorkspaceFiles::Op(const std::string& op, const std::string& sandbox_id,
                                const Json& req, std::optional<uint64_t> disk_bytes) {
  FileOp fn = Lookup(op);
  if (!fn) {
    return Fail(ErrorCode::kNotFound, "no such endpoint: POST /api/v1/file/" + op);
  }
  auto scratch = Scratch::Make(scratch_root_);
  if (!scratch) {
    return Fail(scratch.error());
  }
  const Scratch& s = *scratch;
  guest::FileConfig cfg = limits_;
  cfg.base_dir = s.Local("");
  cfg.upload_tmp_dir = s.dir();
  const bool file_field = op == "read" || op == "write" || op == "replace" || op == "search";
  const char* field = file_field ? "file" : "path";
  auto it = req.find(field);
  if (it == req.end() || !it->is_string()) {
    return Unscratch(fn(req, cfg), s.dir());  // the guest's own validation error
  }
  auto rel = Relative(it->get<std::string>());
  if (!rel) {
    return Fail(rel.error());
  }
  Materialiser m(*store_, layout::WorkspacePrefix(sandbox_id), s, limits_.max_file_bytes);
  Json local_req = req;
  local_req[field] = s.Local(*rel);
  const bool recursive = ValueOr(req, "recursive", false) == true;
  Result<Entry> entry = Entry{};
  if (op == "read" || op == "search" || op == "replace") {
    entry = m.One(*rel, true);
  } else if (op == "write") {
    entry = m.One(*rel, ValueOr(req, "append", false) == true);
  } else if (op == "exists" || op == "delete") {
    entry = m.One(*rel, false, op == "delete");
  } else if (op == "list") {
    entry = m.Tree(*rel, recursive, limits_.max_entries + 1);
  } else if (op == "find") {
    entry = m.Tree(*rel, true, limits_.max_entries + 1);
  }
  if (!entry) {
    return Fail(entry.error());
  }
  auto r = Unscratch(fn(local_req, cfg), s.dir());
  if (!r) {
    return r;
  }
  const std::string object = m.Object(*rel);
  if (op == "write" || (op == "replace" && ValueOr(*r, "replaced_count", 0) > 0)) {
    std::optional<int64_t> precondition;
    if (op == "replace" || ValueOr(req, "append", false) == true) {
      precondition = entry->kind == Kind::kFile ? entry->generation : 0;
    }
    struct stat st {};
    if (::stat(s.Local(*rel).c_str(), &st) != 0) {
      return Fail(ErrnoError(errno, "stat " + s.Local(*rel)));
    }
    if (auto room = CheckRoom(sandbox_id, *rel, static_cast<uint64_t>(st.st_size), disk_bytes);
        !room) {
      return Fail(room.error());
    }
    auto up = store_->UploadFile(object, s.Local(*rel), precondition);
    if (!up) {
      if (up.error().code == ErrorCode::kConflict) {
        return Fail(ErrorCode::kConflict, "'/workspace/" + *rel + "' changed while it was being " +
                                              (op == "write" ? "appended to" : "replaced") +
                                              "; nothing was written, try again");
      }
      return Fail(up.error());
    }
  } else if (op == "delete") {
    if (entry->kind == Kind::kFile) {
      if (auto d = store_->Delete(object); !d && d.error().code != ErrorCode::kNotFound) {
        return Fail(d.error());
      }
    } else if (entry->kind == Kind::kDirectory) {
      auto d =
          store_->DeletePrefix(rel->empty() ? layout::WorkspacePrefix(sandbox_id) : object + "/");
      if (!d) {
        return Fail(d.error());
      }
    }
  }
  return r;
}

Result<guest::DownloadFile> WorkspaceFiles::Download(const std::string& sandbox_id,
                                                     const std::string& path) {
  auto rel = Relative(path);
  if (!rel) {
    return Fail(rel.error());
  }
  auto scratch = Scratch::Make(scratch_root_);
  if (!scratch) {
    return Fail(scratch.error());
  }
  guest::FileConfig cfg = limits_;
  cfg.base_dir = scratch->Local("");
  Materialiser m(*store_, layout::WorkspacePrefix(sandbox_id), *scratch, UINT64_MAX);
  if (auto e = m.One(*rel, true); !e) {
    return Fail(e.error());
  }
  // The open descriptor outlives the scratch directory's removal.
  return Unscratch(guest::OpenForDownload(scratch->Local(*rel), cfg), scratch->dir());
}

Result<Json> WorkspaceFiles::Store(const std::string& sandbox_id, const std::string& path,
                                   const std::string& local_file, uint64_t size,
                                   std::optional<uint64_t> disk_bytes) {
  auto rel = Relative(path);
  if (!rel) {
    return Fail(rel.error());
  }
  if (rel->empty()) {
    return Fail(ErrorCode::kInvalidArgument, "'/workspace' is a directory");
  }
  if (auto room = CheckRoom(sandbox_id, *rel, size, disk_bytes); !room) {
    return Fail(room.error());
  }
  auto up = store_->UploadFile(layout::WorkspacePrefix(sandbox_id) + *rel, local_file);
  if (!up) {
    return Fail(up.error());
  }
  return Json{{"file_path", std::string(layout::kWorkspace) + "/" + *rel},
              {"file_size", size},
              {"success", true}};
}

}  // namespace agentbox::cloudrun
