"""Python client for agentboxd, the agentbox sandbox daemon.

    import agentbox
    client = agentbox.Client("unix:/run/agentbox/agentboxd.sock")
    with client.create() as sb:
        print(sb.exec("echo hi").output)

``agentbox.AsyncClient`` (asyncio, needs httpx) is imported on first use; the ai-manus adapter is
``agentbox.integrations.aimanus``.
"""

from .client import Client, Sandbox, default_address
from .errors import (AgentboxError, ApiError, BadRequest, Conflict, Forbidden, GatewayTimeout,
                     InsufficientStorage, NotFound, PayloadTooLarge, ServerError,
                     TooManyRequests, TransportError, Unauthorized, Unavailable, ValidationError)
from .types import (CommandResult, ConsoleEntry, DirListing, FileContent, FileEntry, FindResult,
                    KillResult, PathStat, ProcessInfo, ProcessLogs, Response, RunResult,
                    SandboxInfo, SearchResult, SessionInfo, StreamEvent, UploadResult,
                    ViewResult)

__version__ = "0.1.0"


def __getattr__(name):  # PEP 562: httpx is needed only by the async client
    if name in ("AsyncClient", "AsyncSandbox"):
        from . import aio
        return getattr(aio, name)
    raise AttributeError(f"module 'agentbox' has no attribute {name!r}")


__all__ = [
    "Client", "Sandbox", "AsyncClient", "AsyncSandbox", "default_address",
    "AgentboxError", "ApiError", "BadRequest", "Conflict", "Forbidden", "GatewayTimeout",
    "InsufficientStorage", "NotFound", "PayloadTooLarge", "ServerError", "TooManyRequests",
    "TransportError", "Unauthorized", "Unavailable", "ValidationError",
    "CommandResult", "ConsoleEntry", "DirListing", "FileContent", "FileEntry", "FindResult",
    "KillResult", "PathStat", "ProcessInfo", "ProcessLogs", "Response", "RunResult",
    "SandboxInfo", "SearchResult", "SessionInfo", "StreamEvent", "UploadResult", "ViewResult",
]
