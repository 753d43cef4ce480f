#include "backends/jail/sandbox_user.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <sstream>

#include "common/fs_util.h"

namespace agentbox::jail {

namespace {

constexpr uint32_t kFirstUserId = 1000;

// Ids (third field) and names (first field) of a passwd(5) or group(5) text.
void Scan(const std::string& text, std::set<uint32_t>& ids, std::string* user_line) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    const size_t c = b == std::string::npos ? b : line.find(':', b + 1);
    if (c == std::string::npos) {
      continue;
    }
    ids.insert(
        static_cast<uint32_t>(std::strtoul(line.substr(b + 1, c - b - 1).c_str(), nullptr, 10)));
    if (user_line && line.compare(0, a, "user") == 0 && a == 4) {
      *user_line = line;
    }
  }
}

Result<void> ChownPath(const std::string& path, uint32_t uid, uint32_t gid) {
  if (::lchown(path.c_str(), uid, gid) != 0) {
    return Fail(ErrnoError(errno, "chown " + path));
  }
  return {};
}

// Copies the regular files at the top of /etc/skel (.bashrc, .profile, ...) into `home`.
Result<void> SeedHome(const std::string& skel, const std::string& home, uint32_t uid,
                      uint32_t gid) {
  DIR* d = ::opendir(skel.c_str());
  if (d == nullptr) {
    return {};  // no skeleton: an empty home
  }
  Result<void> out;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    struct stat st {};
    if (name == "." || name == ".." || ::lstat((skel + "/" + name).c_str(), &st) != 0 ||
        !S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
      continue;
    }
    auto body = ReadSmallFile(skel + "/" + name);
    if (!body) {
      continue;
    }
    const std::string dst = home + "/" + name;
    if (auto w = WriteFileAtomic(dst, *body, st.st_mode & 0777); !w) {
      out = w;
      break;
    }
    if (auto c = ChownPath(dst, uid, gid); !c) {
      out = c;
      break;
    }
  }
  ::closedir(d);
  return out;
}

}  // namespace

UserEntries PlanUserEntries(const std::string& passwd, const std::string& group,
                            const std::string& shell) {
  std::set<uint32_t> uids;
  std::set<uint32_t> gids;
  std::string existing;
  Scan(passwd, uids, &existing);
  Scan(group, gids, nullptr);
  UserEntries out;
  if (!existing.empty()) {
    std::vector<std::string> f;
    std::stringstream ss(existing);
    std::string part;
    while (std::getline(ss, part, ':')) {
      f.push_back(part);
    }
    out.uid = static_cast<uint32_t>(std::strtoul(f.size() > 2 ? f[2].c_str() : "0", nullptr, 10));
    out.gid = static_cast<uint32_t>(std::strtoul(f.size() > 3 ? f[3].c_str() : "0", nullptr, 10));
    return out;
  }
  uint32_t id = kFirstUserId;
  while (uids.count(id) || gids.count(id)) {
    ++id;
  }
  out.uid = out.gid = id;
  const std::string ids = std::to_string(id);
  out.passwd_line = "user:x:" + ids + ":" + ids + ":user:/home/user:" + shell + "\n";
  out.group_line = "user:x:" + ids + ":\n";
  return out;
}

Result<SandboxUser> PrepareSandboxUser(const std::string& system_etc, const std::string& dir,
                                       const std::string& disk_root, uint32_t host_uid,
                                       uint32_t host_gid, uint32_t id_count) {
  auto passwd = ReadSmallFile(system_etc + "/passwd");
  auto group = ReadSmallFile(system_etc + "/group");
  if (!passwd || !group) {
    return Fail(ErrorCode::kNotFound, "no " + system_etc + "/passwd or group to add `user` to");
  }
  auto ends_in_newline = [](std::string& s) {
    if (!s.empty() && s.back() != '\n') {
      s += '\n';
    }
  };
  ends_in_newline(*passwd);
  ends_in_newline(*group);
  // /bin/bash of the jail is the system's own /bin (or /usr/bin through the /bin link).
  struct stat st {};
  const std::string bin = system_etc.substr(0, system_etc.size() - 4);  // ".../etc" -> "..."
  const std::string shell = ::stat((bin + "/bin/bash").c_str(), &st) == 0 ? "/bin/bash" : "/bin/sh";
  const UserEntries plan = PlanUserEntries(*passwd, *group, shell);
  if (plan.uid >= id_count || plan.gid >= id_count) {
    return Fail(ErrorCode::kUnavailable, "the sandbox's id range (" + std::to_string(id_count) +
                                             " ids) does not hold user `user` (" +
                                             std::to_string(plan.uid) + ")");
  }
  SandboxUser out;
  out.uid = plan.uid;
  out.gid = plan.gid;
  if (!plan.passwd_line.empty()) {
    for (const auto& [name, text] : {std::pair{std::string("passwd"), *passwd + plan.passwd_line},
                                     std::pair{std::string("group"), *group + plan.group_line}}) {
      const std::string path = dir + "/" + name;
      if (auto r = WriteFileAtomic(path, text, 0644); !r) {
        return Fail(r.error());
      }
      out.mounts.push_back({path, "/etc/" + name, false});
    }
  }
  const std::string home = disk_root + "/home/user";
  for (const auto& d : {disk_root + "/home", home}) {
    if (auto r = EnsureDir(d, 0755); !r) {
      return Fail(r.error());
    }
  }
  if (auto r = ChownPath(disk_root + "/home", host_uid, host_gid); !r) {  // the sandbox's root
    return Fail(r.error());
  }
  const uint32_t uid = host_uid + plan.uid;
  const uint32_t gid = host_gid + plan.gid;
  if (auto r = ChownPath(home, uid, gid); !r) {
    return Fail(r.error());
  }
  if (auto r = SeedHome(system_etc + "/skel", home, uid, gid); !r) {
    return Fail(r.error());
  }
  // All of /home, not just /home/user: an image directory may have a /home of its own, shared
  // read-only, where no mount point for `user` could be made.
  out.mounts.push_back({disk_root + "/home", "/home", true});
  return out;
}

}  // namespace agentbox::jail
