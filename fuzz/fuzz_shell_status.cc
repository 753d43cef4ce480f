// The state records a session's shell writes after each command (guest/sessions/shell_script):
// the shell runs whatever the sandbox's user typed, so `declare -p`, `export -p` and the record
// framing carry arbitrary text. Input: one byte choosing the shell and the chunk size, then the
// bytes of the status descriptor, fed to StatusParser in chunks; the same bytes also go to the
// declare/export parsers and the shell-word decoder directly. A parsed state is then restored
// (RestoreScript, BootstrapScript), as the next command does.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "guest/sessions/shell_script.h"

using agentbox::SessionState;
using agentbox::ShellKind;
namespace guest = agentbox::guest;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const ShellKind kind = (data[0] & 1) ? ShellKind::kSh : ShellKind::kBash;
  const size_t chunk = 1 + (data[0] >> 1) % 64;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  guest::StatusParser parser(kind);
  for (size_t pos = 0; pos < in.size(); pos += chunk) {
    parser.Feed(in.substr(pos, chunk));
    while (auto record = parser.Take()) {
      if (*record) {
        (void)guest::RestoreScript((*record)->state);
        (void)guest::BootstrapScript((*record)->state);
      }
    }
  }

  SessionState declared;
  if (guest::ParseDeclareOutput(in, declared)) {
    (void)guest::RestoreScript(declared);
  }
  SessionState exported;
  (void)guest::ParseExportOutput(in, exported);

  for (size_t pos = 0; pos < in.size();) {
    const size_t before = pos;
    if (!guest::DecodeShellWord(in, pos)) {
      break;
    }
    if (pos <= before) {
      pos = before + 1;  // a word that consumed nothing: step on (the decoder's own choice)
    }
    if (pos > in.size()) {
      __builtin_trap();  // advanced past the end
    }
  }
  return 0;
}
