#include "api/root_changes.h"

#include <algorithm>
#include <string_view>

namespace agentbox {

namespace {

bool Under(const std::string& path, std::string_view dir) {
  return path.size() >= dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         (path.size() == dir.size() || path[dir.size()] == '/');
}

}  // namespace

bool OutsideTheRoot(const std::string& path) {
  for (std::string_view dir :
       {"/workspace", "/tmp", "/dev", "/proc", "/sys", "/run/agentbox", "/.agentbox"}) {
    if (Under(path, dir)) {
      return true;
    }
  }
  return path == "/etc/resolv.conf" || path == "/etc/hosts" || path == "/etc/hostname";
}

RootChanges CollapseRootChanges(std::vector<RootChange> all, size_t limit) {
  std::erase_if(
      all, [](const RootChange& c) { return c.path.empty() || c.path[0] != '/' || c.path == "/"; });
  std::sort(all.begin(), all.end(),
            [](const RootChange& a, const RootChange& b) { return a.path < b.path; });
  all.erase(std::unique(all.begin(), all.end(),
                        [](const RootChange& a, const RootChange& b) { return a.path == b.path; }),
            all.end());
  RootChanges out;
  for (size_t i = 0; i < all.size(); ++i) {
    // Sorted: every path that starts with all[i].path follows it, together; those that go on
    // with '/' are under it (the others are siblings such as "/a-b" after "/a").
    bool has_child = false;
    for (size_t j = i + 1; j < all.size() && all[j].path.starts_with(all[i].path); ++j) {
      if (all[j].path[all[i].path.size()] == '/') {
        has_child = true;
        break;
      }
    }
    // A directory listed only for a mount point made in it (/run for /run/agentbox) goes too.
    if (has_child || OutsideTheRoot(all[i].path)) {
      continue;
    }
    ++out.total;
    if (out.paths.size() < limit) {
      out.paths.push_back(std::move(all[i]));
    }
  }
  return out;
}

Json RootChangesJson(const RootChanges& changes) {
  Json list = Json::array();
  for (const auto& c : changes.paths) {
    list.push_back({{"path", c.path}, {"kind", c.kind}});
  }
  return Json{{"changed", std::move(list)}, {"changed_total", changes.total}};
}

}  // namespace agentbox
