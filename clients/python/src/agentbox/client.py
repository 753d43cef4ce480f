"""The synchronous client: :class:`Client` for agentboxd, :class:`Sandbox` for one sandbox."""

import functools
import os
import ssl
from typing import IO, Any, Dict, Iterator, List, Optional, Union

from . import types as t
from ._transport import RawResponse, SyncTransport, parse_envelope, raise_for
from ._wire import (Call, DaemonCalls, SandboxCalls, Source, api_names, body_chunks, parse_sse,
                    prepare_upload, _MARGIN_S)
from .errors import TransportError


def default_address() -> str:
    """AGENTBOX_URL, else the daemon's default unix socket."""
    return os.environ.get("AGENTBOX_URL") or "unix:/run/agentbox/agentboxd.sock"


class Client:
    """agentboxd's REST API.

    Args:
        url: ``unix:/path/to/agentboxd.sock`` (default ``$AGENTBOX_URL``, else
            ``unix:/run/agentbox/agentboxd.sock``), ``http://host:port``, ``https://host:port``,
            or the daemon's ``tcp:HOST:PORT`` / ``tls:HOST:PORT``.
        api_key: sent as ``Authorization: Bearer``; required on TCP (default
            ``$AGENTBOX_API_KEY``).
        ssl_context: for ``https://`` / ``tls:``; default verifies against the system CAs (build
            one with ``ssl.create_default_context(cafile=...)`` for a private CA).
        timeout: socket deadline in seconds for calls that do not ask to wait longer.

    Errors raise :class:`agentbox.ApiError` subclasses carrying the daemon's message, or
    :class:`agentbox.TransportError` when the daemon cannot be reached. Thread-safe.
    """

    def __init__(self, url: Optional[str] = None, *, api_key: Optional[str] = None,
                 ssl_context: Optional[ssl.SSLContext] = None, timeout: float = 600.0):
        if api_key is None:
            api_key = os.environ.get("AGENTBOX_API_KEY") or None
        self.transport = SyncTransport(url or default_address(), api_key, ssl_context, timeout)

    # -- running calls -------------------------------------------------------------------------

    def _deadline(self, call: Call) -> float:
        return max(self.transport.timeout, call.wait_s + _MARGIN_S)

    def request(self, call: Call) -> t.Response:
        """Runs a call and returns its envelope as it came, failed or not."""
        return self.transport.call(call.method, call.path, call.body, self._deadline(call))

    def run(self, call: Call) -> Any:
        """Runs a call and returns its parsed ``data``, raising on an error envelope."""
        return call.parse(raise_for(self.request(call)))

    # -- sandboxes -----------------------------------------------------------------------------

    def create(self, image: Optional[str] = None, **kwargs: Any) -> "Sandbox":
        """Creates a sandbox (``POST /v1/sandboxes``). Keyword arguments: ``env``, ``ttl_s``,
        ``limits``, ``labels``, ``backend``, ``network``, ``subject`` (as in the API), and
        ``services`` ({name: command}, started with the sandbox and reported by
        ``supervisor/status``). The selector's decision is in ``sandbox.info.selection``."""
        info = self.run(DaemonCalls.create(image, **kwargs))
        return Sandbox(self, info.id, info)

    def get(self, sandbox_id: str) -> "Sandbox":
        """The sandbox ``sandbox_id`` (NotFound if it does not exist for this key)."""
        return Sandbox(self, sandbox_id, self.run(DaemonCalls.get(sandbox_id)))

    def sandbox(self, sandbox_id: str) -> "Sandbox":
        """A handle on ``sandbox_id`` without asking the daemon (no round trip)."""
        return Sandbox(self, sandbox_id, None)

    def list(self) -> List[t.SandboxInfo]:
        return self.run(DaemonCalls.list())

    def delete(self, sandbox_id: str) -> bool:
        return self.run(DaemonCalls.delete(sandbox_id))

    def set_timeout(self, sandbox_id: str, ttl_s: Optional[int] = None) -> float:
        """Sets the remaining lifetime to ``ttl_s`` from now; returns the new ``expires_at``."""
        return self.run(DaemonCalls.set_timeout(sandbox_id, ttl_s))

    def restart_guest(self, sandbox_id: str) -> Any:
        return self.run(DaemonCalls.restart_guest(sandbox_id))

    # -- the daemon ----------------------------------------------------------------------------

    def info(self) -> Dict[str, Any]:
        """``GET /v1/info``: the selector's current decision and why, backends' health."""
        return self.run(DaemonCalls.info())

    def flags(self) -> Dict[str, Any]:
        return self.run(DaemonCalls.flags())

    def set_flags(self, flags: Dict[str, Any]) -> Dict[str, Any]:
        """``PUT /v1/flags`` (admin keys, or the unix socket)."""
        return self.run(DaemonCalls.set_flags(flags))

    def health(self) -> Any:
        return self.run(DaemonCalls.health())

    def ready(self) -> Any:
        return self.run(DaemonCalls.ready())


