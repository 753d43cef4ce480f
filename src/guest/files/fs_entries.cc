#include "guest/files/fs_entries.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace agentbox::guest {

namespace {

// uid -> name from a passwd/group file (a static guest has no NSS); the number when unknown.
std::string NameOf(unsigned id, const char* file) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string name;
    std::string pw;
    std::string num;
    if (std::getline(ss, name, ':') && std::getline(ss, pw, ':') && std::getline(ss, num, ':') &&
        num == std::to_string(id)) {
      return name;
    }
  }
  return std::to_string(id);
}

std::string Permissions(mode_t m) {
  std::string s = S_ISDIR(m) ? "d" : S_ISLNK(m) ? "l" : "-";
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    s += (m & (1u << (8 - i))) ? rwx[i] : '-';
  }
  return s;
}

std::string Resolve(const std::string& path, const FileConfig& cfg) {
  if (path.starts_with("/")) {
    return path;
  }
  return (cfg.base_dir == "/" ? "" : cfg.base_dir) + "/" + path;
}

std::string Normalize(std::string p) {
  while (p.size() > 1 && p.back() == '/') {
    p.pop_back();
  }
  return p;
}

Result<Json> Entry(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return Fail(ErrnoError(errno, path));
  }
  const size_t slash = path.find_last_of('/');
  Json e = {{"name", slash == std::string::npos ? path : path.substr(slash + 1)},
            {"path", path},
            {"type", S_ISREG(st.st_mode)   ? "file"
                     : S_ISDIR(st.st_mode) ? "directory"
                     : S_ISLNK(st.st_mode) ? "symlink"
                                           : "other"},
            {"size", static_cast<int64_t>(st.st_size)},
            {"mode", st.st_mode & 07777},
            {"permissions", Permissions(st.st_mode)},
            {"owner", NameOf(st.st_uid, "/etc/passwd")},
            {"group", NameOf(st.st_gid, "/etc/group")},
            {"mtime", static_cast<double>(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec / 1e9}};
  if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    const ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
    if (n >= 0) {
      e["symlink_target"] = std::string(buf, static_cast<size_t>(n));
    }
  }
  return e;
}

Result<std::string> PathField(const Json& req, const char* key, const FileConfig& cfg) {
  auto p = JsonFields(req).NonEmptyString(key);
  if (!p) {
    return Fail(p.error());
  }
  if (p->find('\0') != std::string::npos) {
    return Fail(FieldError(key, "must not contain NUL bytes"));
  }
  return Normalize(Resolve(*p, cfg));
}

// uid and gid of a user in /etc/passwd.
Result<std::pair<uid_t, gid_t>> Owner(const std::string& name) {
  std::ifstream in("/etc/passwd");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string part;
    while (std::getline(ss, part, ':')) {
      f.push_back(part);
    }
    if (f.size() >= 4 && f[0] == name) {
      return std::make_pair(static_cast<uid_t>(std::strtoul(f[2].c_str(), nullptr, 10)),
                            static_cast<gid_t>(std::strtoul(f[3].c_str(), nullptr, 10)));
    }
  }
  return Fail(ErrorCode::kNotFound, "user '" + name + "' does not exist in the sandbox");
}

// The owner field: nullopt when absent.
Result<std::optional<std::pair<uid_t, gid_t>>> OwnerField(const Json& req) {
  auto name = JsonFields(req).OptString("owner");
  if (!name) {
    return Fail(name.error());
  }
  if (!*name || (*name)->empty()) {
    return std::optional<std::pair<uid_t, gid_t>>();
  }
  auto ids = Owner(**name);
  if (!ids) {
    return std::optional<std::pair<uid_t, gid_t>>();  // no such account: ownership stays
  }
  return std::optional<std::pair<uid_t, gid_t>>(*ids);
}

}  // namespace

Result<Json> FsStat(const Json& req, const FileConfig& cfg) {
  auto path = PathField(req, "path", cfg);
  if (!path) {
    return Fail(path.error());
  }
  auto e = Entry(*path);
  if (!e) {
    return Fail(e.error());
  }
  return Json{{"entry", std::move(*e)}};
}

