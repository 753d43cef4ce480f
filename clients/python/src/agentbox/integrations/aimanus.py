"""ai-manus's ``Sandbox`` protocol, backed by agentboxd.

:class:`AgentboxSandbox` has the method names, signatures and result shape of ai-manus's sandbox
classes (``backend/app/domain/external/sandbox.py``): every operation is a coroutine returning an
object with ``success``, ``message`` and ``data`` (the envelope of the sandbox API, unchanged, failed
calls included), so ai-manus's tools work on it as they do on ``DockerSandbox``. Sandboxes are
created through agentboxd, so they get its backends (jail, docker, cloudrun), its selector and
rollout, TTLs and metrics. Wiring it into ai-manus's sandbox factory: docs/ai-manus.md.

Configuration (environment, or :meth:`AgentboxSandbox.configure`):

==============================  ============================================================
``AGENTBOX_URL``                agentboxd's address (default ``unix:/run/agentbox/agentboxd.sock``)
``AGENTBOX_API_KEY``            its API key (required on TCP)
``AGENTBOX_CA_FILE``            CA bundle for an ``https://`` / ``tls:`` address
``AGENTBOX_SANDBOX_IMAGE``      image of new sandboxes (default: the backend's)
``AGENTBOX_SANDBOX_TTL_S``      their lifetime (default: the daemon's)
``AGENTBOX_SANDBOX_BACKEND``    pin a backend (default: the daemon's selector decides)
``AGENTBOX_SANDBOX_SUBJECT``    rollout subject (default: the API key's name)
``AGENTBOX_SANDBOX_SERVICES``   JSON {name: command} started with each sandbox
==============================  ============================================================
"""

import asyncio
import json
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Dict, Optional

from ..client import Client, Sandbox
from ..errors import ApiError
from .._wire import Call

logger = logging.getLogger(__name__)

# Sentinel: leave max_length out of the request, as ai-manus's DockerSandbox does.
_UNSET: Any = object()


@dataclass
class ToolResult:
    """ai-manus's ToolResult shape. Set ``AgentboxSandbox.result_factory`` to ai-manus's own
    ``ToolResult`` class to get its pydantic model instead."""

    success: bool
    message: Optional[str] = None
    data: Any = None

    def model_dump(self) -> Dict[str, Any]:
        return {"success": self.success, "message": self.message, "data": self.data}


def _env_json(name: str) -> Optional[Dict[str, str]]:
    text = os.environ.get(name)
    if not text:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return {str(k): str(v) for k, v in value.items()}


