#include "backends/docker/host_dir.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "common/json_util.h"
#include "common/unique_fd.h"

namespace agentbox::docker {

Result<SandboxMeta> LoadMeta(const std::string& dir) {
  const std::string path = dir + "/" + kMetaFile;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return Fail(ErrorCode::kNotFound, path + " does not exist");
    }
    return Fail(ErrnoError(errno, "open " + path));
  }
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.Get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Fail(ErrnoError(errno, "read " + path));
    }
    if (n == 0 || text.size() > (1 << 20)) {
      break;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  auto j = ParseJsonObject(text);
  if (!j) {
    return Fail(ErrorCode::kInternal, path + ": " + j.error().message);
  }
  try {
    SandboxMeta m;
    if (j->at("version").get<int>() != 1) {
      return Fail(ErrorCode::kInternal, path + ": unsupported version");
    }
    m.token = j->at("token").get<std::string>();
    m.owner = j->at("owner").get<std::string>();
    m.labels = j->at("labels").get<std::map<std::string, std::string>>();
    m.expires_at = j->at("expires_at").get<double>();
    m.claimed = j->value("claimed", false);
    m.egress_link = j->value("egress_link", "");
    return m;
  } catch (const Json::exception& e) {
    return Fail(ErrorCode::kInternal, path + ": " + e.what());
  }
}

Result<void> SaveMeta(const std::string& dir, const SandboxMeta& m) {
  Json j = {{"version", 1},       {"token", m.token},           {"owner", m.owner},
            {"labels", m.labels}, {"expires_at", m.expires_at}, {"claimed", m.claimed}};
  if (!m.egress_link.empty()) {
    j["egress_link"] = m.egress_link;
  }
  return WriteFileDurable(dir + "/" + kMetaFile, DumpJson(j) + "\n", 0600);
}

}  // namespace agentbox::docker