def _sync(name: str):
    build = getattr(SandboxCalls, name)

    @functools.wraps(build)
    def method(self: "Sandbox", *args: Any, **kwargs: Any) -> Any:
        return self.client.run(build(self.calls, *args, **kwargs))

    return method


class Sandbox:
    """One sandbox: every guest operation, relayed by agentboxd (docs/guest-api.md).

    Shell: ``exec``, ``view``, ``wait``, ``write``, ``kill``, ``run``, ``sessions``,
    ``delete_session``, ``session_state``, ``restore_session``, ``stream``. Processes:
    ``start_process``, ``processes``, ``process_logs``, ``kill_processes``. Files: ``read_file``,
    ``write_file``, ``exists``, ``delete``, ``list_dir``, ``replace``, ``search``, ``find``,
    ``upload``, ``download``, ``download_to``. Also ``supervisor(op)``, ``guest_health``,
    ``set_timeout``, ``refresh`` and ``destroy``. A ``with`` block destroys the sandbox at its
    end.
    """

    def __init__(self, client: Client, sandbox_id: str, info: Optional[t.SandboxInfo]):
        self.client = client
        self.id = sandbox_id
        self.info = info
        self.calls = SandboxCalls(sandbox_id)

    def __repr__(self) -> str:
        backend = self.info.backend if self.info else "?"
        return f"Sandbox(id={self.id!r}, backend={backend!r})"

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    def refresh(self) -> t.SandboxInfo:
        self.info = self.client.run(DaemonCalls.get(self.id))
        return self.info

    def destroy(self) -> bool:
        return self.client.delete(self.id)

    def set_timeout(self, ttl_s: Optional[int] = None) -> float:
        return self.client.set_timeout(self.id, ttl_s)

    def request(self, call: Call) -> t.Response:
        return self.client.request(call)

    # -- streamed operations -------------------------------------------------------------------

    def upload(self, path: str, source: Source, *, filename: Optional[str] = None
               ) -> t.UploadResult:
        """Uploads ``source`` (bytes, a local path, or a binary file object) to ``path`` in the
        sandbox, streamed: never held in memory whole."""
        up = prepare_upload(path, source, filename)
        try:
            # The daemon spools the upload, then relays it: allow for the size at 1 MiB/s.
            deadline = self.client.transport.timeout + (up.size or 0) / (1 << 20)
            with self.client.transport.open("POST", self.calls.upload_target(),
                                            body_chunks(up.head, up.f, up.tail), up.headers,
                                            deadline) as r:
                resp = parse_envelope(r.status, r.read(), r.warnings())
            return t.UploadResult.from_json(raise_for(resp))
        finally:
            up.close()

    def download(self, path: str) -> RawResponse:
        """Opens ``path`` for reading: ``read(n)`` streams the bytes; close it (or use ``with``)
        when done. Raises NotFound and the like before any byte is read."""
        r = self.client.transport.open("GET", self.calls.download_target(path))
        if r.status != 200:
            with r:
                raise_for(parse_envelope(r.status, r.read(), r.warnings()))
        return r

    def download_to(self, path: str, dest: Union[str, "os.PathLike[str]", IO[bytes]]) -> int:
        """Streams ``path`` to a local file path or binary file object; returns bytes written."""
        with self.download(path) as r:
            if isinstance(dest, (str, os.PathLike)):
                with open(dest, "wb") as out:
                    return _copy(r, out)
            return _copy(r, dest)

    def stream(self, session_id: str, offset: Optional[int] = None) -> Iterator[t.StreamEvent]:
        """The session's live output as Server-Sent Events (see :class:`StreamEvent`). The
        iterator ends after an ``end`` or ``error`` event; close it to stop early."""
        r = self.client.transport.open("GET", self.calls.stream_target(session_id, offset),
                                       timeout=max(self.client.transport.timeout, 90.0))
        if r.status != 200:
            with r:
                raise_for(parse_envelope(r.status, r.read(), r.warnings()))

        def lines() -> Iterator[bytes]:
            while True:
                try:
                    line = r.readline()
                except TransportError:
                    return
                if not line:
                    return
                yield line

        try:
            for ev in parse_sse(lines()):
                yield ev
                if ev.event in ("end", "error"):
                    return
        finally:
            r.close()


def _copy(r: RawResponse, out: IO[bytes]) -> int:
    n = 0
    while True:
        chunk = r.read(256 * 1024)
        if not chunk:
            return n
        out.write(chunk)
        n += len(chunk)


for _name in api_names():
    setattr(Sandbox, _name, _sync(_name))
del _name

__all__ = ["Client", "Sandbox", "default_address"]
