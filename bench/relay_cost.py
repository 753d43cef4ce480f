#!/usr/bin/env python3
"""What agentboxd spends relaying one large guest answer: its CPU time per file/list of a
65,000-file directory (about 4.7 MB of JSON), on a quiet machine.

    python3 bench/relay_cost.py build/release/src/daemon/agentboxd [LISTS]
    BACKEND=docker python3 bench/relay_cost.py build/release/src/daemon/agentboxd

Starts its own agentboxd (no warm pool) on a fresh state directory, creates one sandbox, fills
a directory in it, lists it once to warm up, then LISTS times (default 40), and prints the
daemon's CPU time (user + system, /proc/PID/stat) and the wall time per list. The figure is
deterministic enough to compare builds (docs/reliability.md §4, bug 11), unlike a latency
percentile on a shared machine.
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1]
LISTS = int(sys.argv[2]) if len(sys.argv) > 2 else 40
BACKEND = os.environ.get("BACKEND", "jail")
FILES = 65000

state = tempfile.mkdtemp(prefix="agentbox-relay-cost-")
sock = os.path.join(state, "agentboxd.sock")
env = dict(os.environ, AGENTBOX_DEFAULT_DISK_BYTES=str(256 << 20), AGENTBOX_MIN_FREE_BYTES="0",
           AGENTBOX_WARM_POOL_SIZE="0", AGENTBOX_FALLBACK_CHAIN=BACKEND)
daemon = subprocess.Popen([BIN, "--env-file", "/dev/null", "--backend", BACKEND, "--listen",
                           "unix:" + sock, "--state-dir", os.path.join(state, "state")],
                          stderr=open(os.path.join(state, "agentboxd.log"), "w"), env=env)


class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sock)


def call(method, path, body=None):
    c = Unix("agentboxd", timeout=600)
    c.request(method, path, body=None if body is None else json.dumps(body),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


deleted = True  # nothing to delete until a sandbox exists
sid = None
try:
    for _ in range(600):
        try:
            if call("GET", "/healthz")[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    status, body = call("POST", "/v1/sandboxes", {"ttl_s": 600})
    if status not in (200, 201):
        sys.exit(f"create failed: {status} {body[:300]!r}")
    sid = json.loads(body)["data"]["id"]
    deleted = False
    api = f"/v1/sandboxes/{sid}/api/v1/"
    status, body = call("POST", api + "shell/exec", {
        "id": "fill", "wait_seconds": 300,
        "command": f"mkdir -p /workspace/m && cd /workspace/m && seq 1 {FILES} | xargs touch; "
                   "ls | wc -l"})
    print(f"backend {BACKEND}: files made:", json.loads(body)["data"]["output"].strip())
    listing = {"path": "/workspace/m"}
    call("POST", api + "file/list", listing)
    cpu0, wall0, size = cpu_seconds(daemon.pid), time.monotonic(), 0
    for _ in range(LISTS):
        status, body = call("POST", api + "file/list", listing)
        if status != 200:
            sys.exit(f"file/list failed: {status} {body[:300]!r}")
        size = len(body)
    cpu1, wall1 = cpu_seconds(daemon.pid), time.monotonic()
    print(f"{LISTS} lists of {size} bytes: daemon CPU {1000 * (cpu1 - cpu0) / LISTS:.1f} ms per "
          f"list, wall {1000 * (wall1 - wall0) / LISTS:.1f} ms per list")
finally:
    if sid is not None:
        deleted = call("DELETE", f"/v1/sandboxes/{sid}")[0] == 200
    daemon.terminate()
    daemon.wait()
    if deleted:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"sandbox not deleted: state left in {state}", file=sys.stderr)
