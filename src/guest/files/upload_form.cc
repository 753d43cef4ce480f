#include "guest/files/upload_form.h"

#include <utility>

namespace agentbox::guest {

namespace {
constexpr size_t kMaxField = 64 * 1024;
}  // namespace

UploadForm::UploadForm(std::string boundary, std::optional<std::string> path, FileConfig cfg,
                       bool open_at_path)
    : parser_(std::move(boundary)),
      path_(std::move(path)),
      cfg_(std::move(cfg)),
      open_at_path_(open_at_path) {
  parser_.on_part_begin = [this](const PartHeaders& h) -> Result<void> {
    in_file_ = h.name == "file" || (!h.filename.empty() && h.name != "path");
    field_name_ = h.name;
    field_value_.clear();
    if (in_file_) {
      if (sink_) {
        return Fail(ErrorCode::kInvalidArgument, "only one file part is accepted");
      }
      auto s = UploadSink::Open(open_at_path_ ? path_.value_or("") : "", cfg_);
      if (!s) {
        return Fail(s.error());
      }
      sink_.emplace(std::move(*s));
    }
    return {};
  };
  parser_.on_part_data = [this](std::string_view d) -> Result<void> {
    if (in_file_) {
      return sink_->Write(d);
    }
    if (field_value_.size() + d.size() > kMaxField) {
      return Fail(ErrorCode::kTooLarge, "form field '" + field_name_ + "' is over 64 KiB");
    }
    field_value_.append(d);
    return {};
  };
  parser_.on_part_end = [this]() -> Result<void> {
    if (!in_file_) {
      if (field_name_ == "path" && !path_) {
        path_ = field_value_;
      }
      field_names_.push_back(field_name_);
    }
    in_file_ = false;
    return {};
  };
}

}  // namespace agentbox::guest
