#include "daemon/migration_journal.h"

#include <dirent.h>
#include <unistd.h>

#include "api/sandbox_backend.h"
#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"

namespace agentbox::daemon {

namespace {

constexpr int kVersion = 1;
const std::string kSuffix = ".json";

bool BackendName(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() && !it->get_ref<const std::string&>().empty() &&
         it->get_ref<const std::string&>().size() <= 64;
}

}  // namespace

Result<void> MigrationJournal::Write(const MigrationRecord& r) {
  if (dir_.empty()) {
    return {};
  }
  if (!ValidSandboxId(r.id)) {
    return Fail(ErrorCode::kInvalidArgument, "invalid sandbox id '" + r.id + "'");
  }
  if (auto made = EnsureDir(dir_, 0700); !made) {
    return made;
  }
  const Json j{{"version", kVersion}, {"id", r.id},       {"from", r.from},
               {"to", r.to},          {"phase", r.phase}, {"started_at", r.started_at}};
  return WriteFileDurable(FileOf(r.id), DumpJson(j), 0600);
}

void MigrationJournal::Remove(const std::string& id) {
  if (!dir_.empty() && ValidSandboxId(id)) {
    if (::unlink(FileOf(id).c_str()) == 0) {
      (void)SyncParentDir(FileOf(id));  // best effort: a journal that comes back is finished again
    }
  }
}

std::vector<MigrationRecord> MigrationJournal::Pending() {
  std::vector<MigrationRecord> out;
  if (dir_.empty()) {
    return out;
  }
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) {
    return out;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") {
      names.push_back(name);
    }
  }
  ::closedir(d);
  for (const auto& name : names) {
    const std::string path = dir_ + "/" + name;
    const std::string id =
        name.ends_with(kSuffix) ? name.substr(0, name.size() - kSuffix.size()) : std::string();
    auto text = ValidSandboxId(id)
                    ? ReadSmallFile(path, 64 << 10)
                    : Result<std::string>(Fail(ErrorCode::kInvalidArgument, "not a journal file"));
    const Json j = text ? ParseUntrustedJson(*text) : Json();
    if (!j.is_object() || ValueOr(j, "version", 0) != kVersion || ValueOr(j, "id", "") != id ||
        !BackendName(j, "from") || !BackendName(j, "to") ||
        (ValueOr(j, "phase", "") != kPhaseCopying && ValueOr(j, "phase", "") != kPhaseSwitched)) {
      // A temporary file of a cut write (the previous phase's file is still in place), or not
      // ours.
      Log(LogLevel::kWarn, "migration.journal_skipped", "file={}", path);
      ::unlink(path.c_str());
      continue;
    }
    MigrationRecord r;
    r.id = id;
    r.from = j["from"].get<std::string>();
    r.to = j["to"].get<std::string>();
    r.phase = j["phase"].get<std::string>();
    if (auto s = j.find("started_at"); s != j.end() && s->is_number()) {
      r.started_at = s->get<double>();
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace agentbox::daemon
