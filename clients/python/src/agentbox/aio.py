"""The asyncio client, on httpx (``pip install ./clients/python[async]``).

:class:`AsyncClient` and :class:`AsyncSandbox` have the methods of :class:`agentbox.Client` and
:class:`agentbox.Sandbox`, as coroutines (``stream`` is an async iterator, ``download`` an async
context manager).
"""

import asyncio
import contextlib
import functools
import json
import os
import ssl
from typing import IO, Any, AsyncIterator, Dict, List, Optional, Union

try:
    import httpx
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("agentbox.AsyncClient needs httpx: pip install 'agentbox[async]' "
                      "(Debian: apt install python3-httpx)") from e

from . import types as t
from ._transport import USER_AGENT, Endpoint, parse_envelope, raise_for
from ._wire import (CHUNK, Call, DaemonCalls, SandboxCalls, Source, api_names, parse_sse,
                    prepare_upload, _MARGIN_S)
from .client import default_address
from .errors import TransportError


class AsyncClient:
    """agentboxd's REST API for asyncio. Same arguments as :class:`agentbox.Client`; close it
    with ``await client.aclose()`` or ``async with``."""

    def __init__(self, url: Optional[str] = None, *, api_key: Optional[str] = None,
                 ssl_context: Optional[ssl.SSLContext] = None, timeout: float = 600.0):
        if api_key is None:
            api_key = os.environ.get("AGENTBOX_API_KEY") or None
        self.endpoint = Endpoint.parse(url or default_address())
        self.timeout = timeout
        headers = {"User-Agent": USER_AGENT}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        e = self.endpoint
        if e.kind == "unix":
            # No TLS on a unix socket: verify=False only skips loading CA certificates.
            transport = httpx.AsyncHTTPTransport(uds=e.path, verify=False)
            base = "http://agentboxd"
        else:
            if e.kind == "http" and ssl_context is not None:
                raise ValueError("ssl_context given for a plain address: use https:// or tls:")
            verify: Union[bool, ssl.SSLContext] = ssl_context if ssl_context else True
            transport = httpx.AsyncHTTPTransport(verify=verify)
            base = f"{e.kind}://{e.host}:{e.port}"
        self.http = httpx.AsyncClient(transport=transport, base_url=base, headers=headers,
                                      timeout=timeout)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, call: Call) -> t.Response:
        """Runs a call and returns its envelope as it came, failed or not."""
        kwargs: Dict[str, Any] = {"timeout": max(self.timeout, call.wait_s + _MARGIN_S)}
        if call.body is not None:
            kwargs["content"] = json.dumps(call.body).encode("utf-8")
            kwargs["headers"] = {"Content-Type": "application/json"}
        try:
            r = await self.http.request(call.method, call.path, **kwargs)
        except httpx.HTTPError as e:
            raise TransportError(f"{call.method} {call.path}: {e}") from e
        return parse_envelope(r.status_code, r.content, r.headers.get_list("warning"))

    async def run(self, call: Call) -> Any:
        return call.parse(raise_for(await self.request(call)))

    async def create(self, image: Optional[str] = None, **kwargs: Any) -> "AsyncSandbox":
        info = await self.run(DaemonCalls.create(image, **kwargs))
        return AsyncSandbox(self, info.id, info)

    async def get(self, sandbox_id: str) -> "AsyncSandbox":
        return AsyncSandbox(self, sandbox_id, await self.run(DaemonCalls.get(sandbox_id)))

    def sandbox(self, sandbox_id: str) -> "AsyncSandbox":
        return AsyncSandbox(self, sandbox_id, None)

    async def list(self) -> List[t.SandboxInfo]:
        return await self.run(DaemonCalls.list())

    async def delete(self, sandbox_id: str) -> bool:
        return await self.run(DaemonCalls.delete(sandbox_id))

    async def set_timeout(self, sandbox_id: str, ttl_s: Optional[int] = None) -> float:
        return await self.run(DaemonCalls.set_timeout(sandbox_id, ttl_s))

    async def restart_guest(self, sandbox_id: str) -> Any:
        return await self.run(DaemonCalls.restart_guest(sandbox_id))

    async def info(self) -> Dict[str, Any]:
        return await self.run(DaemonCalls.info())

    async def flags(self) -> Dict[str, Any]:
        return await self.run(DaemonCalls.flags())

    async def set_flags(self, flags: Dict[str, Any]) -> Dict[str, Any]:
        return await self.run(DaemonCalls.set_flags(flags))

    async def health(self) -> Any:
        return await self.run(DaemonCalls.health())

    async def ready(self) -> Any:
        return await self.run(DaemonCalls.ready())


