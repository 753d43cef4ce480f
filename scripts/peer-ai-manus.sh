#!/usr/bin/env bash
# Runs the ai-manus sandbox API (the peer agentbox-guest is measured against, see
# docs/benchmarks.md) on 127.0.0.1:PORT, from an external copy of its source.
#
# Usage:
#   scripts/peer-ai-manus.sh [start|stop|status|install] [--mirror DIR] [--rev REV]
#                            [--port PORT] [--state-dir DIR]
#
#   start    install the Debian packages if missing, extract the peer, start uvicorn and print
#            its PID alone on stdout (default). Idempotent: a peer already running on PORT from
#            the same revision is left alone and its PID printed.
#   stop     stop the peer started on PORT (only the process this script started).
#   status   print the PID of the peer running on PORT, exit 1 if none.
#   install  only install the Debian packages.
#
# Options (or environment variables):
#   --mirror DIR     AI_MANUS_MIRROR  a git directory of the Simpleyyt/ai-manus repository (bare or
#                                     not), or a directory that already holds sandbox/app/.
#                                     Nothing is downloaded here except Debian packages: a session
#                                     gets the mirror with its `fetch` tool (source
#                                     "github:Simpleyyt/ai-manus"), which returns the git dir,
#                                     e.g. /work/.mirror/Simpleyyt+ai-manus/repo.
#   --rev REV        PEER_REV         revision to run (default HEAD). The shell service changed
#                                     in b71d018 (2026-08-15): before it, one subprocess per
#                                     exec (the peer as measured in peers.md; use
#                                     --rev b71d018^); from it on, a persistent bash in tmux.
#   --port PORT      PEER_PORT        default 8090.
#   --state-dir DIR  PEER_STATE_DIR   where the peer's source, the shim, logs, pid files and
#                                     its private tmux socket live (default /tmp/peer-ai-manus).
#                                     Nothing of the peer is ever written into this repository.
#
# Files in STATE_DIR after start: uvicorn-PORT.pid (the API server), uvicorn-PORT.log,
# supervisord.pid, and for the tmux-backed revisions tmux-PORT.pid (the tmux server whose
# children are the sessions' shells; the API server itself has no children then).
#
# Runtime shim. The peer targets pydantic 2, pydantic-settings and libtmux 0.4x from PyPI;
# this machine reaches only Debian 12's packages (pydantic 1.10, FastAPI 0.92, Starlette 0.26,
# uvicorn 0.17, libtmux 0.21). The peer's code runs unmodified; a launcher written to
# STATE_DIR/shim/launch.py adds, before importing it, only the names it uses that the older
# packages spell differently:
#   - pydantic.BaseModel.model_dump      -> BaseModel.dict
#   - pydantic.field_validator(f, mode=) -> pydantic.validator(f, pre=(mode == "before"))
#   - module pydantic_settings           -> pydantic.BaseSettings (v1 keeps it in pydantic)
#   - libtmux Session.active_window, Window.active_pane, Window.kill, Session.kill,
#     Session.set_option(global_=)       -> attached_window, attached_pane, kill_window,
#                                           kill_session, set_option(_global=)
# uvicorn runs as upstream's plain `uvicorn` dependency does (asyncio loop, h11), with its
# default logging (INFO, access log) to STATE_DIR/uvicorn-PORT.log. Upstream runs it under
# supervisord with Xvfb, Chromium and VNC; none of those is started here.
set -euo pipefail

readonly PYTHON=/usr/bin/python3  # Debian's; a pyenv python3 earlier on PATH lacks the packages
readonly PACKAGES=(python3-fastapi python3-uvicorn python3-pydantic python3-multipart
                   python3-email-validator python3-libtmux tmux supervisor curl)
# The peer connects at import to supervisord's RPC socket, at this fixed path (upstream runs it
# under supervisord); a minimal supervisord without programs is started to serve it.
readonly SUPERVISOR_SOCK=/tmp/supervisor.sock

command="start"
mirror="${AI_MANUS_MIRROR:-}"
rev="${PEER_REV:-HEAD}"
port="${PEER_PORT:-8090}"
state_dir="${PEER_STATE_DIR:-/tmp/peer-ai-manus}"

die() { echo "peer-ai-manus: $*" >&2; exit 1; }
say() { echo "peer-ai-manus: $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    start|stop|status|install) command="$1" ;;
    --mirror) mirror="${2:?--mirror needs a value}"; shift ;;
    --rev) rev="${2:?--rev needs a value}"; shift ;;
    --port) port="${2:?--port needs a value}"; shift ;;
    --state-dir) state_dir="${2:?--state-dir needs a value}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
