#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api_error.h"
#include "faults.h"
#include "http/server.h"
#include "object_store.h"

// The Cloud Storage JSON API subset (gcp-wire.md) over an ObjectStore:
//
//   GET/POST     /storage/v1/b?project=P                   buckets list / insert
//   GET/DELETE   /storage/v1/b/{b}                         buckets get / delete
//   GET          /storage/v1/b/{b}/o                       objects list
//   GET          /storage/v1/b/{b}/o/{o}[?alt=media]       objects get (metadata or bytes)
//   GET          /download/storage/v1/b/{b}/o/{o}?alt=media
//   PATCH/PUT    /storage/v1/b/{b}/o/{o}                   objects patch / update (metadata)
//   DELETE       /storage/v1/b/{b}/o/{o}                   objects delete
//   POST         /storage/v1/b/{b}/o/{o}/rewriteTo/b/{b2}/o/{o2}   (and copyTo)
//   POST         /storage/v1/b/{b}/o/{o}/compose           up to 32 sources
//   POST         /upload/storage/v1/b/{b}/o?uploadType=media|multipart|resumable
//   PUT/POST     /upload/storage/v1/b/{b}/o?upload_id=ID   resumable chunks (Content-Range)
//   DELETE       /upload/storage/v1/b/{b}/o?upload_id=ID   cancel a resumable upload
//
// Upload bodies are streamed to DIR/tmp (or DIR/uploads for resumable sessions) and hashed on
// the way, never held in memory. Object names are one URL path segment, percent-decoded here.
namespace agentbox::gcpemu {

class StorageApi {
 public:
  explicit StorageApi(ObjectStore& store) : store_(store) {}

  // Whether the path belongs to this API.
  static bool Owns(const http::Request& req);
  // Whether the request is an upload whose body must be streamed (OpenUpload).
  static bool IsUpload(const http::Request& req);
  // Google's method id ("storage.objects.get"), for fault rules; "storage.unknown" otherwise.
  static std::string MethodId(const http::Request& req);

  // A sink that stores the upload's body and answers at its end. `fault` may ask for a racing
  // writer before preconditions are checked.
  std::unique_ptr<http::BodySink> OpenUpload(const http::Request& req, const FaultDecision& fault);
  void Handle(const http::Request& req, const FaultDecision& fault, http::Respond respond);

  // The object resource as the API shows it; `base` is "http://host:port".
  static Json ObjectJson(const std::string& bucket, const ObjectMeta& m, const std::string& base);
  static Json BucketJson(const BucketMeta& b, const std::string& base);

  ObjectStore& store() { return store_; }
  // POST /storage/v1/b/{b}/o/{o}/compose: the sources' bytes concatenated into `name`.
  void Compose(const std::string& bucket, const std::string& name, const http::Request& req,
               const Preconditions& pre, http::Respond respond);

  // One resumable upload session, persisted as DIR/uploads/ID.json + ID.data so that a client
  // can resume after the emulator restarts.
  struct Session {
    std::string id;
    std::string bucket;
    std::string name;
    NewObject obj;
    Preconditions pre;
    uint64_t received = 0;
    bool busy = false;      // a chunk is being written (guarded by StorageApi::mu_)
    bool finished = false;  // committed: further PUTs answer with the object
    Json result;
    // Running hashes while chunks arrive in order within this process; null otherwise (the
    // data file is hashed at the end).
    std::shared_ptr<ObjectHasher> hasher;
  };
  std::shared_ptr<Session> FindSession(const std::string& id);
  void SaveSession(const Session& s);
  void DropSession(const std::string& id);
  std::string SessionDataPath(const std::string& id) const;

 private:
  ObjectStore& store_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;  // guarded by mu_
};

// Helpers shared by the storage handlers and uploads.
std::string BaseUrl(const http::Request& req);
ApiResult<Preconditions> PreconditionsFromQuery(const http::Request& req);
// The raw path's segments, each percent-decoded ('/' inside an object name arrives as %2F).
std::vector<std::string> PathSegments(const http::Request& req);

}  // namespace agentbox::gcpemu
