"""HTTP to agentboxd over a unix socket, TCP or TLS, with the standard library only."""

import http.client
import json
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from .errors import TransportError, error_for
from .types import Response

USER_AGENT = "agentbox-python/0.1.0"

Body = Union[None, bytes, Iterable[bytes]]


@dataclass(frozen=True)
class Endpoint:
    """Where agentboxd listens: ``kind`` is "unix", "http" or "https"."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""  # the socket, for "unix"

    @staticmethod
    def parse(url: str) -> "Endpoint":
        """Accepts ``unix:/path``, ``unix:///path``, ``http://host:port``, ``https://host:port``
        and the daemon's own ``--listen`` forms ``tcp:HOST:PORT`` and ``tls:HOST:PORT``."""
        if not isinstance(url, str) or not url:
            raise ValueError("agentboxd address must be a non-empty string")
        if url.startswith("unix:"):
            path = url[5:]
            if path.startswith("//"):
                path = path[2:]
            if not path.startswith("/"):
                raise ValueError(f"unix socket path must be absolute: {url!r}")
            return Endpoint("unix", path=path)
        for prefix, kind in (("tcp:", "http"), ("tls:", "https")):
            if url.startswith(prefix):
                host, sep, port = url[len(prefix):].rpartition(":")
                if not sep or not port.isdigit():
                    raise ValueError(f"expected {prefix}HOST:PORT, got {url!r}")
                return Endpoint(kind, host=host.strip("[]"), port=int(port))
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"unsupported agentboxd address {url!r} (unix:/path, "
                             "http://host:port, https://host:port, tcp:host:port, tls:host:port)")
        if u.path not in ("", "/"):
            raise ValueError(f"agentboxd address must not have a path: {url!r}")
        return Endpoint(u.scheme, host=u.hostname, port=u.port or (443 if u.scheme == "https"
                                                                     else 80))

    def host_header(self) -> str:
        return "agentboxd" if self.kind == "unix" else f"{self.host}:{self.port}"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: Optional[float]):
        super().__init__("agentboxd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class RawResponse:
    """A response whose body has not been read: ``read()`` streams it, ``close()`` ends it."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers

    def read(self, n: int = -1) -> bytes:
        try:
            return self._resp.read(n) if n >= 0 else self._resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(f"reading the answer failed: {e}") from e

    def readline(self) -> bytes:
        try:
            return self._resp.readline()
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(f"reading the answer failed: {e}") from e

    def warnings(self) -> List[str]:
        return self.headers.get_all("Warning") or []

    def close(self) -> None:
        self._resp.close()
        self._conn.close()

    def __enter__(self) -> "RawResponse":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def parse_envelope(status: int, body: bytes, warnings: List[str]) -> Response:
    """The envelope of an answer; a body that is not one becomes a failed Response."""
    try:
        env = json.loads(body.decode("utf-8", errors="replace")) if body else None
    except ValueError:
        env = None
    if not isinstance(env, dict) or "success" not in env:
        text = body[:200].decode("utf-8", errors="replace").strip()
        return Response(status, False, f"answer is not an agentbox envelope: {text!r}", None,
                        warnings)
    return Response(status, bool(env.get("success")) and status < 400,
                    str(env.get("message") or ""), env.get("data"), warnings)


def raise_for(resp: Response) -> Any:
    """``resp.data`` when the call succeeded, else the ApiError for it."""
    if not resp.success:
        raise error_for(resp.status, resp.message, resp.data, resp.warnings)
    return resp.data


class SyncTransport:
    """One HTTP/1.1 connection per request (agentboxd answers in microseconds locally, and a
    fresh connection never inherits a half-read stream). Thread-safe."""

    def __init__(self, url: str, api_key: Optional[str] = None,
                 ssl_context: Optional[ssl.SSLContext] = None, timeout: float = 600.0):
        self.endpoint = Endpoint.parse(url)
        self.api_key = api_key
        self.timeout = timeout
        if self.endpoint.kind == "https":
            self.ssl_context = ssl_context or ssl.create_default_context()
        else:
            if ssl_context is not None:
                raise ValueError("ssl_context given for a plain address: use https:// or tls:")
            self.ssl_context = None

    def headers(self, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Host": self.endpoint.host_header()}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        h.update(extra or {})
        return h

    def _connect(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        e = self.endpoint
        if e.kind == "unix":
            return _UnixConnection(e.path, timeout)
        if e.kind == "https":
            return http.client.HTTPSConnection(e.host, e.port, timeout=timeout,
                                               context=self.ssl_context)
        return http.client.HTTPConnection(e.host, e.port, timeout=timeout)

    def open(self, method: str, target: str, body: Body = None,
             headers: Optional[Dict[str, str]] = None,
             timeout: Optional[float] = None) -> RawResponse:
        """Sends a request and returns once the status line and headers are in. An iterable
        body is sent as it is produced (chunked unless Content-Length is given)."""
        conn = self._connect(self.timeout if timeout is None else timeout)
        h = self.headers(headers)
        try:
            if body is None or isinstance(body, (bytes, bytearray)):
                conn.request(method, target, body=body, headers=h)
            else:
                chunked = "Content-Length" not in h
                conn.request(method, target, body=body, headers=h, encode_chunked=chunked)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            where = self.endpoint.path or f"{self.endpoint.host}:{self.endpoint.port}"
            raise TransportError(f"{method} {target} to agentboxd at {where}: {e}") from e
        return RawResponse(conn, resp)

    def call(self, method: str, target: str, body: Any = None,
             timeout: Optional[float] = None) -> Response:
        """A JSON call: ``body`` (a dict) is sent as JSON; the answer's envelope is returned
        whatever its status."""
        payload = None
        headers = {}
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        with self.open(method, target, payload, headers, timeout) as r:
            return parse_envelope(r.status, r.read(), r.warnings())


def query(params: Dict[str, Any]) -> str:
    """``?a=1&b=x`` of the params that are not None ('' when none)."""
    kept: List[Tuple[str, str]] = [(k, str(v)) for k, v in params.items() if v is not None]
    return ("?" + urllib.parse.urlencode(kept)) if kept else ""


def quote(segment: str) -> str:
    """One path segment, percent-encoded."""
    return urllib.parse.quote(segment, safe="")
