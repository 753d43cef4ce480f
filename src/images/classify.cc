#include "images/classify.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "archive/codec.h"
#include "archive/tar_reader.h"
#include "common/unique_fd.h"
#include "images/engine.h"
#include "images/source.h"

namespace agentbox::images {

bool IsCompressed(int fd) {
  unsigned char b[4] = {};
  const ssize_t n = ::pread(fd, b, sizeof(b), 0);
  return (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) ||
         (n >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd);
}

archive::Source FdSource(int fd) {
  return [fd](char* buf, size_t n) -> Result<size_t> {
    for (;;) {
      const ssize_t got = ::read(fd, buf, n);
      if (got < 0 && errno == EINTR) {
        continue;
      }
      if (got < 0) {
        return Fail(ErrnoError(errno, "read image archive"));
      }
      return static_cast<size_t>(got);
    }
  };
}

namespace {

bool TopLevelImageDoc(const std::string& name) {
  std::string n = name;
  while (n.starts_with("./")) {
    n = n.substr(2);
  }
  return n == "manifest.json" || n == "index.json";
}

// Whether the tar file at `fd` has a top-level manifest.json or index.json.
bool IsImageArchive(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return false;
  }
  if (!IsCompressed(fd)) {
    auto members = ScanTar(
        [fd](uint64_t off, char* buf, size_t n) -> Result<size_t> {
          const ssize_t got = ::pread(fd, buf, n, static_cast<off_t>(off));
          if (got < 0) {
            return Fail(ErrnoError(errno, "read"));
          }
          return static_cast<size_t>(got);
        },
        static_cast<uint64_t>(st.st_size));
    return members && (members->count("manifest.json") || members->count("index.json"));
  }
  // Compressed: the names are only seen by decompressing (the data is skipped unwritten).
  if (::lseek(fd, 0, SEEK_SET) != 0) {
    return false;
  }
  archive::TarReader reader(archive::MakeDecoder(FdSource(fd)));
  archive::Entry e;
  for (;;) {
    auto more = reader.Next(e);
    if (!more || !*more) {
      return false;
    }
    if (TopLevelImageDoc(e.name)) {
      return true;
    }
  }
}

}  // namespace

const char* ImageFormName(ImageForm f) {
  switch (f) {
    case ImageForm::kHost:
      return "host";
    case ImageForm::kRootfsDir:
      return "rootfs directory";
    case ImageForm::kRootfsTarball:
      return "rootfs tarball";
    case ImageForm::kLayout:
      return "OCI image layout";
    case ImageForm::kArchive:
      return "image archive";
    case ImageForm::kEngine:
      return "Docker engine image";
  }
  return "?";
}

Result<void> CheckImageName(const std::string& image) {
  if (!image.empty() && image[0] != '/' && (image[0] == '.' || !ValidEngineReference(image))) {
    return Fail(ErrorCode::kInvalidArgument,
                "image '" + image.substr(0, 200) +
                    "' is neither an absolute path nor a Docker image reference");
  }
  return {};
}

Result<ImageForm> ClassifyImage(const std::string& image) {
  if (image.empty()) {
    return ImageForm::kHost;
  }
  if (image[0] != '/') {
    if (auto r = CheckImageName(image); !r) {
      return Fail(r.error());
    }
    return ImageForm::kEngine;
  }
  struct stat st {};
  if (::stat(image.c_str(), &st) != 0) {
    return Fail(ErrorCode::kNotFound, "image " + image + " does not exist");
  }
  if (S_ISDIR(st.st_mode)) {
    struct stat f {};
    const bool layout = ::stat((image + "/oci-layout").c_str(), &f) == 0 && S_ISREG(f.st_mode) &&
                        ::stat((image + "/index.json").c_str(), &f) == 0 && S_ISREG(f.st_mode);
    return layout ? ImageForm::kLayout : ImageForm::kRootfsDir;
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorCode::kInvalidArgument,
                "image " + image + " is neither a directory nor a file");
  }
  UniqueFd fd(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return Fail(ErrnoError(errno, "open image " + image));
  }
  return IsImageArchive(fd.Get()) ? ImageForm::kArchive : ImageForm::kRootfsTarball;
}

}  // namespace agentbox::images