def _async(name: str):
    build = getattr(SandboxCalls, name)

    @functools.wraps(build)
    async def method(self: "AsyncSandbox", *args: Any, **kwargs: Any) -> Any:
        return await self.client.run(build(self.calls, *args, **kwargs))

    return method


class AsyncSandbox:
    """One sandbox, for asyncio: the methods of :class:`agentbox.Sandbox` as coroutines."""

    def __init__(self, client: AsyncClient, sandbox_id: str, info: Optional[t.SandboxInfo]):
        self.client = client
        self.id = sandbox_id
        self.info = info
        self.calls = SandboxCalls(sandbox_id)

    def __repr__(self) -> str:
        return f"AsyncSandbox(id={self.id!r})"

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.destroy()

    async def refresh(self) -> t.SandboxInfo:
        self.info = await self.client.run(DaemonCalls.get(self.id))
        return self.info

    async def destroy(self) -> bool:
        return await self.client.delete(self.id)

    async def set_timeout(self, ttl_s: Optional[int] = None) -> float:
        return await self.client.set_timeout(self.id, ttl_s)

    async def request(self, call: Call) -> t.Response:
        return await self.client.request(call)

    async def upload(self, path: str, source: Source, *, filename: Optional[str] = None
                     ) -> t.UploadResult:
        """Uploads ``source`` (bytes, a local path or a binary file object), streamed."""
        up = prepare_upload(path, source, filename)
        try:
            async def body() -> AsyncIterator[bytes]:
                yield up.head
                while True:
                    chunk = await asyncio.to_thread(up.f.read, CHUNK)
                    if not chunk:
                        break
                    yield chunk
                yield up.tail

            try:
                r = await self.client.http.post(
                    self.calls.upload_target(), content=body(), headers=up.headers,
                    timeout=self.client.timeout + (up.size or 0) / (1 << 20))
            except httpx.HTTPError as e:
                raise TransportError(f"upload to {self.id}:{path}: {e}") from e
            resp = parse_envelope(r.status_code, r.content, r.headers.get_list("warning"))
            return t.UploadResult.from_json(raise_for(resp))
        finally:
            up.close()

    @contextlib.asynccontextmanager
    async def download(self, path: str) -> AsyncIterator["httpx.Response"]:
        """``async with sb.download(p) as r: async for chunk in r.aiter_bytes(): ...``"""
        try:
            async with self.client.http.stream("GET", self.calls.download_target(path)) as r:
                if r.status_code != 200:
                    await r.aread()
                    raise_for(parse_envelope(r.status_code, r.content,
                                             r.headers.get_list("warning")))
                yield r
        except httpx.HTTPError as e:
            raise TransportError(f"download {self.id}:{path}: {e}") from e

    async def download_to(self, path: str, dest: Union[str, "os.PathLike[str]", IO[bytes]]
                          ) -> int:
        n = 0
        owned = isinstance(dest, (str, os.PathLike))
        out: IO[bytes] = open(dest, "wb") if owned else dest  # type: ignore[arg-type]
        try:
            async with self.download(path) as r:
                async for chunk in r.aiter_bytes(CHUNK):
                    out.write(chunk)
                    n += len(chunk)
        finally:
            if owned:
                out.close()
        return n

    async def stream(self, session_id: str, offset: Optional[int] = None
                     ) -> AsyncIterator[t.StreamEvent]:
        """The session's live output as Server-Sent Events; ends after ``end`` or ``error``."""
        timeout = httpx.Timeout(self.client.timeout, read=max(self.client.timeout, 90.0))
        try:
            async with self.client.http.stream("GET", self.calls.stream_target(session_id, offset),
                                               timeout=timeout) as r:
                if r.status_code != 200:
                    await r.aread()
                    raise_for(parse_envelope(r.status_code, r.content,
                                             r.headers.get_list("warning")))
                block: List[bytes] = []
                async for line in r.aiter_lines():
                    block.append(line.encode("utf-8") + b"\n")
                    if line.strip():
                        continue
                    for ev in parse_sse(iter(block)):
                        yield ev
                        if ev.event in ("end", "error"):
                            return
                    block = []
        except httpx.HTTPError as e:
            raise TransportError(f"stream {self.id}/{session_id}: {e}") from e


for _name in api_names():
    setattr(AsyncSandbox, _name, _async(_name))
del _name

__all__ = ["AsyncClient", "AsyncSandbox"]
