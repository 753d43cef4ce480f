#include "common/known_fields.h"

#include <algorithm>
#include <cctype>

namespace agentbox {

namespace {

constexpr size_t kMaxNameBytes = 64;

// Lower case without '_', '-' or ' ': the form names are compared in.
std::string Normalized(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '_' || c == '-' || c == ' ') {
      continue;
    }
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

size_t CommonPrefix(std::string_view a, std::string_view b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) {
    ++n;
  }
  return n;
}

// A field name fit for a message and a header: printable ASCII, '"' and '\' replaced (they would
// need escaping inside a quoted-string), at most kMaxNameBytes.
std::string Printable(std::string_view name) {
  std::string out;
  for (char c : name.substr(0, kMaxNameBytes)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u > 0x7e || c == '"' || c == '\\') ? '?' : c;
  }
  if (name.size() > kMaxNameBytes) {
    out += "...";
  }
  return out;
}

}  // namespace

size_t EditDistance(std::string_view a, std::string_view b) {
  // Three rows suffice: transpositions look two rows back.
  std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    prev[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
      }
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string ClosestField(std::string_view name, const std::vector<std::string_view>& known) {
  const std::string n = Normalized(name);
  if (n.empty()) {
    return "";
  }
  std::string best;
  size_t best_distance = 0;
  size_t best_prefix = 0;
  for (std::string_view k : known) {
    const std::string kn = Normalized(k);
    const size_t d = EditDistance(n, kn);
    const size_t shorter = std::min(n.size(), kn.size());
    const size_t longer = std::max(n.size(), kn.size());
    const size_t prefix = CommonPrefix(n, kn);
    const bool close = d == 1 || (d == 2 && shorter >= 5) || d * 3 <= longer || prefix >= 4 ||
                       (prefix == shorter && shorter >= 3);
    if (!close) {
      continue;
    }
    if (best.empty() || d < best_distance || (d == best_distance && prefix > best_prefix)) {
      best = std::string(k);
      best_distance = d;
      best_prefix = prefix;
    }
  }
  return best;
}

std::string UnknownField::Path() const { return where.empty() ? name : where + "." + name; }

std::string UnknownField::Describe() const {
  std::string s = "unknown field '" + name + "'";
  if (!where.empty()) {
    s += " in " + where;
  }
  if (!suggestion.empty()) {
    s += "; did you mean '" + suggestion + "'?";
  }
  return s;
}

Error UnknownFieldError(const UnknownField& f, const std::vector<std::string_view>& known) {
  std::string message = f.Describe();
  if (f.suggestion.empty()) {
    message += known.empty() ? "; this object takes no fields" : "; the fields are ";
    for (size_t i = 0; i < known.size(); ++i) {
      message += (i ? ", " : "") + std::string(known[i]);
    }
  }
  Error e{ErrorCode::kValidation, std::move(message)};
  e.field = f.Path();
  return e;
}

Result<std::vector<UnknownField>> CheckKnownFields(const Json& obj, const FieldSchema& schema,
                                                   std::string_view where) {
  std::vector<UnknownField> unknown;
  if (!obj.is_object()) {
    return unknown;
  }
  for (const auto& [key, value] : obj.items()) {
    if (std::find(schema.known.begin(), schema.known.end(), key) != schema.known.end()) {
      continue;
    }
    UnknownField f{std::string(where), Printable(key), ClosestField(key, schema.known)};
    const bool guarded = !f.suggestion.empty() &&
                         std::find(schema.guarded.begin(), schema.guarded.end(), f.suggestion) !=
                             schema.guarded.end();
    if (schema.policy == UnknownFieldPolicy::kReject || guarded) {
      return Fail(UnknownFieldError(f, schema.known));
    }
    unknown.push_back(std::move(f));
  }
  return unknown;
}

std::string WarningHeaderValue(const UnknownField& f) {
  std::string text = "unknown field '" + f.name + "'";
  if (!f.where.empty()) {
    text += " in " + f.where;
  }
  text += " ignored";
  if (!f.suggestion.empty()) {
    text += "; did you mean '" + f.suggestion + "'?";
  }
  return "299 agentbox \"" + text + "\"";
}

std::vector<std::string> WarningHeaderValues(const std::vector<UnknownField>& fields) {
  std::vector<std::string> out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (out.size() + 1 == kMaxFieldWarnings && fields.size() > kMaxFieldWarnings) {
      out.push_back("299 agentbox \"" + std::to_string(fields.size() - i) +
                    " more unknown fields ignored\"");
      break;
    }
    out.push_back(WarningHeaderValue(fields[i]));
  }
  return out;
}

}  // namespace agentbox
