#include "guest/sessions/shell_script.h"

#include <algorithm>
#include <array>
#include <charconv>

#include "common/shell_quote.h"
#include "common/strings.h"

namespace agentbox::guest {
namespace {

// The helper that restores `$?` before each command. `declare -f` prints it back exactly in
// this form; it is cut out of captured function text so it never enters the user's state.
constexpr std::string_view kRcHelperDef = "__ab_rc() { return \"$1\"; }\n";
constexpr std::string_view kRcHelperPrinted = "__ab_rc () \n{ \n    return \"$1\"\n}\n";

constexpr std::string_view kBashPost =
    R"(__ab_post='{ printf "%s%d\0C%s\0V" "${__ab_tag:-R}" "$__ab_st" "$PWD"; declare -p; )"
    R"(printf "\0F"; )"
    R"(declare -f; printf "\0X"; declare -Fx; printf "\0A"; alias -p; printf "\0"; } >&253 )"
    R"(2>/dev/null')"
    "\n";
constexpr std::string_view kShPost =
    R"(__ab_post='{ printf "%s%d\0C%s\0P" "${__ab_tag:-R}" "$__ab_st" "$PWD"; export -p; )"
    R"(printf "\0"; } >&9 )"
    R"(2>/dev/null')"
    "\n";
// The EXIT trap tags its record 'Q' so the guest knows this shell is gone after it.
constexpr std::string_view kTrap = "trap '__ab_st=$?; __ab_tag=Q; eval \"$__ab_post\"' EXIT\n";

// Variables bash maintains itself (or that describe the machine rather than the session):
// restoring them would fail (readonly) or lie (PPID, HOSTNAME after a move).
constexpr std::array<std::string_view, 42> kSkipVariables = {"BASH",
                                                             "BASHOPTS",
                                                             "BASHPID",
                                                             "BASH_ALIASES",
                                                             "BASH_ARGC",
                                                             "BASH_ARGV",
                                                             "BASH_ARGV0",
                                                             "BASH_CMDS",
                                                             "BASH_COMMAND",
                                                             "BASH_EXECUTION_STRING",
                                                             "BASH_LINENO",
                                                             "BASH_REMATCH",
                                                             "BASH_SOURCE",
                                                             "BASH_SUBSHELL",
                                                             "BASH_VERSINFO",
                                                             "BASH_VERSION",
                                                             "BASH_LOADABLES_PATH",
                                                             "BASH_COMPAT",
                                                             "COLUMNS",
                                                             "LINES",
                                                             "COMP_WORDBREAKS",
                                                             "DIRSTACK",
                                                             "EPOCHREALTIME",
                                                             "EPOCHSECONDS",
                                                             "EUID",
                                                             "FUNCNAME",
                                                             "GROUPS",
                                                             "HISTCMD",
                                                             "HOSTNAME",
                                                             "HOSTTYPE",
                                                             "MACHTYPE",
                                                             "OSTYPE",
                                                             "LINENO",
                                                             "PIPESTATUS",
                                                             "PPID",
                                                             "PWD",
                                                             "RANDOM",
                                                             "SECONDS",
                                                             "SHELLOPTS",
                                                             "SHLVL",
                                                             "SRANDOM",
                                                             "UID"};

bool SkipVariable(std::string_view name) {
  if (name == "_" || name.starts_with("__ab_")) {
    return true;
  }
  return std::find(kSkipVariables.begin(), kSkipVariables.end(), name) != kSkipVariables.end();
}

// Options that are on in a fresh non-interactive bash; restoring turns off those the session
// turned off. Options that only make sense interactively are never touched.
constexpr std::array<std::string_view, 3> kDefaultSetOptions = {"braceexpand", "hashall",
                                                                "interactive-comments"};
constexpr std::array<std::string_view, 4> kNeverRestoreSetOptions = {"monitor", "history", "emacs",
                                                                     "vi"};
constexpr std::array<std::string_view, 12> kDefaultShoptOptions = {
    "checkwinsize",  "cmdhist",         "complete_fullquote", "extquote",
    "force_fignore", "globasciiranges", "hostcomplete",       "interactive_comments",
    "progcomp",      "promptvars",      "sourcepath",         "expand_aliases"};

std::vector<std::string_view> SplitColons(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(':', start);
    if (end == std::string_view::npos) {
      end = s.size();
    }
    if (end > start) {
      out.push_back(s.substr(start, end - start));
    }
    start = end + 1;
  }
  return out;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool IsValidName(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), IsNameChar);
}

