"""The domain errors: every refusal the server makes, each knowing its GraphQL code.

    DomainError                       (abstract; carries ``code`` and ``extensions``)
    ├── Unauthenticated               UNAUTHENTICATED
    ├── Forbidden                     FORBIDDEN
    ├── NotFound                      NOT_FOUND
    ├── Conflict                      CONFLICT  (+ currentVersion when the record exists)
    ├── BadUserInput                  BAD_USER_INPUT
    ├── PayloadTooLarge               PAYLOAD_TOO_LARGE
    ├── UnsupportedMediaType          UNSUPPORTED_MEDIA_TYPE
    ├── StorageUnavailable            STORAGE_UNAVAILABLE
    ├── DatabaseUnavailable           DATABASE_UNAVAILABLE
    ├── DeadlineExceeded              DEADLINE_EXCEEDED
    └── FeedInterrupted               (abstract: a subscriber's live feed cannot go on)
        ├── ResyncRequired            RESYNC_REQUIRED  (re-list: changes may have been missed)
        └── SlowConsumer              SLOW_CONSUMER    (resume from extensions.lastCursor)

    StartupError                      (not a refusal: the server cannot start; one line says why)

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


class FeedInterrupted(DomainError):
    """A subscriber's live feed ended; the client must recover before it can trust its copy."""


class ResyncRequired(FeedInterrupted):
    """Changes may have been missed (a cursor too old or from another log, events lost while
    the log was unreachable, the server shutting down): the client must re-list."""

    code = "RESYNC_REQUIRED"


class SlowConsumer(FeedInterrupted):
    """A subscriber fell so far behind that its buffer filled; it must resume or re-list."""

    code = "SLOW_CONSUMER"


class StartupError(Exception):
    """The server cannot start (an embedded store did not start, its data directory is in
    use): the message is the one line the CLI prints before it exits."""


def excerpt(value: str, limit: int = 80) -> str:
    """``value`` quoted for an error message, cut to ``limit`` characters (the cut marked with
    an ellipsis and the original length): a message never echoes unbounded user input."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit] + '…'!r} ({len(value)} characters)"
