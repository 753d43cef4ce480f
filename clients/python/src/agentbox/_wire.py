"""What each API call sends and how its answer is read, shared by the sync and async clients.

A method of :class:`SandboxCalls` or :class:`DaemonCalls` returns a :class:`Call`; a client runs
it over its transport. That keeps one definition of every endpoint for both clients.
"""

import json
import os
import uuid
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from . import types as t
from ._transport import query, quote

# Added to the time a call asks the sandbox to wait, for the client's own socket deadline.
_MARGIN_S = 30.0


@dataclass
class Call:
    method: str
    path: str
    body: Optional[Dict[str, Any]] = None
    parse: Callable[[Any], Any] = lambda d: d
    wait_s: float = 0.0  # how long the call may legitimately block on the daemon's side


def _clean(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class DaemonCalls:
    """Calls on agentboxd itself."""

    @staticmethod
    def create(image: Optional[str] = None, *, env: Optional[Dict[str, str]] = None,
               ttl_s: Optional[int] = None, limits: Optional[Dict[str, Any]] = None,
               labels: Optional[Dict[str, str]] = None, backend: Optional[str] = None,
               network: Optional[str] = None, subject: Optional[str] = None,
               services: Optional[Dict[str, str]] = None) -> Call:
        env = dict(env or {})
        if services:
            # The guest starts these with the sandbox; supervisor/status reports them.
            env["AGENTBOX_SERVICES"] = json.dumps(services)
        body = _clean({"image": image, "env": env or None, "ttl_s": ttl_s, "limits": limits,
                       "labels": labels, "backend": backend, "network": network,
                       "subject": subject})
        return Call("POST", "/v1/sandboxes", body, t.SandboxInfo.from_json, wait_s=120)

    @staticmethod
    def get(sandbox_id: str) -> Call:
        return Call("GET", f"/v1/sandboxes/{quote(sandbox_id)}", None, t.SandboxInfo.from_json)

    @staticmethod
    def list() -> Call:
        return Call("GET", "/v1/sandboxes", None,
                    lambda d: [t.SandboxInfo.from_json(s) for s in (d or {}).get("sandboxes", [])])

    @staticmethod
    def delete(sandbox_id: str) -> Call:
        return Call("DELETE", f"/v1/sandboxes/{quote(sandbox_id)}", None,
                    lambda d: bool((d or {}).get("deleted")), wait_s=60)

    @staticmethod
    def set_timeout(sandbox_id: str, ttl_s: Optional[int] = None) -> Call:
        return Call("POST", f"/v1/sandboxes/{quote(sandbox_id)}/timeout", _clean({"ttl_s": ttl_s}),
                    lambda d: float((d or {}).get("expires_at", 0)))

    @staticmethod
    def restart_guest(sandbox_id: str) -> Call:
        return Call("POST", f"/v1/sandboxes/{quote(sandbox_id)}/restart-guest", {}, wait_s=60)

    @staticmethod
    def info() -> Call:
        return Call("GET", "/v1/info")

    @staticmethod
    def flags() -> Call:
        return Call("GET", "/v1/flags")

    @staticmethod
    def set_flags(flags: Dict[str, Any]) -> Call:
        return Call("PUT", "/v1/flags", dict(flags))

    @staticmethod
    def health() -> Call:
        return Call("GET", "/healthz")

    @staticmethod
    def ready() -> Call:
        return Call("GET", "/readyz")


class SandboxCalls:
    """Calls on one sandbox's guest, relayed by agentboxd (docs/guest-api.md)."""

    def __init__(self, sandbox_id: str):
        self.sandbox_id = sandbox_id
        self.prefix = f"/v1/sandboxes/{quote(sandbox_id)}"

    def api(self, endpoint: str) -> str:
        return f"{self.prefix}/api/v1/{endpoint}"

    # -- shell sessions ------------------------------------------------------------------------

    def exec(self, command: str, *, session_id: Optional[str] = None,
             exec_dir: Optional[str] = None, wait_seconds: Optional[float] = None,
             timeout: Optional[float] = None, pty: Optional[bool] = None) -> Call:
        body = _clean({"id": session_id, "command": command, "exec_dir": exec_dir,
                       "wait_seconds": wait_seconds, "timeout": timeout, "pty": pty})
        return Call("POST", self.api("shell/exec"), body, t.CommandResult.from_json,
                    wait_s=5 if wait_seconds is None else wait_seconds)

    def view(self, session_id: str, *, console: bool = False, raw: bool = False) -> Call:
        body = {"id": session_id, "console": console}
        if raw:
            body["raw"] = True
        return Call("POST", self.api("shell/view"), body, t.ViewResult.from_json)

    def wait(self, session_id: str, seconds: Optional[float] = None) -> Call:
        return Call("POST", self.api("shell/wait"), _clean({"id": session_id, "seconds": seconds}),
                    lambda d: (d or {}).get("returncode"),
                    wait_s=60 if seconds is None else seconds)

    def write(self, session_id: str, input: str, *, press_enter: bool = True) -> Call:
        return Call("POST", self.api("shell/write"),
                    {"id": session_id, "input": input, "press_enter": press_enter})

    def kill(self, session_id: str) -> Call:
        return Call("POST", self.api("shell/kill"), {"id": session_id}, wait_s=10)

    def run(self, command: str, *, session_id: Optional[str] = None,
            timeout: Optional[float] = None) -> Call:
        body = _clean({"session_id": session_id, "command": command, "timeout": timeout})
        return Call("POST", self.api("shell/run"), body, t.RunResult.from_json,
                    wait_s=120 if timeout is None else timeout)

    def sessions(self) -> Call:
        return Call("GET", self.api("shell/list"), None,
                    lambda d: [t.SessionInfo.from_json(s) for s in (d or {}).get("sessions", [])])

    def delete_session(self, session_id: str) -> Call:
        return Call("POST", self.api("shell/delete"), {"id": session_id})

    def session_state(self, session_id: str) -> Call:
        return Call("POST", self.api("shell/state"), {"id": session_id},
                    lambda d: (d or {}).get("state"))

    def restore_session(self, state: Dict[str, Any], session_id: Optional[str] = None) -> Call:
        return Call("POST", self.api("shell/restore"), _clean({"id": session_id, "state": state}))

    # -- background processes ------------------------------------------------------------------

    def start_process(self, command: str, *, session_id: Optional[str] = None,
                      cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> Call:
        body = _clean({"session_id": session_id, "command": command, "cwd": cwd, "env": env})
        return Call("POST", self.api("process/start"), body, lambda d: int(d["pid"]))

    def processes(self, session_id: Optional[str] = None) -> Call:
        return Call("POST", self.api("process/list"), _clean({"session_id": session_id}),
                    lambda d: [t.ProcessInfo.from_json(p) for p in (d or [])])

    def process_logs(self, pid: int, offset: int = 0, max_bytes: Optional[int] = None) -> Call:
        return Call("POST", self.api("process/logs"),
                    _clean({"pid": pid, "offset": offset, "max_bytes": max_bytes}),
                    t.ProcessLogs.from_json)

    def kill_processes(self, *, pid: Optional[int] = None, session_id: Optional[str] = None,
                       pattern: Optional[str] = None, signal: Union[int, str, None] = None) -> Call:
        body = _clean({"pid": pid, "session_id": session_id, "pattern": pattern,
                       "signal": signal})
        return Call("POST", self.api("process/kill"), body, t.KillResult.from_json)

    # -- files ---------------------------------------------------------------------------------

    def read_file(self, file: str, *, start_line: Optional[int] = None,
                  end_line: Optional[int] = None, max_length: Optional[int] = None,
                  sudo: Optional[bool] = None) -> Call:
        body = _clean({"file": file, "start_line": start_line, "end_line": end_line,
                       "max_length": max_length, "sudo": sudo})
        return Call("POST", self.api("file/read"), body, t.FileContent.from_json)

    def write_file(self, file: str, content: str, *, append: bool = False,
                   leading_newline: bool = False, trailing_newline: bool = False,
                   sudo: Optional[bool] = None) -> Call:
        body = _clean({"file": file, "content": content, "append": append,
                       "leading_newline": leading_newline, "trailing_newline": trailing_newline,
                       "sudo": sudo})
        return Call("POST", self.api("file/write"), body,
                    lambda d: int((d or {}).get("bytes_written", 0)))

    def exists(self, path: str) -> Call:
        return Call("POST", self.api("file/exists"), {"path": path}, t.PathStat.from_json)

    def delete(self, path: str, *, recursive: bool = False) -> Call:
        return Call("POST", self.api("file/delete"), {"path": path, "recursive": recursive},
                    lambda d: bool((d or {}).get("deleted")))

    def list_dir(self, path: str, *, recursive: bool = False) -> Call:
        return Call("POST", self.api("file/list"), {"path": path, "recursive": recursive},
                    t.DirListing.from_json)

    def replace(self, file: str, old_str: str, new_str: str, *,
                sudo: Optional[bool] = None) -> Call:
        body = _clean({"file": file, "old_str": old_str, "new_str": new_str, "sudo": sudo})
        return Call("POST", self.api("file/replace"), body,
                    lambda d: int((d or {}).get("replaced_count", 0)))

    def search(self, file: str, regex: str, *, sudo: Optional[bool] = None) -> Call:
        return Call("POST", self.api("file/search"), _clean({"file": file, "regex": regex,
                                                             "sudo": sudo}),
                    t.SearchResult.from_json)

    def find(self, path: str, glob: str) -> Call:
        return Call("POST", self.api("file/find"), {"path": path, "glob": glob},
                    t.FindResult.from_json)

    # -- supervisor (ai-manus) and health ------------------------------------------------------

    def supervisor(self, op: str, body: Optional[Dict[str, Any]] = None) -> Call:
        get = op in ("status", "timeout/status")
        return Call("GET" if get else "POST", self.api("supervisor/" + op),
                    None if get else (body or {}), wait_s=30)

    def guest_health(self) -> Call:
        return Call("GET", self.api("health"))

    # -- streams -------------------------------------------------------------------------------

    def upload_target(self) -> str:
        return self.api("file/upload")

    def download_target(self, path: str) -> str:
        return self.api("file/download") + query({"path": path})

    def stream_target(self, session_id: str, offset: Optional[int] = None) -> str:
        return f"{self.prefix}/shell/{quote(session_id)}/stream" + query({"offset": offset})


# -- multipart upload, produced as it is sent -------------------------------------------------

CHUNK = 256 * 1024

Source = Union[bytes, bytearray, str, "os.PathLike[str]", IO[bytes]]


def open_source(source: Source) -> Tuple[IO[bytes], Optional[int], bool]:
    """(readable, size or None, whether we opened it and must close it)."""
    if isinstance(source, (bytes, bytearray)):
        import io
        return io.BytesIO(bytes(source)), len(source), True
    if isinstance(source, (str, os.PathLike)):
        f = open(source, "rb")
        return f, os.fstat(f.fileno()).st_size, True
    size: Optional[int] = None
    try:
        if source.seekable():
            pos = source.tell()
            size = source.seek(0, os.SEEK_END) - pos
            source.seek(pos)
    except (AttributeError, OSError, ValueError):
        size = None
    return source, size, False


def multipart(path: str, filename: str, size: Optional[int]) -> Tuple[str, bytes, bytes,
                                                                       Optional[int]]:
    """(content type, bytes before the file, bytes after it, total length or None)."""
    boundary = "agentbox-" + uuid.uuid4().hex
    safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
    head = (f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="path"\r\n\r\n'
            f"{path}\r\n"
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode("utf-8")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    total = None if size is None else len(head) + size + len(tail)
    return f"multipart/form-data; boundary={boundary}", head, tail, total


@dataclass
class Upload:
    """A multipart upload ready to send: the source, what goes around it, and its headers."""
    f: IO[bytes]
    size: Optional[int]
    owned: bool  # whether we opened ``f`` and must close it
    head: bytes
    tail: bytes
    headers: Dict[str, str]

    def close(self) -> None:
        if self.owned:
            self.f.close()


def prepare_upload(path: str, source: Source, filename: Optional[str]) -> Upload:
    """Opens ``source`` and frames it as a multipart upload to ``path`` (the sync and async
    clients both send this)."""
    f, size, owned = open_source(source)
    name = filename or (os.path.basename(os.fspath(source))
                        if isinstance(source, (str, os.PathLike)) else "upload")
    ctype, head, tail, total = multipart(path, name, size)
    headers = {"Content-Type": ctype}
    if total is not None:
        headers["Content-Length"] = str(total)
    return Upload(f, size, owned, head, tail, headers)


def body_chunks(head: bytes, f: IO[bytes], tail: bytes) -> Iterator[bytes]:
    yield head
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            break
        yield chunk
    yield tail


def parse_sse(lines: Iterator[bytes]) -> Iterator[t.StreamEvent]:
    """Server-Sent Events from raw lines (comments, such as keep-alives, are skipped)."""
    event, data, ev_id = "message", [], None
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    value: Any = json.loads(text)
                except ValueError:
                    value = text
                yield t.StreamEvent(event, value, ev_id)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            ev_id = value


def api_names() -> List[str]:
    """The SandboxCalls methods that are plain JSON calls (the clients wrap each)."""
    skip = {"api", "upload_target", "download_target", "stream_target"}
    return [n for n in vars(SandboxCalls) if not n.startswith("_") and n not in skip]
