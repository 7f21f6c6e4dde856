"""The domain errors: every refusal the server makes, each knowing its GraphQL code.

    DomainError                       (abstract; carries ``code`` and ``extensions``)
    ├── Unauthenticated               UNAUTHENTICATED
    ├── Forbidden                     FORBIDDEN
    ├── NotFound                      NOT_FOUND
    ├── Conflict                      CONFLICT  (+ currentVersion when the record exists)
    │   └── Busy                      CONFLICT, reason BUSY (another request holds the key)
    ├── BadUserInput                  BAD_USER_INPUT
    │   └── BudgetExceeded            BAD_USER_INPUT, reason FILE_WORK_LIMIT
    ├── PayloadTooLarge               PAYLOAD_TOO_LARGE
    ├── UnsupportedMediaType          UNSUPPORTED_MEDIA_TYPE
    ├── StorageUnavailable            STORAGE_UNAVAILABLE
    ├── DatabaseUnavailable           DATABASE_UNAVAILABLE
    ├── DeadlineExceeded              DEADLINE_EXCEEDED
    ├── EventsUnavailable             (not a refusal: the event log is unreachable; handled)
    └── FeedInterrupted               (abstract: a subscriber's live feed cannot go on)
        ├── ResyncRequired            RESYNC_REQUIRED  (re-list: changes may have been missed)
        └── SlowConsumer              SLOW_CONSUMER    (resume from extensions.lastCursor)

    StartupError                      (not a refusal: the server cannot start; one line says why)

Every ``extensions.code`` the server sends is spelled once, below (the constants), with how it
maps onto HTTP statuses (``HTTP_STATUS``) and AppSync's error types (``APPSYNC_ERROR_TYPE``).
Services raise these; the GraphQL layer turns them into errors whose ``extensions.code`` is the
class's ``code``. Driver exceptions (pymongo, botocore, redis) are translated into these at the
one service that calls the driver. Anything that is not a ``DomainError`` is a bug: the client
sees ``INTERNAL_SERVER_ERROR`` and the log gets the traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
NOT_FOUND = "NOT_FOUND"
CONFLICT = "CONFLICT"
BAD_USER_INPUT = "BAD_USER_INPUT"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
RESYNC_REQUIRED = "RESYNC_REQUIRED"
SLOW_CONSUMER = "SLOW_CONSUMER"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"

# The HTTP status of a request refused as a whole with one of these (before or instead of its
# execution); an execution's own errors are answered 200, as GraphQL over HTTP says.
HTTP_STATUS = {
    UNAUTHENTICATED: 401,
    PAYLOAD_TOO_LARGE: 413,
    BAD_USER_INPUT: 400,
    DATABASE_UNAVAILABLE: 503,
    STORAGE_UNAVAILABLE: 503,
    DEADLINE_EXCEEDED: 503,
    INTERNAL_SERVER_ERROR: 500,
}
# Our codes as AppSync's error types on its real-time socket: Amplify gives up on these
# instead of retrying (and the HTTP-like code it reads beside them).
APPSYNC_ERROR_TYPE = {
    UNAUTHENTICATED: "UnauthorizedException",
    FORBIDDEN: "Unauthorized",
    BAD_USER_INPUT: "BadRequestException",
}
APPSYNC_ERROR_CODE = {UNAUTHENTICATED: 401, FORBIDDEN: 401, BAD_USER_INPUT: 400}


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
    code = UNAUTHENTICATED


class Forbidden(DomainError):
    code = FORBIDDEN


class NotFound(DomainError):
    code = NOT_FOUND


class Conflict(DomainError):
    code = CONFLICT


class BadUserInput(DomainError):
    code = BAD_USER_INPUT


class PayloadTooLarge(DomainError):
    code = PAYLOAD_TOO_LARGE


class UnsupportedMediaType(DomainError):
    code = UNSUPPORTED_MEDIA_TYPE


class StorageUnavailable(DomainError):
    code = STORAGE_UNAVAILABLE


class DatabaseUnavailable(DomainError):
    code = DATABASE_UNAVAILABLE


class DeadlineExceeded(DomainError):
    """The request ran past its server-side deadline (``REQUEST_TIMEOUT``) and was stopped."""

    code = DEADLINE_EXCEEDED


class Busy(Conflict):
    """Another request holds the claim on a key and did not let go in time (``claims``)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"another request is working on {key}; try again shortly", path=key, reason="BUSY"
        )
        self.key = key


class BudgetExceeded(BadUserInput):
    """An execution needs more per-file work than ``MAX_FILE_WORK`` (``api.engine.budget``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this request needs more than {limit:,} units of per-file work (signed URLs cost "
            "2 each, properties 20): ask for fewer records or files per request",
            reason="FILE_WORK_LIMIT",
            maxFileWork=limit,
        )


class EventsUnavailable(DomainError):
    """The event log cannot be reached (raised by a backend, handled by ``Broker.publish``)."""


class FeedInterrupted(DomainError):
    """A subscriber's live feed ended; the client must recover before it can trust its copy."""


class ResyncRequired(FeedInterrupted):
    """Changes may have been missed (a cursor too old or from another log, events lost while
    the log was unreachable, the server shutting down): the client must re-list."""

    code = RESYNC_REQUIRED


class SlowConsumer(FeedInterrupted):
    """A subscriber fell so far behind that its buffer filled; it must resume or re-list."""

    code = SLOW_CONSUMER


class StartupError(Exception):
    """The server cannot start (an embedded store did not start, its data directory is in
    use): the message is the one line the CLI prints before it exits."""


def excerpt(value: str, limit: int = 80) -> str:
    """``value`` quoted for an error message, cut to ``limit`` characters (the cut marked with
    an ellipsis and the original length): a message never echoes unbounded user input."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit] + '…'!r} ({len(value)} characters)"
