#include "images/image_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "archive/codec.h"
#include "archive/tar_reader.h"
#include "common/fs_util.h"
#include "common/json_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "images/digest.h"
#include "images/engine.h"
#include "images/layer_unpack.h"
#include "images/source.h"

namespace agentbox::images {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return out;
  }
  while (const dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      out.emplace_back(e->d_name);
    }
  }
  ::closedir(d);
  return out;
}

// An exclusive flock on `path` (created if missing), held while the object lives.
class FileLock {
 public:
  static Result<FileLock> Acquire(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) {
      return Fail(ErrnoError(errno, "open lock " + path));
    }
    while (::flock(fd.Get(), LOCK_EX) != 0) {
      if (errno != EINTR) {
        return Fail(ErrnoError(errno, "lock " + path));
      }
    }
    return FileLock(std::move(fd));
  }

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace

Result<std::shared_ptr<ImageStore>> ImageStore::Open(ImageStoreOptions options) {
  if (options.dir.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "the image store needs a directory");
  }
  if (!options.keep_owner) {
    options.keep_owner = ::geteuid() == 0;
  }
  for (const std::string sub : {"", "/layers", "/tmp", "/locks", "/leases", "/images"}) {
    if (auto r = EnsureDir(options.dir + sub, 0700); !r) {
      return Fail(r.error());
    }
  }
  std::shared_ptr<ImageStore> store(new ImageStore(std::move(options)));
  const std::string& dir = store->opts_.dir;
  // Staging left by an unpack that did not finish: nobody holds its lock any more.
  for (const auto& name : ListDir(dir + "/tmp")) {
    const std::string path = dir + "/tmp/" + name;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd && ::flock(fd.Get(), LOCK_EX | LOCK_NB) == 0) {
      (void)RemoveTree(path);
    }
  }
  for (const auto& hex : ListDir(dir + "/layers")) {
    const std::string meta_path = dir + "/layers/" + hex + "/meta.json";
    auto meta = ReadSmallFile(meta_path);
    auto j = meta ? ParseJsonObject(*meta) : Result<Json>(Fail(meta.error()));
    struct stat st {};
    if (!j || ::stat(meta_path.c_str(), &st) != 0) {
      // Only a complete layer is ever renamed in; anything else is not ours to use.
      (void)RemoveTree(dir + "/layers/" + hex);
      continue;
    }
    Layer l;
    l.bytes = j->value("bytes", uint64_t{0});
    l.last_used = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    store->layers_[hex] = l;
  }
  for (const auto& lease : ListDir(dir + "/leases")) {
    auto text = ReadSmallFile(dir + "/leases/" + lease);
    auto j = text ? ParseJsonObject(*text) : Result<Json>(Fail(text.error()));
    if (j) {
      store->leases_[lease] = j->value("layers", std::vector<std::string>());
    }
  }
  return store;
}

bool ImageStore::HaveLayer(const std::string& hex) {
  std::lock_guard lock(mu_);
  return layers_.count(hex) > 0;
}

void ImageStore::Touch(const std::string& hex) {
  const int64_t now = NowNs();
  {
    std::lock_guard lock(mu_);
    auto it = layers_.find(hex);
    if (it == layers_.end()) {
      return;
    }
    it->second.last_used = now;
  }
  // The last use survives a restart as meta.json's mtime.
  timespec ts[2] = {{0, UTIME_OMIT}, {now / 1000000000, now % 1000000000}};
  ::utimensat(AT_FDCWD, (LayerDir(hex) + "/meta.json").c_str(), ts, 0);
}

void ImageStore::Pin(const std::vector<std::string>& hexes) {
  std::lock_guard lock(mu_);
  for (const auto& h : hexes) {
    pinned_.insert(h);
  }
}

void ImageStore::Unpin(const std::vector<std::string>& hexes) {
  std::lock_guard lock(mu_);
  for (const auto& h : hexes) {
    if (auto it = pinned_.find(h); it != pinned_.end()) {
      pinned_.erase(it);
    }
  }
}