bool IsOptionName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes the body of $'...' starting after the opening quote; stops after the closing quote.
Result<void> DecodeAnsiC(std::string_view t, size_t& pos, std::string& out) {
  while (pos < t.size()) {
    char c = t[pos++];
    if (c == '\'') {
      return {};
    }
    if (c != '\\') {
      out += c;
      continue;
    }
    if (pos >= t.size()) {
      break;
    }
    char e = t[pos++];
    switch (e) {
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'e':
      case 'E':
        out += '\x1b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case '?':
        out += '?';
        break;
      case 'c':
        if (pos < t.size()) {
          out += static_cast<char>(t[pos++] & 0x1F);
        }
        break;
      case 'x': {
        int v = 0;
        int n = 0;
        while (n < 2 && pos < t.size() && HexValue(t[pos]) >= 0) {
          v = v * 16 + HexValue(t[pos++]);
          ++n;
        }
        if (n == 0) {
          out += "\\x";
        } else {
          out += static_cast<char>(v);
        }
        break;
      }
      case 'u':
      case 'U': {
        const int max = e == 'u' ? 4 : 8;
        uint32_t v = 0;
        int n = 0;
        while (n < max && pos < t.size() && HexValue(t[pos]) >= 0) {
          v = v * 16 + HexValue(t[pos++]);
          ++n;
        }
        if (n == 0) {
          out += '\\';
          out += e;
        } else {
          AppendUtf8(out, std::min<uint32_t>(v, 0x10FFFF));
        }
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          int v = e - '0';
          int n = 1;
          while (n < 3 && pos < t.size() && t[pos] >= '0' && t[pos] <= '7') {
            v = v * 8 + (t[pos++] - '0');
            ++n;
          }
          out += static_cast<char>(v & 0xFF);
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return Fail(ErrorCode::kInvalidArgument, "unterminated $'...' in shell state");
}

// Skips one parenthesised array value "( ... )" respecting quotes; pos is at '('.
Result<void> SkipArray(std::string_view t, size_t& pos) {
  int depth = 0;
  while (pos < t.size()) {
    char c = t[pos];
    if (c == '(') {
      ++depth;
      ++pos;
    } else if (c == ')') {
      ++pos;
      if (--depth == 0) {
        return {};
      }
    } else if (c == '\\') {
      pos += 2;
    } else if (c == '\'') {
      const size_t end = t.find('\'', pos + 1);
      if (end == std::string_view::npos) {
        break;
      }
      pos = end + 1;
    } else if (c == '"' || (c == '$' && pos + 1 < t.size() && t[pos + 1] == '\'')) {
      // Skip one quoted segment, honouring backslash escapes inside it.
      const char close = c == '"' ? '"' : '\'';
      pos += c == '"' ? 1 : 2;
      while (pos < t.size() && t[pos] != close) {
        pos += t[pos] == '\\' ? 2 : 1;
      }
      if (pos >= t.size()) {
        break;
      }
      ++pos;
    } else {
      ++pos;
    }
  }
  return Fail(ErrorCode::kInvalidArgument, "unterminated array in shell state");
}

}  // namespace

int StatusFdFor(ShellKind kind) { return kind == ShellKind::kBash ? kStatusFd : kShStatusFd; }

Result<std::string> DecodeShellWord(std::string_view t, size_t& pos) {
  std::string out;
  while (pos < t.size()) {
    char c = t[pos];
    if (c == ' ' || c == '\t' || c == '\n') {
      break;
    }
    if (c == '\'') {
      size_t end = t.find('\'', pos + 1);
      if (end == std::string_view::npos) {
        return Fail(ErrorCode::kInvalidArgument, "unterminated '...' in shell state");
      }
      out.append(t.substr(pos + 1, end - pos - 1));
      pos = end + 1;
    } else if (c == '$' && pos + 1 < t.size() && t[pos + 1] == '\'') {
      pos += 2;
      if (auto r = DecodeAnsiC(t, pos, out); !r) {
        return Fail(r.error());
      }
    } else if (c == '"') {
      ++pos;
      bool closed = false;
      while (pos < t.size()) {
        char d = t[pos++];
        if (d == '"') {
          closed = true;
          break;
        }
        if (d == '\\' && pos < t.size()) {
          char e = t[pos];
          if (e == '\\' || e == '"' || e == '$' || e == '`') {
            out += e;
            ++pos;
            continue;
          }
          if (e == '\n') {
            ++pos;
            continue;
          }
        }
        out += d;
      }
      if (!closed) {
        return Fail(ErrorCode::kInvalidArgument, "unterminated \"...\" in shell state");
      }
    } else if (c == '\\' && pos + 1 < t.size()) {
      out += t[pos + 1];
      pos += 2;
    } else {
      out += c;
      ++pos;
    }
  }
  return out;
}

Result<void> ParseDeclareOutput(std::string_view t, SessionState& state) {
  size_t pos = 0;
  while (pos < t.size()) {
    if (t[pos] == '\n' || t[pos] == ' ') {
      ++pos;
      continue;
    }
    const size_t start = pos;
    if (t.substr(pos, 8) != "declare ") {
      return Fail(ErrorCode::kInvalidArgument, "unexpected text in declare output");
    }
    pos += 8;
    size_t sp = t.find(' ', pos);
    if (sp == std::string_view::npos) {
      return Fail(ErrorCode::kInvalidArgument, "truncated declare line");
    }
    std::string_view flags = t.substr(pos, sp - pos);
    pos = sp + 1;
    size_t name_end = pos;
    while (name_end < t.size() && IsNameChar(t[name_end])) {
      ++name_end;
    }
    std::string_view name = t.substr(pos, name_end - pos);
    pos = name_end;
    bool has_value = pos < t.size() && t[pos] == '=';
    bool is_array = false;
    std::string value;
    if (has_value) {
      ++pos;
      if (pos < t.size() && t[pos] == '(') {
        is_array = true;
        if (auto r = SkipArray(t, pos); !r) {
          return Fail(r.error());
        }
      } else {
        auto w = DecodeShellWord(t, pos);
        if (!w) {
          return Fail(w.error());
        }
        value = std::move(*w);
      }
    }
    std::string_view statement = t.substr(start, pos - start);
    // Skip to the end of the line.
    while (pos < t.size() && t[pos] != '\n') {
      ++pos;
    }
    if (name == "SHELLOPTS") {
      state.set_options = value;
      continue;
    }
    if (name == "BASHOPTS") {
      state.shopt_options = value;
      continue;
    }
    if (!IsValidName(name) || SkipVariable(name)) {
      continue;
    }
    const bool exported = flags.find('x') != std::string_view::npos;
    const bool array = is_array || flags.find('a') != std::string_view::npos ||
                       flags.find('A') != std::string_view::npos;
    if (exported && has_value && !array) {
      state.env[std::string(name)] = std::move(value);
    } else {
      state.variables.emplace_back(statement);
    }
  }
  return {};
}

Result<void> ParseExportOutput(std::string_view t, SessionState& state) {
  size_t pos = 0;
  while (pos < t.size()) {
    if (t[pos] == '\n' || t[pos] == ' ') {
      ++pos;
      continue;
    }
    if (t.substr(pos, 7) == "export ") {
      pos += 7;
    } else if (t.substr(pos, 11) == "declare -x ") {
      pos += 11;
    } else {
      return Fail(ErrorCode::kInvalidArgument, "unexpected text in export output");
    }
    size_t name_end = pos;
    while (name_end < t.size() && IsNameChar(t[name_end])) {
      ++name_end;
    }
    std::string name(t.substr(pos, name_end - pos));
    pos = name_end;
    if (pos < t.size() && t[pos] == '=') {
      ++pos;
      auto w = DecodeShellWord(t, pos);
      if (!w) {
        return Fail(w.error());
      }
      if (IsValidName(name) && !SkipVariable(name) && name != "OLDPWD") {
        state.env[name] = std::move(*w);
      }
    }
    while (pos < t.size() && t[pos] != '\n') {
      ++pos;
    }
  }
  return {};
}

Result<StatusParser::Record> ParseRecord(ShellKind kind, std::string_view rec) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (start < rec.size()) {
    size_t end = rec.find('\0', start);
    if (end == std::string_view::npos) {
      end = rec.size();
    }
    fields.push_back(rec.substr(start, end - start));
    start = end + 1;
  }
  const size_t expected = kind == ShellKind::kBash ? 6 : 3;
  if (fields.size() != expected) {
    return Fail(ErrorCode::kInternal, "malformed shell state record");
  }
  StatusParser::Record r;
  r.state.shell = kind;
  auto expect = [&](size_t i, char tag) { return !fields[i].empty() && fields[i][0] == tag; };
  if (!(expect(0, 'R') || expect(0, 'Q')) || !expect(1, 'C')) {
    return Fail(ErrorCode::kInternal, "malformed shell state record header");
  }
  std::string_view rc = fields[0].substr(1);
  if (std::from_chars(rc.data(), rc.data() + rc.size(), r.exit_code).ec != std::errc()) {
    return Fail(ErrorCode::kInternal, "malformed exit code in shell state record");
  }
  r.state.last_exit_code = r.exit_code;
  r.exiting = fields[0][0] == 'Q';
  r.state.cwd = std::string(fields[1].substr(1));
  if (kind == ShellKind::kSh) {
    if (!expect(2, 'P')) {
      return Fail(ErrorCode::kInternal, "malformed sh state record");
    }
    if (auto p = ParseExportOutput(fields[2].substr(1), r.state); !p) {
      r.partial_error = p.error().message;
    }
    return r;
  }
  if (!expect(2, 'V') || !expect(3, 'F') || !expect(4, 'X') || !expect(5, 'A')) {
    return Fail(ErrorCode::kInternal, "malformed bash state record");
  }
  if (auto p = ParseDeclareOutput(fields[2].substr(1), r.state); !p) {
    r.partial_error = p.error().message;
    return r;
  }
  std::string functions(fields[3].substr(1));
  if (size_t at = functions.find(kRcHelperPrinted); at != std::string::npos) {
    functions.erase(at, kRcHelperPrinted.size());
  }
  r.state.functions = std::move(functions);
  std::string_view xf = fields[4].substr(1);
  size_t p = 0;
  while ((p = xf.find("declare -fx ", p)) != std::string_view::npos) {
    p += 12;
    size_t e = p;
    while (e < xf.size() && xf[e] != '\n') {
      ++e;
    }
    std::string name(xf.substr(p, e - p));
    if (!name.starts_with("__ab_")) {
      r.state.exported_functions.push_back(std::move(name));
    }
    p = e;
  }
  r.state.aliases = std::string(fields[5].substr(1));
  return r;
}

void StatusParser::Feed(std::string_view bytes) { buf_.append(bytes); }

std::optional<Result<StatusParser::Record>> StatusParser::Take() {
  const int fields = kind_ == ShellKind::kBash ? 6 : 3;
  size_t pos = 0;
  for (int i = 0; i < fields; ++i) {
    pos = buf_.find('\0', pos);
    if (pos == std::string::npos) {
      return std::nullopt;
    }
    ++pos;
  }
  // The record is everything up to the last field's terminator (exclusive).
  Result<Record> r = ParseRecord(kind_, std::string_view(buf_).substr(0, pos - 1));
  buf_.erase(0, pos);
  return r;
}

std::string RestoreScript(const SessionState& s) {
  if (s.shell != ShellKind::kBash) {
    return {};
  }
  std::string out;
  for (const auto& v : s.variables) {
    out += v;
    out += " 2>/dev/null\n";
  }
  if (!s.functions.empty()) {
    out += s.functions;
    if (out.back() != '\n') {
      out += '\n';
    }
  }
  for (const auto& f : s.exported_functions) {
    if (IsValidName(f)) {
      out += "export -f " + f + " 2>/dev/null\n";
    }
  }
  if (!s.aliases.empty()) {
    out += s.aliases;
    if (out.back() != '\n') {
      out += '\n';
    }
  }
  // Options last: restoring errexit earlier would make a failing restore line fatal.
  if (!s.shopt_options.empty()) {
    auto on = SplitColons(s.shopt_options);
    std::string set_on;
    for (auto o : on) {
      if (IsOptionName(o)) {
        set_on += ' ';
        set_on += o;
      }
    }
    std::string set_off;
    for (auto d : kDefaultShoptOptions) {
      if (std::find(on.begin(), on.end(), d) == on.end()) {
        set_off += ' ';
        set_off += d;
      }
    }
    if (!set_on.empty()) {
      out += "shopt -s" + set_on + " 2>/dev/null\n";
    }
    if (!set_off.empty()) {
      out += "shopt -u" + set_off + " 2>/dev/null\n";
    }
  }
  if (!s.set_options.empty()) {
    auto on = SplitColons(s.set_options);
    for (auto d : kDefaultSetOptions) {
      if (std::find(on.begin(), on.end(), d) == on.end()) {
        out += "set +o " + std::string(d) + " 2>/dev/null\n";
      }
    }
    for (auto o : on) {
      const bool skip = std::find(kNeverRestoreSetOptions.begin(), kNeverRestoreSetOptions.end(),
                                  o) != kNeverRestoreSetOptions.end();
      const bool is_default = std::find(kDefaultSetOptions.begin(), kDefaultSetOptions.end(), o) !=
                              kDefaultSetOptions.end();
      if (!skip && !is_default && IsOptionName(o)) {
        out += "set -o " + std::string(o) + " 2>/dev/null\n";
      }
    }
  }
  return out;
}

std::string BootstrapScript(const SessionState& s) {
  std::string out = "exec 3<&-\n";
  out += kRcHelperDef;
  if (s.shell == ShellKind::kBash) {
    out += kBashPost;
    out += kTrap;
    out += "shopt -s expand_aliases\n";
    out += RestoreScript(s);
  } else {
    out += kShPost;
    out += kTrap;
  }
  return out;
}

std::string CommandLine(ShellKind kind, std::string_view command, int previous_exit_code,
                        Stdio stdio, const std::string& pty_path, const std::string& exec_dir) {
  // `__ab_rc N && :` sets $? to N without tripping errexit (a failing command that is not the
  // last of an && list never exits the shell).
  std::string out = "{ __ab_rc " + std::to_string(previous_exit_code) + " && :; } 2>/dev/null; ";
  if (!exec_dir.empty()) {
    out += "__ab_od=$PWD; cd -- " + ShellQuote(exec_dir) + " && ";
  }
  out += kind == ShellKind::kBash ? "eval -- " : "eval ";
  out += ShellQuote(command);
  switch (stdio) {
    case Stdio::kSession:
      break;
    case Stdio::kNull:
      out += " </dev/null";
      break;
    case Stdio::kPty:
      out += " 0<>" + ShellQuote(pty_path) + " 1>&0 2>&0";
      break;
  }
  out += "\n{ __ab_st=$?; ";
  if (!exec_dir.empty()) {
    out += "cd -- \"$__ab_od\"; ";
  }
  out += "eval \"$__ab_post\"; } 2>/dev/null\n";
  return out;
}

std::string OneShotScript(const SessionState& s, std::string_view command) {
  std::string out;
  if (s.shell == ShellKind::kBash) {
    out += "shopt -s expand_aliases\n";
    out += RestoreScript(s);
    out += "eval -- ";
  } else {
    out += "eval ";
  }
  out += ShellQuote(command);
  out += '\n';
  return out;
}

}  // namespace agentbox::guest
