#pragma once

// Writing the entries of a tar stream into a directory (internal to the archive library and the
// image library): the one unpacker behind archive::Unpack (the guest's file/archive, `agentbox
// cp -r`, a migration's /workspace) and images::UnpackLayer (an image layer, whose whiteouts are
// an EntryHook). Never follows a symlink while writing; a later entry of a name replaces an
// earlier one, as tar does.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "archive/archive.h"
#include "archive/tar_reader.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace agentbox::archive {

class TreeWriter;

// Sees every entry before the writer does, with `parent` the directory that holds it (already
// created) and `parts` its clean name components (never empty). Returns true when it handled the
// entry (the writer then skips it), false to let the writer write it, or an error that stops the
// unpacking. An image layer's whiteouts (images/layer_unpack.cc) are such a hook.
using EntryHook = std::function<Result<bool>(
    TreeWriter& writer, int parent, const std::vector<std::string>& parts, const Entry& entry)>;

struct TreeWriterOptions {
  // Names the input in errors: "<noun> entry 'NAME' ...", "the <noun> has more than N entries".
  std::string noun = "archive";
  // Restore owner and group (and setuid/setgid bits) from the tar: only meaningful as root.
  bool keep_owner = false;
  uint64_t max_entries = 1000000;
  // Refuse symlinks whose target is absolute or leads outside the directory, also through other
  // symlinks of the tree (a tree the caller will read). False stores them as they are (an image
  // layer: an absolute target is read inside the sandbox's root).
  bool confine_symlinks = true;
  // A later entry replaces an earlier one of another type, a directory too (an image layer: a
  // file over a directory of the same layer). False: a directory is only merged into, and an
  // entry that would replace it is refused.
  bool replace_directories = false;
  // Device nodes are skipped and counted (an image layer: the jail has its own /dev); false
  // refuses them.
  bool skip_devices = false;
  EntryHook hook;
};

struct TreeStats {
  uint64_t entries = 0;          // every entry read, the hook's too
  uint64_t bytes = 0;            // bytes of regular-file content
  uint64_t disk_bytes = 0;       // file sizes rounded up to 4 KiB, plus 4 KiB per other entry
  uint64_t skipped_devices = 0;  // with skip_devices
  bool root_entry = false;       // the archive had an entry for the directory itself ("./")
};

// Writes the entries of one tar into `root`, a directory (the caller's staging directory: on an
// error `root` holds a partial tree, which the caller discards). Modes, mtimes and (keep_owner)
// owners are kept; directories get theirs last, deepest first, so that read-only ones are filled
// before. Refused with kInvalidArgument naming the entry: absolute names, ".." components, names
// longer than PATH_MAX or with a component over NAME_MAX, entries that would be written through a
// symlink or a file, hard links to anything but an earlier file of the tree, symlinks as
// `confine_symlinks` says, device nodes unless skipped, unknown entry types, a truncated stream.
// More than max_entries entries is kTooLarge. Reads the input up to its end.
class TreeWriter {
 public:
  TreeWriter(int root, const TreeWriterOptions& options, const Progress& progress = nullptr);

  Result<TreeStats> Run(TarReader& reader);

  // Removes `leaf` of directory `dirfd`, whatever it is (a whole tree too), without following
  // symlinks; for hooks (a whiteout removes what an earlier entry of its layer wrote).
  void Remove(int dirfd, const std::string& leaf);
  // The "<noun> entry 'NAME' why" error (kInvalidArgument), for hooks.
  Error Refused(const std::string& name, const std::string& why) const;
  // Adds to the disk estimate (TreeStats::disk_bytes), for what hooks create.
  void AddDiskBytes(uint64_t bytes) { stats_.disk_bytes += bytes; }

 private:
  struct DirFix {
    std::string path;  // relative to the root
    Entry entry;
  };

  mode_t Mode(const Entry& e) const;
  void Owner(int fd, const char* name, const Entry& e, int flags) const;
  Result<std::vector<std::string>> Clean(const std::string& name) const;
  Result<int> Parent(const std::vector<std::string>& parts, size_t n, const std::string& name);
  void Replace(int dirfd, const std::string& leaf, bool keep_dir);
  Result<void> One(TarReader& reader, const Entry& e);
  Result<void> File(TarReader& reader, const Entry& e, int parent, const std::string& leaf);
  Result<void> HardLink(const Entry& e, const std::vector<std::string>& parts);
  Result<void> CheckSymlinks();

  int root_;
  const TreeWriterOptions opts_;  // copies: callers may pass temporaries
  Progress progress_;  // a copy: the default argument is a temporary
  std::vector<char> data_;
  uint64_t reported_ = 0;
  TreeStats stats_;
  std::vector<DirFix> dirs_;
  std::vector<std::string> symlinks_;
  std::string cached_;
  UniqueFd cached_fd_;
  mode_t umask_;
  uid_t uid_;
  gid_t gid_;
};

// Removes `name` under `parent` (a file, a symlink or a whole tree, read-only directories too)
// without following symlinks; best effort.
void RemoveTreeAt(int parent, const std::string& name);

}  // namespace agentbox::archive