Result<void> ImageStore::EnsureLayer(BlobSource& source, const LayerRef& layer,
                                     const Progress& progress) {
  const std::string hex = *DigestHex(layer.diff_id, "layer");
  if (HaveLayer(hex)) {
    std::lock_guard lock(mu_);
    ++counters_.hits;
    return {};
  }
  // One unpack per layer, whoever asks: the others wait here and then find it.
  auto held = FileLock::Acquire(opts_.dir + "/locks/" + hex);
  if (!held) {
    return Fail(held.error());
  }
  if (HaveLayer(hex)) {
    std::lock_guard lock(mu_);
    ++counters_.hits;
    return {};
  }
  // Unpacked meanwhile by another store over this directory (another process): adopt it.
  if (auto meta = ReadSmallFile(LayerDir(hex) + "/meta.json")) {
    if (auto j = ParseJsonObject(*meta)) {
      std::lock_guard lock(mu_);
      layers_[hex] = Layer{j->value("bytes", uint64_t{0}), NowNs()};
      ++counters_.hits;
      return {};
    }
  }
  if (progress) {
    progress("unpacking layer " + layer.diff_id);
  }
  const auto started = std::chrono::steady_clock::now();
  std::string staging = opts_.dir + "/tmp/" + hex + ".XXXXXX";
  if (::mkdtemp(staging.data()) == nullptr) {
    return Fail(ErrnoError(errno, "create a staging directory in " + opts_.dir + "/tmp"));
  }
  // Held until the rename: a store opening meanwhile leaves this staging directory alone.
  UniqueFd staging_fd(::open(staging.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  bool committed = false;
  struct Cleanup {
    const std::string& path;
    bool& committed;
    ~Cleanup() {
      if (!committed) {
        (void)RemoveTree(path);
      }
    }
  } cleanup{staging, committed};
  if (!staging_fd || ::flock(staging_fd.Get(), LOCK_EX) != 0 ||
      ::mkdirat(staging_fd.Get(), "fs", 0755) != 0) {
    return Fail(ErrnoError(errno, "prepare " + staging));
  }
  UniqueFd fs(::openat(staging_fd.Get(), "fs", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  auto blob = source.Open(layer.blob);
  if (!blob) {
    return Fail(blob.error().code == ErrorCode::kNotFound
                    ? Error(ErrorCode::kInvalidArgument,
                            "corrupt image: its layer " + layer.blob + " is missing")
                    : blob.error());
  }
  LayerUnpackOptions uo;
  uo.keep_owner = opts_.keep_owner.value_or(false);
  uo.want_blob_digest = layer.digest;
  uo.want_diff_id = layer.diff_id;
  auto unpacked = UnpackLayer(*blob, fs.Get(), uo);
  if (!unpacked) {
    Error e = unpacked.error();
    if (e.code == ErrorCode::kInvalidArgument && !e.message.starts_with("corrupt image")) {
      e.message = "corrupt image: layer " + layer.diff_id + ": " + e.message;
    }
    return Fail(e);
  }
  Json meta = {{"diff_id", layer.diff_id},
               {"blob_digest", unpacked->blob_digest},
               {"bytes", unpacked->disk_bytes},
               {"entries", unpacked->entries},
               {"skipped_devices", unpacked->skipped_devices},
               {"unpacked_at", NowUnix()}};
  if (auto r = WriteFileAtomic(staging + "/meta.json", DumpJson(meta), 0600); !r) {
    return Fail(r.error());
  }
  // On disk before it is renamed into place: after a crash of the machine a layer is whole or
  // absent, never half there.
  const auto syncing = std::chrono::steady_clock::now();
  if (::syncfs(staging_fd.Get()) != 0) {
    return Fail(ErrnoError(errno, "sync " + staging));
  }
  const auto synced = std::chrono::steady_clock::now();
  if (::chmod(staging.c_str(), 0700) != 0 || ::rename(staging.c_str(), LayerDir(hex).c_str()) != 0) {
    return Fail(ErrnoError(errno, "move layer " + hex + " into the cache"));
  }
  committed = true;
  {
    std::lock_guard lock(mu_);
    layers_[hex] = Layer{unpacked->disk_bytes, NowNs()};
    ++counters_.misses;
  }
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  Log(LogLevel::kInfo, "image.layer_unpacked",
      "diff_id={} bytes={} entries={} ms={:.1f} sync_ms={:.1f}", layer.diff_id,
      unpacked->disk_bytes, unpacked->entries, ms(std::chrono::steady_clock::now() - started),
      ms(synced - syncing));
  return {};
}

Result<ResolvedImage> ImageStore::Finish(const std::string& id, const ImageConfig& config,
                                         const std::vector<std::string>& diff_ids,
                                         const std::string& lease) {
  ResolvedImage out;
  out.id = id;
  out.config = config;
  out.diff_ids = diff_ids;
  std::vector<std::string> hexes;
  for (const auto& d : diff_ids) {
    hexes.push_back(*DigestHex(d, "layer"));
    out.layer_dirs.push_back(LayerDir(hexes.back()) + "/fs");
  }
  if (!lease.empty()) {
    if (lease.find('/') != std::string::npos || lease[0] == '.') {
      return Fail(ErrorCode::kInvalidArgument, "invalid image lease name '" + lease + "'");
    }
    if (auto r = WriteFileAtomic(opts_.dir + "/leases/" + lease,
                                 DumpJson(Json{{"image", id}, {"layers", hexes}}), 0600);
        !r) {
      return Fail(r.error());
    }
    std::lock_guard lock(mu_);
    leases_[lease] = hexes;
  }
  for (const auto& h : hexes) {
    Touch(h);
  }
  return out;
}

Result<ResolvedImage> ImageStore::ResolveFromSource(BlobSource& source, const std::string& what,
                                                    const std::string& lease,
                                                    const Progress& progress) {
  auto loaded = LoadImage(source, what);
  if (!loaded) {
    return Fail(loaded.error());
  }
  std::vector<std::string> hexes;
  for (const auto& l : loaded->layers) {
    hexes.push_back(*DigestHex(l.diff_id, "layer"));
  }
  Pin(hexes);
  struct Unpinner {
    ImageStore* s;
    const std::vector<std::string>& h;
    ~Unpinner() { s->Unpin(h); }
  } unpin{this, hexes};
  for (const auto& l : loaded->layers) {
    if (auto r = EnsureLayer(source, l, progress); !r) {
      return Fail(r.error());
    }
  }
  auto out = Finish(loaded->id, loaded->config.config, loaded->config.diff_ids, lease);
  if (out && opts_.max_bytes > 0) {
    EvictTo(opts_.max_bytes);
  }
  if (out) {
    // What the engine path looks up by id next time, without exporting again.
    Json rec = {{"id", loaded->id},
                {"config", loaded->config_json},
                {"tags", loaded->tags}};
    (void)WriteFileAtomic(opts_.dir + "/images/" + *DigestHex(loaded->id, "image") + ".json",
                          DumpJson(rec), 0600);
  }
  return out;
}

Result<ResolvedImage> ImageStore::ResolveEngine(const std::string& ref, const std::string& lease,
                                                const Progress& progress) {
  auto id = EngineImageId(opts_.docker_socket, ref);
  if (!id) {
    return Fail(id.error());
  }
  auto hex = DigestHex(*id, "engine image id");
  if (!hex) {
    return Fail(ErrorCode::kUnavailable, hex.error().message);
  }
  // Known image whose layers are all here: no export.
  auto try_cached = [&]() -> std::optional<Result<ResolvedImage>> {
    auto text = ReadSmallFile(opts_.dir + "/images/" + *hex + ".json", 8u << 20);
    auto rec = text ? ParseJsonObject(*text) : Result<Json>(Fail(text.error()));
    if (!rec || !(*rec)["config"].is_string()) {
      return std::nullopt;
    }
    const std::string config_json = (*rec)["config"].get<std::string>();
    // The record names the configuration's digest; the engine's id is that digest (Docker's
    // classic store) or, with the containerd image store, the manifest's: then the record was
    // written under the engine's id as an alias.
    const std::string config_id = Sha256Digest(config_json);
    if (!(*rec)["id"].is_string() || (*rec)["id"].get<std::string>() != config_id) {
      return std::nullopt;
    }
    auto config = ParseImageConfig(config_json);
    if (!config) {
      return std::nullopt;
    }
    std::vector<std::string> hexes;
    for (const auto& d : config->diff_ids) {
      hexes.push_back(*DigestHex(d, "layer"));
    }
    Pin(hexes);
    struct Unpinner {
      ImageStore* s;
      const std::vector<std::string>& h;
      ~Unpinner() { s->Unpin(h); }
    } unpin{this, hexes};
    for (const auto& h : hexes) {
      if (!HaveLayer(h)) {
        return std::nullopt;
      }
    }
    {
      std::lock_guard lock(mu_);
      counters_.hits += hexes.size();
    }
    return Finish(config_id, config->config, config->diff_ids, lease);
  };
  if (auto hit = try_cached()) {
    return *hit;
  }
  // One export per image at a time: a second caller waits and then finds the layers.
  auto held = FileLock::Acquire(opts_.dir + "/locks/image-" + *hex);
  if (!held) {
    return Fail(held.error());
  }
  if (auto hit = try_cached()) {
    return *hit;
  }
  if (progress) {
    progress("exporting " + ref + " from the Docker engine");
  }
  auto file = OpenUnlinkedFile(opts_.dir + "/tmp");
  if (!file) {
    return Fail(file.error());
  }
  const auto started = std::chrono::steady_clock::now();
  if (auto r = EngineExportImage(opts_.docker_socket, ref, file->Get()); !r) {
    return Fail(r.error());
  }
  {
    std::lock_guard lock(mu_);
    ++counters_.engine_exports;
  }
  Log(LogLevel::kInfo, "image.exported", "image={} id={} ms={:.1f}", ref, *id,
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
          .count());
  auto source = TarFileSource::OpenFile("/proc/self/fd/" + std::to_string(file->Get()));
  if (!source) {
    return Fail(source.error());
  }
  auto out = ResolveFromSource(**source, "'" + ref + "' (exported by the Docker engine)", lease,
                               progress);
  if (out && out->id != *id) {
    // The engine names the image by another digest: find the record under that name next time.
    auto rec = ReadSmallFile(opts_.dir + "/images/" + *DigestHex(out->id, "image") + ".json",
                             8u << 20);
    if (rec) {
      (void)WriteFileAtomic(opts_.dir + "/images/" + *hex + ".json", *rec, 0600);
    }
  }
  return out;
}

namespace {

bool StatOf(const std::string& path, struct stat& st) { return ::stat(path.c_str(), &st) == 0; }

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

std::optional<Result<ResolvedImage>> ImageStore::ResolveKnown(const std::string& path,
                                                              const std::string& lease) {
  struct stat st {};
  if (!StatOf(path, st) || S_ISDIR(st.st_mode)) {
    return std::nullopt;  // layouts are directories: their files may change under one mtime
  }
  Known k;
  std::vector<std::string> hexes;
  {
    std::lock_guard lock(mu_);
    auto it = known_.find(path);
    if (it == known_.end() || it->second.dev != st.st_dev || it->second.ino != st.st_ino ||
        it->second.size != st.st_size || it->second.mtime_ns != MtimeNs(st)) {
      return std::nullopt;
    }
    k = it->second;
    for (const auto& d : k.diff_ids) {
      hexes.push_back(DigestHex(d, "layer").value_or(""));
      if (!layers_.count(hexes.back())) {
        return std::nullopt;
      }
    }
    // Pinned under the same lock that saw them: no eviction between here and the lease.
    pinned_.insert(hexes.begin(), hexes.end());
    counters_.hits += hexes.size();
  }
  auto out = Finish(k.id, k.config, k.diff_ids, lease);
  Unpin(hexes);
  return out;
}

void ImageStore::Remember(const std::string& path, const std::string& id,
                          const ParsedConfig& config) {
  struct stat st {};
  if (!StatOf(path, st) || S_ISDIR(st.st_mode)) {
    return;
  }
  Known k{st.st_dev, st.st_ino, st.st_size, MtimeNs(st), id, config.config, config.diff_ids};
  std::lock_guard lock(mu_);
  if (known_.size() > 1000) {
    known_.clear();
  }
  known_[path] = std::move(k);
}

Result<ResolvedImage> ImageStore::Resolve(const std::string& image, const std::string& lease,
                                          const Progress& progress) {
  if (!image.empty() && image[0] == '/') {
    if (auto hit = ResolveKnown(image, lease)) {
      return *hit;
    }
  }
  auto form = ClassifyImage(image);
  if (!form) {
    return Fail(form.error());
  }
  switch (*form) {
    case ImageForm::kEngine:
      return ResolveEngine(image, lease, progress);
    case ImageForm::kLayout: {
      auto source = DirSource::OpenDir(image);
      if (!source) {
        return Fail(source.error());
      }
      return ResolveFromSource(**source, image, lease, progress);
    }
    case ImageForm::kArchive: {
      UniqueFd in(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
      if (!in) {
        return Fail(ErrnoError(errno, "open image " + image));
      }
      std::string path = image;
      UniqueFd plain;
      if (IsCompressed(in.Get())) {
        // Blobs are read by offset: decompress once into a nameless file.
        auto file = OpenUnlinkedFile(opts_.dir + "/tmp");
        if (!file) {
          return Fail(file.error());
        }
        auto src = archive::MakeDecoder(FdSource(in.Get()));
        std::vector<char> buf(1u << 20);
        for (;;) {
          auto n = src(buf.data(), buf.size());
          if (!n) {
            return Fail(ErrorCode::kInvalidArgument,
                        "corrupt image " + image + ": " + n.error().message);
          }
          if (*n == 0) {
            break;
          }
          if (::write(file->Get(), buf.data(), *n) != static_cast<ssize_t>(*n)) {
            return Fail(ErrnoError(errno, "decompress " + image));
          }
        }
        plain = std::move(*file);
        path = "/proc/self/fd/" + std::to_string(plain.Get());
      }
      auto source = TarFileSource::OpenFile(path);
      if (!source) {
        return Fail(source.error());
      }
      auto out = ResolveFromSource(**source, image, lease, progress);
      if (out) {
        auto config = ParseImageConfig(R"({"rootfs":{"diff_ids":[]}})");
        config->config = out->config;
        config->diff_ids = out->diff_ids;
        Remember(image, out->id, *config);
      }
      return out;
    }
    case ImageForm::kHost:
    case ImageForm::kRootfsDir:
    case ImageForm::kRootfsTarball:
      break;
  }
  return Fail(ErrorCode::kInvalidArgument,
              "image '" + image + "' is not an OCI image (it is a " + ImageFormName(*form) + ")");
}

void ImageStore::Release(const std::string& lease) {
  if (lease.empty() || lease.find('/') != std::string::npos) {
    return;
  }
  ::unlink((opts_.dir + "/leases/" + lease).c_str());
  std::lock_guard lock(mu_);
  leases_.erase(lease);
}

std::vector<std::string> ImageStore::Leases() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, _] : leases_) {
    out.push_back(name);
  }
  return out;
}

uint64_t ImageStore::EvictTo(uint64_t target) {
  std::vector<std::pair<std::string, uint64_t>> gone;
  {
    std::lock_guard lock(mu_);
    uint64_t total = 0;
    for (const auto& [_, l] : layers_) {
      total += l.bytes;
    }
    if (total <= target) {
      return 0;
    }
    std::set<std::string> held(pinned_.begin(), pinned_.end());
    for (const auto& [_, hexes] : leases_) {
      held.insert(hexes.begin(), hexes.end());
    }
    std::vector<std::pair<int64_t, std::string>> order;
    for (const auto& [hex, l] : layers_) {
      if (!held.count(hex)) {
        order.emplace_back(l.last_used, hex);
      }
    }
    std::sort(order.begin(), order.end());
    for (const auto& [_, hex] : order) {
      if (total <= target) {
        break;
      }
      // Out of the cache in one step (a rename), then removed at leisure.
      const std::string doomed = opts_.dir + "/tmp/evicted-" + hex + "-" + RandomId(8);
      if (::rename(LayerDir(hex).c_str(), doomed.c_str()) != 0) {
        continue;
      }
      const uint64_t bytes = layers_[hex].bytes;
      total -= std::min(total, bytes);
      layers_.erase(hex);
      gone.emplace_back(doomed, bytes);
      ++counters_.evictions;
      counters_.evicted_bytes += bytes;
    }
  }
  uint64_t freed = 0;
  for (const auto& [path, bytes] : gone) {
    (void)RemoveTree(path);
    freed += bytes;
    Log(LogLevel::kInfo, "image.layer_evicted", "path={} bytes={}", path, bytes);
  }
  return freed;
}

ImageCacheStats ImageStore::Stats() const {
  std::lock_guard lock(mu_);
  ImageCacheStats s = counters_;
  s.layers = layers_.size();
  s.bytes = 0;
  for (const auto& [_, l] : layers_) {
    s.bytes += l.bytes;
  }
  std::set<std::string> held;
  for (const auto& [_, hexes] : leases_) {
    held.insert(hexes.begin(), hexes.end());
  }
  s.leased_layers = 0;
  for (const auto& h : held) {
    s.leased_layers += layers_.count(h);
  }
  s.max_bytes = opts_.max_bytes;
  return s;
}

void ExportImageMetrics(const ImageCacheStats& s, Metrics& m) {
  m.Describe("agentbox_image_cache_hits_total", "counter",
             "Image layers found already unpacked in the jail's image cache.");
  m.Describe("agentbox_image_cache_misses_total", "counter",
             "Image layers unpacked into the jail's image cache.");
  m.Describe("agentbox_image_cache_evictions_total", "counter",
             "Unused image layers evicted from the cache to keep it under its bound.");
  m.Describe("agentbox_image_cache_evicted_bytes_total", "counter",
             "Bytes of image layers evicted from the cache.");
  m.Describe("agentbox_image_cache_engine_exports_total", "counter",
             "Images exported from the local Docker engine into the cache.");
  m.Describe("agentbox_image_cache_bytes", "gauge", "Bytes of unpacked image layers cached.");
  m.Describe("agentbox_image_cache_layers", "gauge", "Image layers cached.");
  m.Describe("agentbox_image_cache_leased_layers", "gauge",
             "Cached image layers in use by a sandbox (never evicted).");
  m.Describe("agentbox_image_cache_limit_bytes", "gauge",
             "Bound of the image cache (AGENTBOX_IMAGE_CACHE_BYTES; 0: unbounded).");
  const Labels l = {{"backend", "jail"}};
  m.Set("agentbox_image_cache_hits_total", l, static_cast<double>(s.hits));
  m.Set("agentbox_image_cache_misses_total", l, static_cast<double>(s.misses));
  m.Set("agentbox_image_cache_evictions_total", l, static_cast<double>(s.evictions));
  m.Set("agentbox_image_cache_evicted_bytes_total", l, static_cast<double>(s.evicted_bytes));
  m.Set("agentbox_image_cache_engine_exports_total", l, static_cast<double>(s.engine_exports));
  m.Set("agentbox_image_cache_bytes", l, static_cast<double>(s.bytes));
  m.Set("agentbox_image_cache_layers", l, static_cast<double>(s.layers));
  m.Set("agentbox_image_cache_leased_layers", l, static_cast<double>(s.leased_layers));
  m.Set("agentbox_image_cache_limit_bytes", l, static_cast<double>(s.max_bytes));
}

}  // namespace agentbox::images
