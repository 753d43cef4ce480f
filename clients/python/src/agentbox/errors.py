"""Exceptions raised by the agentbox client.

Every answer of agentboxd (and of the guest it relays to) is the envelope
``{"success": bool, "message": str, "data": ...}``. A failed call raises an :class:`ApiError`
subclass chosen by the HTTP status, carrying the daemon's message, status and data unchanged.
"""

from typing import Any, List, Optional


class AgentboxError(Exception):
    """Base class of every error this package raises."""


class TransportError(AgentboxError):
    """agentboxd could not be reached, or the connection broke before an answer was complete."""


class ApiError(AgentboxError):
    """agentboxd answered with an error envelope.

    Attributes:
        status: the HTTP status (400, 404, 409, 422, 503...).
        message: the daemon's message, unchanged.
        data: the envelope's ``data`` (for a 422, ``{"fields": [...]}`` names the bad fields).
        warnings: values of the answer's ``Warning`` headers (unknown fields that were ignored).
    """

    def __init__(self, status: int, message: str, data: Any = None,
                 warnings: Optional[List[str]] = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.data = data
        self.warnings = list(warnings or [])

    @property
    def fields(self) -> List[str]:
        """The request fields a validation error (422) names, else []."""
        if isinstance(self.data, dict) and isinstance(self.data.get("fields"), list):
            return [str(f) for f in self.data["fields"]]
        return []


class BadRequest(ApiError):
    """400: malformed request, bad regex, nothing running to write to, wait timeout..."""


class Unauthorized(ApiError):
    """401: missing or wrong API key."""


class Forbidden(ApiError):
    """403: the key may not do this (pin a backend, change flags, sudo...)."""


class NotFound(ApiError):
    """404: no such sandbox (for this key), session, process, file or endpoint."""


class Conflict(ApiError):
    """409: the session's previous command still runs; stdin full."""


class PayloadTooLarge(ApiError):
    """413: body, upload or file over the configured cap."""


class ValidationError(ApiError):
    """422: a missing field, wrong type or value out of range (see :attr:`fields`)."""


class TooManyRequests(ApiError):
    """429: the key's sandbox quota is used up."""


class ServerError(ApiError):
    """5xx not covered below."""


class Unavailable(ServerError):
    """503: a backend, engine or guest is not available right now."""


class GatewayTimeout(ServerError):
    """504: the sandbox's guest did not answer within the call's deadline."""


class InsufficientStorage(ServerError):
    """507: the daemon's disk is below its free-space floor."""


_BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: BadRequest,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationError,
    429: TooManyRequests,
    503: Unavailable,
    504: GatewayTimeout,
    507: InsufficientStorage,
}


def error_for(status: int, message: str, data: Any = None,
              warnings: Optional[List[str]] = None) -> ApiError:
    """The ApiError subclass for ``status``."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ApiError
    return cls(status, message, data, warnings)