[[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number"

pid_file="$state_dir/uvicorn-$port.pid"
rev_file="$state_dir/uvicorn-$port.rev"
log_file="$state_dir/uvicorn-$port.log"
shim_dir="$state_dir/shim"
supervisor_conf="$state_dir/supervisord.conf"
supervisor_pid_file="$state_dir/supervisord.pid"
tmux_pid_file="$state_dir/tmux-$port.pid"
export TMUX_TMPDIR="$state_dir/tmux-$port"  # the tmux-backed peer gets its own tmux server
unset TMUX

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return
  fi
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >&2
}

# Prints the PID of the peer started by this script on $port, if it still runs.
running_pid() {
  [[ -f "$pid_file" ]] || return 1
  local pid
  pid="$(cat "$pid_file")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$shim_dir/launch.py .*--port $port " || return 1
  echo "$pid"
}

stop_peer() {
  local pid
  if pid="$(running_pid)"; then
    say "stopping pid $pid"
    kill -TERM "$pid"
    for _ in $(seq 50); do
      [[ -d "/proc/$pid" ]] || break
      sleep 0.1
    done
    [[ -d "/proc/$pid" ]] && kill -KILL "$pid"
  fi
  rm -f "$pid_file" "$rev_file"
  stop_supervisord_if_unused
  # Only the private tmux server of TMUX_TMPDIR above: shells of the tmux-backed peer.
  if [[ -S "$TMUX_TMPDIR/tmux-$(id -u)/default" ]]; then
    tmux kill-server 2>/dev/null || true
    rm -f "$TMUX_TMPDIR/tmux-$(id -u)/default"
  fi
  rm -f "$tmux_pid_file"
}

supervisor_pid() {
  local pid
  pid="$(cat "$supervisor_pid_file" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$supervisor_conf" || return 1
  echo "$pid"
}

supervisor_answers() {
  [[ -S "$SUPERVISOR_SOCK" ]] \
    && supervisorctl -s "unix://$SUPERVISOR_SOCK" pid > /dev/null 2>&1
}

# Starts supervisord unless one (ours or not) already answers on $SUPERVISOR_SOCK.
ensure_supervisord() {
  if supervisor_answers; then
    return
  fi
  cat > "$supervisor_conf" <<EOF
; Written by agentbox scripts/peer-ai-manus.sh: only the RPC socket the ai-manus peer expects.
[unix_http_server]
file=$SUPERVISOR_SOCK
chmod=0700

[supervisord]
logfile=$state_dir/supervisord.log
pidfile=$supervisor_pid_file
childlogdir=$state_dir

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
EOF
  rm -f "$SUPERVISOR_SOCK"
  supervisord -c "$supervisor_conf"  # daemonizes
  local deadline=$((SECONDS + 10))
  until supervisor_answers; do
    (( SECONDS <= deadline )) || die "supervisord did not come up (see $state_dir/supervisord.log)"
    sleep 0.1
  done
  say "supervisord pid $(supervisor_pid || echo '?') on $SUPERVISOR_SOCK"
}

# Stops the supervisord this script started, once no peer started by it is left.
stop_supervisord_if_unused() {
  local pid f
  pid="$(supervisor_pid)" || return 0
  for f in "$state_dir"/uvicorn-*.pid; do
    [[ -e "$f" ]] && return 0
  done
  say "stopping supervisord pid $pid"
  kill -TERM "$pid"
}

# Extracts the peer's sandbox/ for $rev into $state_dir/src-SHA and prints that directory.
extract_source() {
  [[ -n "$mirror" ]] || die "give the ai-manus mirror with --mirror DIR or AI_MANUS_MIRROR"
  if [[ -d "$mirror/sandbox/app" ]]; then
    echo "$mirror/sandbox"
    return
  fi
  local git=(git --git-dir="$mirror")
  [[ -d "$mirror/.git" ]] && git=(git --git-dir="$mirror/.git")
  local sha
  sha="$("${git[@]}" rev-parse --verify "$rev^{commit}" 2>/dev/null)" \
    || die "revision '$rev' not found in $mirror"
  local dir="$state_dir/src-${sha:0:12}"
  if [[ ! -f "$dir/.complete" ]]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    "${git[@]}" archive "$sha" sandbox | tar -x -C "$dir"
    [[ -d "$dir/sandbox/app" ]] || die "$mirror at $sha has no sandbox/app/"
    echo "$sha" > "$dir/.complete"
  fi
  echo "$dir/sandbox"
}

write_shim() {
  mkdir -p "$shim_dir"
  cat > "$shim_dir/launch.py.new" <<'PY'
"""Starts the ai-manus sandbox API on Debian 12's Python packages.

Written by agentbox's scripts/peer-ai-manus.sh. The peer's code is not modified: this adds the
few pydantic 2 / pydantic-settings / libtmux 0.4x names it uses, mapped to the Debian versions
(pydantic 1.10, libtmux 0.21), then runs uvicorn as upstream does (asyncio loop, h11).
"""
import argparse
import os
import sys
import types

parser = argparse.ArgumentParser()
parser.add_argument("--app-dir", required=True)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--pidfile", required=True)
args = parser.parse_args()

import pydantic

if not hasattr(pydantic.BaseModel, "model_dump"):
    pydantic.BaseModel.model_dump = pydantic.BaseModel.dict
if not hasattr(pydantic, "field_validator"):
    def field_validator(*fields, mode="after", **_kwargs):
        return pydantic.validator(*fields, pre=(mode == "before"), allow_reuse=True)
    pydantic.field_validator = field_validator
try:
    import pydantic_settings  # noqa: F401
except ImportError:
    settings_module = types.ModuleType("pydantic_settings")
    settings_module.BaseSettings = pydantic.BaseSettings
    sys.modules["pydantic_settings"] = settings_module

try:
    import libtmux
except ImportError:
    libtmux = None
if libtmux is not None:
    Session, Window = libtmux.Session, libtmux.Window
    if not hasattr(Session, "active_window"):
        Session.active_window = property(lambda s: s.attached_window)
    if not hasattr(Window, "active_pane"):
        Window.active_pane = property(lambda w: w.attached_pane)
    if not hasattr(Window, "kill"):
        Window.kill = Window.kill_window
    if not hasattr(Session, "kill"):
        Session.kill = Session.kill_session
    _set_option = Session.set_option
    def set_option(self, option, value, _global=False, global_=None):
        return _set_option(self, option, value, _global=bool(global_) or _global)
    Session.set_option = set_option

sys.path.insert(0, args.app_dir)
os.chdir(args.app_dir)
with open(args.pidfile + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\n")
os.replace(args.pidfile + ".tmp", args.pidfile)

import uvicorn

uvicorn.run("app.main:app", host=args.host, port=args.port, loop="asyncio", http="h11")
PY
  mv "$shim_dir/launch.py.new" "$shim_dir/launch.py"
}

start_peer() {
  install_packages
  mkdir -p "$state_dir" "$TMUX_TMPDIR"
  local src pid
  src="$(extract_source)"
  if pid="$(running_pid)"; then
    if [[ "$(cat "$rev_file" 2>/dev/null)" == "$src" ]]; then
      say "already running on 127.0.0.1:$port from $src"
      echo "$pid"
      return
    fi
    stop_peer
  fi
  write_shim
  ensure_supervisord
  if grep -q "^import libtmux" "$src/app/services/shell.py"; then
    # Started now, and kept without sessions, so that its pid (the parent of every session's
    # bash) is known before the first request: agentbox-guest-bench --extra-pid.
    tmux -f /dev/null start-server \; set -g exit-empty off
    tmux display -p '#{pid}' > "$tmux_pid_file"
    say "tmux server pid $(cat "$tmux_pid_file") (sessions' shells; pid in $tmux_pid_file)"
  fi
  rm -f "$pid_file"
  say "starting $src on 127.0.0.1:$port (log $log_file)"
  HOME="${HOME:-/root}" setsid "$PYTHON" "$shim_dir/launch.py" --app-dir "$src" \
    --host 127.0.0.1 --port "$port" --pidfile "$pid_file" >> "$log_file" 2>&1 < /dev/null &
  local deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null "http://127.0.0.1:$port/docs" 2>/dev/null; do
    if (( SECONDS > deadline )) || { ! kill -0 $! 2>/dev/null && ! running_pid >/dev/null; }; then
      tail -n 30 "$log_file" >&2
      die "the peer did not come up on 127.0.0.1:$port"
    fi
    sleep 0.1
  done
  echo "$src" > "$rev_file"
  running_pid || die "the peer answers on $port but its pid file $pid_file is wrong"
}

case "$command" in
  install) install_packages ;;
  start) start_peer ;;
  stop) stop_peer ;;
  status) running_pid || { say "not running on port $port"; exit 1; } ;;
esac