class AgentboxSandbox:
    """A sandbox of agentboxd behind ai-manus's Sandbox protocol."""

    # Builds the result of every operation from (success, message, data).
    result_factory: Callable[..., Any] = ToolResult
    # How long ensure_sandbox() waits for every service to be RUNNING.
    ready_timeout_s: float = 60.0

    _client: Optional[Client] = None
    _create_args: Dict[str, Any] = {}

    def __init__(self, sandbox: Sandbox):
        self._sandbox = sandbox

    # -- configuration -------------------------------------------------------------------------

    @classmethod
    def configure(cls, client: Optional[Client] = None, **create_args: Any) -> None:
        """Sets the client (default: from the environment) and the arguments of
        :meth:`agentbox.Client.create` used by :meth:`create` (``image``, ``ttl_s``, ``env``,
        ``limits``, ``labels``, ``backend``, ``network``, ``subject``, ``services``)."""
        cls._client = client
        cls._create_args = dict(create_args)

    @classmethod
    def client(cls) -> Client:
        if cls._client is None:
            ctx = None
            if os.environ.get("AGENTBOX_CA_FILE"):
                ctx = ssl.create_default_context(cafile=os.environ["AGENTBOX_CA_FILE"])
            cls._client = Client(os.environ.get("AGENTBOX_URL") or None, ssl_context=ctx)
        return cls._client

    @classmethod
    def _default_create_args(cls) -> Dict[str, Any]:
        args: Dict[str, Any] = {}
        if os.environ.get("AGENTBOX_SANDBOX_IMAGE"):
            args["image"] = os.environ["AGENTBOX_SANDBOX_IMAGE"]
        if os.environ.get("AGENTBOX_SANDBOX_TTL_S"):
            args["ttl_s"] = int(os.environ["AGENTBOX_SANDBOX_TTL_S"])
        for key in ("backend", "subject"):
            if os.environ.get(f"AGENTBOX_SANDBOX_{key.upper()}"):
                args[key] = os.environ[f"AGENTBOX_SANDBOX_{key.upper()}"]
        services = _env_json("AGENTBOX_SANDBOX_SERVICES")
        if services:
            args["services"] = services
        args.update(cls._create_args)
        return args

    # -- ai-manus's Sandbox protocol -------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._sandbox.id

    @property
    def sandbox(self) -> Sandbox:
        """The agentbox client's handle, for what ai-manus's protocol does not cover."""
        return self._sandbox

    @property
    def cdp_url(self) -> str:
        return ""  # agentbox sandboxes run no browser

    @property
    def vnc_url(self) -> str:
        return ""

    async def get_browser(self) -> Any:
        raise NotImplementedError("agentbox sandboxes run no browser (no CDP or VNC endpoint); "
                                  "keep ai-manus's browser sandbox for browser tools")

    @classmethod
    async def create(cls) -> "AgentboxSandbox":
        """Creates a sandbox through agentboxd (its selector picks the backend)."""
        args = cls._default_create_args()
        sandbox = await asyncio.to_thread(cls.client().create, **args)
        logger.info("agentbox sandbox %s created on %s", sandbox.id,
                    sandbox.info.backend if sandbox.info else "?")
        return cls(sandbox)

    @classmethod
    async def get(cls, id: str) -> "AgentboxSandbox":
        """The sandbox ``id`` (raises agentbox.NotFound when agentboxd does not know it)."""
        return cls(await asyncio.to_thread(cls.client().get, id))

    async def ensure_sandbox(self) -> None:
        """Waits until ``supervisor/status`` lists every service RUNNING (the guest is one), at
        most ``ready_timeout_s``; like ai-manus, logs rather than raises when it gives up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout_s
        last = ""
        while True:
            try:
                r = await self._call(self._sandbox.calls.supervisor("status"))
                services = r.data if r.success and isinstance(r.data, list) else []
                waiting = [f"{s.get('name')}({s.get('statename')})" for s in services
                           if s.get("statename") != "RUNNING"]
                if services and not waiting:
                    return
                last = r.message if not r.success else "not running: " + ", ".join(waiting)
            except Exception as e:  # noqa: BLE001 - the daemon may still be starting it
                last = str(e)
            if loop.time() >= deadline:
                logger.error("sandbox %s not ready after %.0f s: %s", self.id,
                             self.ready_timeout_s, last)
                return
            await asyncio.sleep(0.25)

    async def exec_command(self, session_id: str, exec_dir: str, command: str) -> Any:
        return await self._post("shell/exec",
                                {"id": session_id, "exec_dir": exec_dir, "command": command})

    async def view_shell(self, session_id: str, console: bool = False) -> Any:
        return await self._post("shell/view", {"id": session_id, "console": console})

    async def wait_for_process(self, session_id: str, seconds: Optional[int] = None) -> Any:
        return await self._post("shell/wait", {"id": session_id, "seconds": seconds},
                                wait_s=60 if seconds is None else seconds)

    async def write_to_process(self, session_id: str, input_text: str,
                               press_enter: bool = True) -> Any:
        return await self._post("shell/write",
                                {"id": session_id, "input": input_text,
                                 "press_enter": press_enter})

    async def kill_process(self, session_id: str) -> Any:
        return await self._post("shell/kill", {"id": session_id}, wait_s=10)

    async def file_write(self, file: str, content: str, append: bool = False,
                         leading_newline: bool = False, trailing_newline: bool = False,
                         sudo: bool = False) -> Any:
        return await self._post("file/write", {
            "file": file, "content": content, "append": append,
            "leading_newline": leading_newline, "trailing_newline": trailing_newline,
            "sudo": sudo})

    async def file_read(self, file: str, start_line: Optional[int] = None,
                        end_line: Optional[int] = None, sudo: bool = False,
                        max_length: Any = _UNSET) -> Any:
        body: Dict[str, Any] = {"file": file, "start_line": start_line, "end_line": end_line,
                                "sudo": sudo}
        if max_length is not _UNSET:
            body["max_length"] = max_length
        return await self._post("file/read", body)

    async def file_exists(self, path: str) -> Any:
        return await self._post("file/exists", {"path": path})

    async def file_delete(self, path: str) -> Any:
        return await self._post("file/delete", {"path": path})

    async def file_list(self, path: str) -> Any:
        return await self._post("file/list", {"path": path})

    async def file_replace(self, file: str, old_str: str, new_str: str,
                           sudo: bool = False) -> Any:
        return await self._post("file/replace",
                                {"file": file, "old_str": old_str, "new_str": new_str,
                                 "sudo": sudo})

    async def file_search(self, file: str, regex: str, sudo: bool = False) -> Any:
        return await self._post("file/search", {"file": file, "regex": regex, "sudo": sudo})

    async def file_find(self, path: str, glob_pattern: str) -> Any:
        return await self._post("file/find", {"path": path, "glob": glob_pattern})

    async def file_upload(self, file_data: BinaryIO, path: str,
                          filename: Optional[str] = None) -> Any:
        """Streams ``file_data`` to ``path`` (never held in memory whole)."""
        try:
            r = await asyncio.to_thread(self._sandbox.upload, path, file_data,
                                        filename=filename or "upload")
        except ApiError as e:
            return self.result_factory(success=False, message=e.message, data=e.data)
        return self.result_factory(success=True, message="File uploaded successfully",
                                   data=r.raw)

    async def file_download(self, path: str) -> BinaryIO:
        """The file's bytes as a binary stream, spooled to disk beyond 8 MiB. Raises
        agentbox.NotFound (an ApiError) when there is no such file, as ai-manus raises on a
        non-2xx answer."""

        def fetch() -> BinaryIO:
            out = tempfile.SpooledTemporaryFile(max_size=8 << 20)
            try:
                self._sandbox.download_to(path, out)
            except BaseException:
                out.close()
                raise
            out.seek(0)
            return out  # type: ignore[return-value]

        return await asyncio.to_thread(fetch)

    async def destroy(self) -> bool:
        try:
            await asyncio.to_thread(self._sandbox.destroy)
            return True
        except Exception as e:  # noqa: BLE001 - ai-manus's contract: False, logged
            logger.error("failed to destroy agentbox sandbox %s: %s", self.id, e)
            return False

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(self, call: Call) -> Any:
        r = await asyncio.to_thread(self._sandbox.request, call)
        return self.result_factory(success=r.success, message=r.message, data=r.data)

    async def _post(self, endpoint: str, body: Dict[str, Any], wait_s: float = 5) -> Any:
        return await self._call(Call("POST", self._sandbox.calls.api(endpoint), body,
                                     wait_s=wait_s))


__all__ = ["AgentboxSandbox", "ToolResult"]
