#include "backends/jail/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/unique_fd.h"

namespace agentbox::jail {
namespace {

// Unescapes the octal escapes (\040 for a space) of a /proc/self/mountinfo field.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const int v = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      out.push_back(static_cast<char>(v));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}
}  // namespace

Result<int> UnmountBelow(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  std::vector<std::string> targets;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    fields >> id >> parent >> devno >> root >> mount_point;
    const std::string mp = Unescape(mount_point);
    if (mp == dir || mp.rfind(dir + "/", 0) == 0) {
      targets.push_back(mp);
    }
  }
  // Deepest first, so that no unmount is refused for a busy child mount.
  std::sort(targets.begin(), targets.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  int n = 0;
  for (const auto& t : targets) {
    if (::umount2(t.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL &&
        errno != ENOENT) {
      return Fail(ErrnoError(errno, "unmount " + t));
    }
    ++n;
  }
  return n;
}

Result<void> ShiftOwnership(const std::string& root, uint32_t uid_base, uint32_t gid_base,
                            uint32_t count) {
  std::vector<std::string> stack = {root};
  while (!stack.empty()) {
    const std::string path = std::move(stack.back());
    stack.pop_back();
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      return Fail(ErrnoError(errno, "stat " + path));
    }
    const uid_t uid = st.st_uid < count ? uid_base + st.st_uid : uid_base;
    const gid_t gid = st.st_gid < count ? gid_base + st.st_gid : gid_base;
    if (::lchown(path.c_str(), uid, gid) != 0) {
      return Fail(ErrnoError(errno, "chown " + path));
    }
    if (S_ISDIR(st.st_mode)) {
      DIR* d = ::opendir(path.c_str());
      if (d == nullptr) {
        return Fail(ErrnoError(errno, "list " + path));
      }
      while (const dirent* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") {
          stack.push_back(path + "/" + n);
        }
      }
      ::closedir(d);
    }
  }
  return {};
}

}  // namespace agentbox::jail
