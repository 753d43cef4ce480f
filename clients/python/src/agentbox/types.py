"""Typed results of the agentbox API.

Each result is a dataclass built from the JSON ``data`` of an answer; ``raw`` keeps that JSON
whole, so fields newer than this client are never lost.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type, TypeVar

T = TypeVar("T", bound="_Result")


@dataclass
class _Result:
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls: Type[T], data: Any) -> T:
        data = data if isinstance(data, dict) else {}
        names = {f.name for f in dataclasses.fields(cls) if f.name != "raw"}
        return cls(raw=data, **{k: v for k, v in data.items() if k in names})


@dataclass
class SandboxInfo(_Result):
    """A sandbox as agentboxd reports it (``GET /v1/sandboxes/{id}``)."""

    id: str = ""
    backend: str = ""
    reason: str = ""
    state: str = ""
    image: str = ""
    labels: Dict[str, str] = field(default_factory=dict)
    limits: Dict[str, Any] = field(default_factory=dict)
    network: str = ""
    created_at: float = 0.0
    expires_at: float = 0.0
    detail: str = ""
    selection: Optional[Dict[str, Any]] = None


@dataclass
class CommandResult(_Result):
    """``shell/exec``: the command's state after ``wait_seconds``."""

    session_id: str = ""
    command: str = ""
    status: str = ""  # "completed" or "running"
    returncode: Optional[int] = None
    output: str = ""
    output_truncated: bool = False
    cwd: str = ""
    timed_out: bool = False
    killed: bool = False

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass
class ConsoleEntry(_Result):
    ps1: str = ""
    command: str = ""
    output: str = ""


@dataclass
class ViewResult(_Result):
    """``shell/view``: the current or last command of a session."""

    session_id: str = ""
    status: str = ""  # "idle", "running" or "completed"
    returncode: Optional[int] = None
    cwd: str = ""
    output: str = ""
    console: Optional[List[ConsoleEntry]] = None

    @classmethod
    def from_json(cls, data: Any) -> "ViewResult":
        r = super().from_json(data)
        if isinstance(r.console, list):
            r.console = [ConsoleEntry.from_json(c) for c in r.console]
        return r


@dataclass
class RunResult(_Result):
    """``shell/run``: a finished command with stdout and stderr apart."""

    exit_code: Optional[int] = None
    stdout: str = ""
    stderr: str = ""
    cwd: str = ""
    session_id: str = ""
    output_truncated: bool = False
    timed_out: bool = False
    background_pid: Optional[int] = None


@dataclass
class SessionInfo(_Result):
    session_id: str = ""
    running: bool = False
    cwd: str = ""
    last_command: str = ""


@dataclass
class ProcessInfo(_Result):
    """A background process (``process/list``)."""

    pid: int = 0
    session_id: str = ""
    command: str = ""
    running: bool = False
    exit_code: Optional[int] = None
    started_at: float = 0.0
    ended_at: Optional[float] = None


@dataclass
class ProcessLogs(_Result):
    """``process/logs``: pass ``next_offset`` back to read on."""

    pid: int = 0
    output: str = ""
    offset: int = 0
    next_offset: int = 0
    truncated: bool = False
    running: bool = False
    exit_code: Optional[int] = None


@dataclass
class KillResult(_Result):
    killed_count: int = 0
    killed_pids: List[int] = field(default_factory=list)


@dataclass
class FileContent(_Result):
    """``file/read``."""

    content: str = ""
    file: str = ""
    truncated: bool = False


@dataclass
class FileEntry(_Result):
    name: str = ""
    type: str = ""  # "file", "directory", "symlink" or "other"
    size: int = 0
    mode: Any = None
    mtime: float = 0.0


@dataclass
class DirListing(_Result):
    """``file/list``."""

    path: str = ""
    entries: List[FileEntry] = field(default_factory=list)
    truncated: bool = False

    @classmethod
    def from_json(cls, data: Any) -> "DirListing":
        r = super().from_json(data)
        r.entries = [FileEntry.from_json(e) for e in (r.entries or [])]
        return r


@dataclass
class PathStat(_Result):
    """``file/exists``."""

    path: str = ""
    exists: bool = False
    type: Optional[str] = None


@dataclass
class SearchResult(_Result):
    """``file/search``: matching lines and their 0-based numbers."""

    file: str = ""
    matches: List[str] = field(default_factory=list)
    line_numbers: List[int] = field(default_factory=list)


@dataclass
class FindResult(_Result):
    """``file/find``."""

    path: str = ""
    files: List[str] = field(default_factory=list)
    truncated: bool = False


@dataclass
class UploadResult(_Result):
    file_path: str = ""
    file_size: int = 0
    success: bool = False


@dataclass
class StreamEvent:
    """One Server-Sent Event of a session's output stream.

    ``event`` is ``output`` (data ``{offset, output, missed}``), ``status`` (a command ended:
    ``{status, command, returncode, cwd}``), ``end`` (the session was deleted) or ``error`` (the
    daemon lost the sandbox). ``id`` is the offset to resume from.
    """

    event: str
    data: Any
    id: Optional[str] = None


@dataclass
class Response:
    """An envelope as it came: for callers that want ``success``/``message``/``data`` unparsed."""

    status: int
    success: bool
    message: str
    data: Any
    warnings: List[str] = field(default_factory=list)
