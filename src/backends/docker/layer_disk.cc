#include "backends/docker/layer_disk.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <utility>

#include "common/fs_util.h"

namespace agentbox::docker {

namespace {

std::string StringAt(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// A directory that holds nothing but `allowed` (the engine made it for a container not started
// yet; overlayfs leaves its own work/work behind when the engine mounted the layer at create).
Result<void> CheckEmptyDir(const std::string& path, const std::string& allowed = "") {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    return Fail(ErrnoError(errno, "open " + path));
  }
  bool empty = true;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != ".." && n != allowed) {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  if (!empty) {
    return Fail(ErrorCode::kConflict, path + " is not empty: the container has started already");
  }
  return {};
}

// The directory that holds both (<data-root>/overlay2/<layer>), or "" when they have no common
// parent.
std::string LayerDir(const LayerDirs& l) {
  const auto parent = [](const std::string& p) {
    const size_t slash = p.find_last_of('/');
    return slash == std::string::npos || slash == 0 ? std::string() : p.substr(0, slash);
  };
  const std::string dir = parent(l.upper);
  return !dir.empty() && dir == parent(l.work) ? dir : "";
}

}  // namespace

Result<LayerDirs> LayerDirsOf(const Json& c) {
  const Json* gd = c.is_object() && c.contains("GraphDriver") ? &c["GraphDriver"] : nullptr;
  if (gd == nullptr || !gd->is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "the engine does not say where the layer is");
  }
  const std::string driver = StringAt(*gd, "Name");
  if (driver != "overlay2") {
    return Fail(ErrorCode::kInvalidArgument, "the engine's storage driver is " +
                                                 (driver.empty() ? "unknown" : driver) +
                                                 ", not overlay2");
  }
  const Json data = gd->value("Data", Json::object());
  LayerDirs l{data.is_object() ? StringAt(data, "UpperDir") : "",
              data.is_object() ? StringAt(data, "WorkDir") : ""};
  struct stat u {};
  struct stat w {};
  if (l.upper.empty() || l.work.empty() || ::stat(l.upper.c_str(), &u) != 0 ||
      ::stat(l.work.c_str(), &w) != 0 || !S_ISDIR(u.st_mode) || !S_ISDIR(w.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument,
                "the engine's layer directories ('" + l.upper +
                    "') are not visible here (an engine on another machine, in another mount "
                    "namespace, or rootless)");
  }
  return l;
}

Result<void> BindLayerOnDisk(const LayerDirs& layer, const std::string& disk_root) {
  if (auto r = CheckEmptyDir(layer.work, "work"); !r) {
    return r;
  }
  const std::string dir = LayerDir(layer);
  if (dir.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "the layer's directories are not siblings: '" +
                                                 layer.upper + "', '" + layer.work + "'");
  }
  // The layer directory as the engine made it, on the disk: its small files (link: the layer's
  // short name; lower: the layers below it) copied, diff/ and work/ new and empty, with the
  // modes the engine gives them (the upper directory's becomes the root directory's).
  const std::string root = disk_root + "/layer";
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return Fail(ErrnoError(errno, "stat " + dir));
  }
  if (::mkdir(root.c_str(), st.st_mode & 07777) != 0 && errno != EEXIST) {
    return Fail(ErrnoError(errno, "mkdir " + root));
  }
  for (const auto& [name, mode] : {std::pair{"diff", 0755}, std::pair{"work", 0700}}) {
    const std::string p = root + "/" + name;
    if (::mkdir(p.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) {
      return Fail(ErrnoError(errno, "mkdir " + p));
    }
  }
  // What the engine put in the layer at create (mount points missing from the image: empty
  // directories and files) comes along.
  std::error_code ec;
  std::filesystem::copy(
      layer.upper, root + "/diff",
      std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks, ec);
  if (ec) {
    return Fail(ErrorCode::kInternal,
                "copy " + layer.upper + " to the sandbox's disk: " + ec.message());
  }
  for (const char* name : {"link", "lower"}) {
    auto text = ReadSmallFile(dir + "/" + name, 1 << 20);
    if (!text) {
      if (text.error().code == ErrorCode::kNotFound) {
        continue;  // the bottom layer has no lower
      }
      return Fail(text.error());
    }
    if (auto w = WriteFileAtomic(root + "/" + name, *text, 0644); !w) {
      return Fail(w.error());
    }
  }
  if (::mount(root.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return Fail(ErrnoError(errno, "bind " + root + " over " + dir));
  }
  return {};
}

Result<void> UnbindLayer(const LayerDirs& layer) {
  const std::string dir = LayerDir(layer);
  // EINVAL: not a mount point (nothing bound, or detached already).
  if (!dir.empty() && ::umount2(dir.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 &&
      errno != EINVAL && errno != ENOENT) {
    return Fail(ErrnoError(errno, "unmount " + dir));
  }
  return {};
}

}  // namespace agentbox::docker
