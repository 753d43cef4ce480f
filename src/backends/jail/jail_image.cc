#include "backends/jail/jail_image.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>


namespace agentbox::jail {
namespace {

// Whether `path` (absolute, in the image) is a directory of the stacked layers: the topmost
// layer that has an entry there decides (a whiteout hides it).
bool DirInLayers(const std::vector<std::string>& layers, const std::string& path) {
  for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
    struct stat st {};
    if (::stat((*it + path).c_str(), &st) != 0) {
      continue;
    }
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      return false;
    }
    return S_ISDIR(st.st_mode);
  }
  return false;
}

}  // namespace

std::string ImageLease(const std::string& sandbox_id) { return "jail." + sandbox_id; }

Result<JailImage> ResolveJailImage(images::ImageStore* store, const std::string& why_no_store,
                                   const std::string& image, const std::string& sandbox_id,
                                   const images::ImageStore::Progress& progress) {
  auto form = images::ClassifyImage(image);
  if (!form) {
    return Fail(form.error());
  }
  JailImage out;
  out.form = *form;
  switch (*form) {
    case images::ImageForm::kHost:
      return out;
    case images::ImageForm::kRootfsDir:
    case images::ImageForm::kRootfsTarball:
      out.path = image;
      return out;
    case images::ImageForm::kLayout:
    case images::ImageForm::kArchive:
    case images::ImageForm::kEngine:
      break;
  }
  if (store == nullptr) {
    return Fail(ErrorCode::kInvalidArgument, "image '" + image + "' names an OCI image (" +
                                                 images::ImageFormName(*form) +
                                                 "), and this jail backend has no image store: " +
                                                 why_no_store);
  }
  auto resolved =
      store->Resolve(image, sandbox_id.empty() ? "" : ImageLease(sandbox_id), progress);
  if (!resolved) {
    return Fail(resolved.error());
  }
  if (resolved->layer_dirs.empty()) {
    // Nothing to mount: the jail would otherwise fall back to the host's directories.
    store->Release(sandbox_id.empty() ? "" : ImageLease(sandbox_id));
    return Fail(ErrorCode::kInvalidArgument,
                "image '" + image + "' has no layers: there is no root filesystem to run on");
  }
  out.id = resolved->id;
  out.layer_dirs = std::move(resolved->layer_dirs);
  out.config = std::move(resolved->config);
  return out;
}

std::string ApplyImageConfig(const JailImage& image, std::map<std::string, std::string>& env,
                             std::string& workdir) {
  for (const auto& kv : image.config.env) {
    const size_t eq = kv.find('=');
    if (eq != std::string::npos && eq > 0) {
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  const std::string& wd = image.config.working_dir;
  if (wd.empty() || wd == workdir) {
    return "";
  }
  // The jail provides /workspace and /tmp itself; anything else must be in the image.
  if (wd == "/workspace" || wd == "/tmp" || DirInLayers(image.layer_dirs, wd)) {
    workdir = wd;
    return "";
  }
  return "the image's WorkingDir " + wd + " is not a directory of the image; sessions start in " +
         workdir;
}

}  // namespace agentbox::jail
