#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "guest/files/file_ops.h"
#include "guest/files/multipart.h"

namespace agentbox::guest {

// The multipart form of POST /api/v1/file/upload (sandbox-api.md): field `path` (or ?path=) names
// the destination; the file part (named `file`, or any part with a filename other than `path`)
// goes straight to an UploadSink, never held in memory; one file part only; other fields are at
// most 64 KiB and are reported by name (the caller warns about unknown ones). Shared by the guest
// and cloudrun's job-mode file server, so both read a form the same way.
class UploadForm {
 public:
  // `path` is the query's ?path=, which wins over the form field. With `open_at_path`, a file
  // part that comes after the path is written next to its destination (a rename commits it);
  // otherwise, and before the path is known, under cfg.upload_tmp_dir.
  UploadForm(std::string boundary, std::optional<std::string> path, FileConfig cfg,
             bool open_at_path);

  Result<void> Feed(std::string_view bytes) { return parser_.Feed(bytes); }
  // The body has ended: a truncated form is an error.
  Result<void> Finish() { return parser_.Finish(); }

  // The names of the non-file parts, in order.
  const std::vector<std::string>& field_names() const { return field_names_; }
  const std::optional<std::string>& path() const { return path_; }
  // The file part's bytes; empty when the form had none.
  std::optional<UploadSink>& sink() { return sink_; }

 private:
  MultipartParser parser_;
  std::optional<std::string> path_;
  FileConfig cfg_;
  bool open_at_path_;
  std::optional<UploadSink> sink_;
  bool in_file_ = false;
  std::string field_name_;
  std::string field_value_;
  std::vector<std::string> field_names_;
};

}  // namespace agentbox::guest