Result<Json> FsList(const Json& req, const FileConfig& cfg) {
  auto path = PathField(req, "path", cfg);
  auto depth = JsonFields(req).OptInt("depth", 1, 64);
  if (!path) {
    return Fail(path.error());
  }
  if (!depth) {
    return Fail(depth.error());
  }
  struct stat st {};
  if (::stat(path->c_str(), &st) != 0) {
    return Fail(ErrnoError(errno, *path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument, *path + " is not a directory");
  }
  Json entries = Json::array();
  // Breadth-first down to `depth` levels; symlinked directories are listed, not entered.
  std::vector<std::pair<std::string, int64_t>> todo = {{*path, 1}};
  while (!todo.empty()) {
    auto [dir, level] = todo.back();
    todo.pop_back();
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
      if (dir == *path) {
        return Fail(ErrnoError(errno, dir));
      }
      continue;  // an unreadable subdirectory is listed but not entered
    }
    std::vector<std::string> names;
    while (dirent* de = ::readdir(d)) {
      const std::string n = de->d_name;
      if (n != "." && n != "..") {
        names.push_back(n);
      }
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      const std::string child = (dir == "/" ? "" : dir) + "/" + n;
      auto e = Entry(child);
      if (!e) {
        continue;  // removed meanwhile
      }
      if ((*e)["type"] == "directory" && level < depth->value_or(1)) {
        todo.emplace_back(child, level + 1);
      }
      entries.push_back(std::move(*e));
      if (entries.size() >= cfg.max_entries) {
        return Json{{"entries", std::move(entries)}, {"truncated", true}};
      }
    }
  }
  return Json{{"entries", std::move(entries)}, {"truncated", false}};
}

Result<Json> FsMakeDir(const Json& req, const FileConfig& cfg) {
  auto path = PathField(req, "path", cfg);
  auto owner = OwnerField(req);
  if (!path) {
    return Fail(path.error());
  }
  if (!owner) {
    return Fail(owner.error());
  }
  struct stat st {};
  if (::stat(path->c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      return Fail(ErrorCode::kConflict, *path + " exists and is not a directory");
    }
    auto e = Entry(*path);
    if (!e) {
      return Fail(e.error());
    }
    return Json{{"entry", std::move(*e)}, {"created", false}};
  }
  size_t pos = 1;
  while (pos <= path->size()) {
    size_t slash = path->find('/', pos);
    if (slash == std::string::npos) {
      slash = path->size();
    }
    const std::string prefix = path->substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) == 0) {
      if (*owner && ::chown(prefix.c_str(), (*owner)->first, (*owner)->second) != 0) {
        return Fail(ErrnoError(errno, "chown " + prefix));
      }
    } else if (errno != EEXIST) {
      return Fail(ErrnoError(errno, "mkdir " + prefix));
    }
    pos = slash + 1;
  }
  auto e = Entry(*path);
  if (!e) {
    return Fail(e.error());
  }
  return Json{{"entry", std::move(*e)}, {"created", true}};
}

Result<Json> FsChown(const Json& req, const FileConfig& cfg) {
  auto path = PathField(req, "path", cfg);
  auto owner = OwnerField(req);
  if (!path) {
    return Fail(path.error());
  }
  if (!owner) {
    return Fail(owner.error());
  }
  if (*owner && ::lchown(path->c_str(), (*owner)->first, (*owner)->second) != 0) {
    return Fail(ErrnoError(errno, "chown " + *path));
  }
  auto e = Entry(*path);
  if (!e) {
    return Fail(e.error());
  }
  return Json{{"entry", std::move(*e)}};
}

Result<Json> FsMove(const Json& req, const FileConfig& cfg) {
  auto from = PathField(req, "source", cfg);
  auto to = PathField(req, "destination", cfg);
  if (!from) {
    return Fail(from.error());
  }
  if (!to) {
    return Fail(to.error());
  }
  if (::rename(from->c_str(), to->c_str()) != 0) {
    return Fail(ErrnoError(errno, "rename " + *from + " to " + *to));
  }
  auto e = Entry(*to);
  if (!e) {
    return Fail(e.error());
  }
  return Json{{"entry", std::move(*e)}};
}

}  // namespace agentbox::guest
