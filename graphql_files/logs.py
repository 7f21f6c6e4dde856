"""Credentials never reach a log: a filter that rewrites every record's final message.

Libraries log what they see, and at debug level they see credentials: uvicorn's websockets
implementation logs each handshake header (``< authorization: Bearer ...``, ``< x-api-key: ...``)
and each frame (``connection_init`` carries the same credentials); botocore logs its signed
requests. ``RedactCredentials`` is installed on the root logger's handlers (``install``), so it
sees every record that propagates there, from any logger, and rewrites:

- header values in header dumps (``authorization: ...``, ``(b'x-api-key', b'...')``,
  ``'Authorization': b'...'``) and in query strings (``?token=...``, ``X-Amz-Signature=...``);
- credentials by their shape: ``Bearer <token>``, JWTs (``eyJ...`` in three parts), API keys
  (``gfk_...``), passwords in URIs (``scheme://user:***@host``), SigV4 signatures, and the
  ``header-<base64 JSON>`` websocket subprotocol AppSync clients authenticate with;
- websocket frames that mention credentials: websockets cuts long frames short, so a secret
  may lie across the cut where no pattern can find it; the frame's text goes whole.

A message may show credentials on purpose (the start-up block, with the API key the server made
for the embedded defaults): wrap that text in ``Disclosed`` and the filter leaves it as it is.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

# Header, field and parameter names whose values are credentials (matched in any case).
_NAMES = (
    r"authorization|proxy-authorization|x-api-key|api[-_]?key|cookie|set-cookie|password|passwd"
    r"|secret|client_secret|token|access_token|refresh_token|id_token|x-amz-security-token"
)
_FRAME = re.compile(r"\A([<>] (?:TEXT|BINARY|CONT) )(.*)( \[\d+ bytes(?:, continued)?\])\Z", re.S)
_FRAME_HINT = re.compile(
    r"connection_init|authoriz|api[-_]?key|token|bearer|password|secret|signature|eyJ|gfk_",
    re.I,
)

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # "< authorization: Bearer ..." (one header a line, as websockets logs a handshake)
    (re.compile(rf"^([<>]?[ \t]*(?:{_NAMES})[ \t]*:[ \t]*)\S.*$", re.I | re.M), rf"\1{REDACTED}"),
    # (b'authorization', b'...') and 'x-api-key': '...' and "password": "..."
    (
        re.compile(rf"""(b?(['"])(?:{_NAMES})\2\s*[,:]\s*b?(['"]))(?:\\.|(?!\3).)*(\3)""", re.I),
        rf"\1{REDACTED}\4",
    ),
    # ?token=...&x-api-key=... in a logged URL; AppSync's ?header=<base64 JSON>
    (
        re.compile(rf"([?&](?:{_NAMES}|x-amz-signature|header)=)[^&\s#'\"]+", re.I),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\b(Bearer)\s+[A-Za-z0-9\-._~+/]+=*", re.I), rf"\1 {REDACTED}"),
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"\bgfk_[A-Za-z0-9_-]+"), f"gfk_{REDACTED}"),
    (re.compile(r"\b(header-)eyJ[A-Za-z0-9_=-]*"), rf"\1{REDACTED}"),
    (re.compile(r"(Signature[=:]\s*)[0-9a-f]{64}"), rf"\1{REDACTED}"),
)
_URI_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@\[\]]*:)[^\s/?#@]+@")


class Disclosed(str):
    """Text meant to show the credentials in it (the start-up block): logged as it is."""

    __slots__ = ()


def redact_uri(text: str) -> str:
    """``text`` with the password of every URI in it replaced: ``scheme://user:***@host``."""
    return _URI_PASSWORD.sub(r"\1***@", text)


def redact(text: str) -> str:
    """``text`` with every credential this module knows the shape of replaced."""
    frame = _FRAME.match(text)
    if frame is not None and _FRAME_HINT.search(frame[2]):
        return f"{frame[1]}'{REDACTED}'{frame[3]}"
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return redact_uri(text)


class RedactCredentials(logging.Filter):
    """Rewrite each record's message (its arguments merged in) and traceback with ``redact``.

    A record whose message changes keeps no arguments: a formatter that reads ``record.args``
    itself (uvicorn's own access formatter) would find them gone; this server's logging
    (``cli._configure_logging``) formats every record from its message.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message, disclosed = _message(record)
        except Exception:  # arguments that do not fit: logging reports it when it formats
            return True
        redacted = redact(message)
        for placeholder, text in disclosed.items():
            redacted = redacted.replace(placeholder, text)
        if disclosed or redacted != message:
            # Still Disclosed: the filter of another handler sees the same record again.
            record.msg, record.args = (Disclosed(redacted) if disclosed else redacted), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _message(record: logging.LogRecord) -> tuple[str, dict[str, str]]:
    """The record's message with each ``Disclosed`` argument replaced by a placeholder that no
    rule touches, and the texts to put back."""
    if isinstance(record.msg, Disclosed) and not record.args:
        return "\0disclosed\0", {"\0disclosed\0": str(record.msg)}
    args = record.args
    if not isinstance(args, tuple) or not any(isinstance(a, Disclosed) for a in args):
        return record.getMessage(), {}
    disclosed: dict[str, str] = {}
    placeholders: list[object] = []
    for index, arg in enumerate(args):
        if isinstance(arg, Disclosed):
            placeholder = f"\0disclosed{index}\0"
            disclosed[placeholder] = str(arg)
            arg = placeholder
        placeholders.append(arg)
    return str(record.msg) % tuple(placeholders), disclosed


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to each handler of ``logger`` (the root logger), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactCredentials) for f in handler.filters):
            handler.addFilter(RedactCredentials())
