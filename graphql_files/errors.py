"""The domain errors: every refusal the server makes, each knowing its GraphQL code.

    DomainError                       (abstract; carries ``code`` and ``extensions``)
    ├── Unauthenticated               UNAUTHENTICATED
    ├── Forbidden                     FORBIDDEN
    ├── NotFound                      NOT_FOUND
    ├── Conflict                      CONFLICT  (+ currentVersion when the record exists)
    ├── BadUserInput                  BAD_USER_INPUT
    │   └── ResyncRequired            RESYNC_REQUIRED
    ├── PayloadTooLarge               PAYLOAD_TOO_LARGE
    ├── UnsupportedMediaType          UNSUPPORTED_MEDIA_TYPE
    ├── StorageUnavailable            STORAGE_UNAVAILABLE
    ├── DatabaseUnavailable           DATABASE_UNAVAILABLE
    ├── DeadlineExceeded              DEADLINE_EXCEEDED
    └── SlowConsumer                  SLOW_CONSUMER

Services raise these; the GraphQL layer turns them into errors whose ``extensions.code`` is the
class's ``code``. Driver exceptions (pymongo, botocore, redis) are translated into these at the
one service that calls the driver. Anything that is not a ``DomainError`` is a bug: the client
sees ``INTERNAL_SERVER_ERROR`` and the log gets the traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar

INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


class DomainError(Exception):
    code: ClassVar[str] = INTERNAL_SERVER_ERROR

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extensions

    @property
    def extensions(self) -> dict[str, Any]:
        """What the client sees under ``errors[].extensions`` (strawberry copies this)."""
        return {"code": self.code, **self.extra}


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    code = "CONFLICT"


class BadUserInput(DomainError):
    code = "BAD_USER_INPUT"


class ResyncRequired(BadUserInput):
    """A change-feed cursor the server can no longer replay from: the client must re-list."""

    code = "RESYNC_REQUIRED"


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(DomainError):
    code = "UNSUPPORTED_MEDIA_TYPE"


class StorageUnavailable(DomainError):
    code = "STORAGE_UNAVAILABLE"


class DatabaseUnavailable(DomainError):
    code = "DATABASE_UNAVAILABLE"


class DeadlineExceeded(DomainError):
    """The request ran past its server-side deadline (``REQUEST_TIMEOUT``) and was stopped."""

    code = "DEADLINE_EXCEEDED"


class SlowConsumer(DomainError):
    """A subscriber fell so far behind that its buffer filled; it must resume or re-list."""

    code = "SLOW_CONSUMER"


def excerpt(value: str, limit: int = 80) -> str:
    """``value`` quoted for an error message, cut to ``limit`` characters (the cut marked with
    an ellipsis and the original length): a message never echoes unbounded user input."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit] + '…'!r} ({len(value)} characters)"
