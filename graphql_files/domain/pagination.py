"""Opaque ``nextToken``s for keyset pagination over ``(createdAt, id)``.

A token names the last record of a page and is bound to the query that produced it (model,
filter, sort direction), so a page boundary never moves when records are inserted or deleted
between requests, and a token replayed with a different query is refused rather than silently
skipping records.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import BadUserInput

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Position:
    created_at: str
    record_id: str


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise BadUserInput(
            f"limit must be between 1 and {MAX_LIMIT}, got {limit}", argument="limit"
        )
    return limit


def _query_tag(query_key: str) -> str:
    return hashlib.sha256(query_key.encode()).hexdigest()[:16]


def seal(values: dict[str, str], query_key: str) -> str:
    """An opaque token carrying ``values``, bound to the query that made it."""
    payload = {**values, "q": _query_tag(query_key)}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unseal(token: str, query_key: str, fields: tuple[str, ...]) -> dict[str, str]:
    """The values of a token from ``seal``; ``BadUserInput`` for anything else."""
    malformed = BadUserInput("malformed nextToken", argument="nextToken")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload: Any = json.loads(raw)
        values = {name: payload[name] for name in (*fields, "q")}
    # RecursionError: JSON nested past the interpreter's limit ("[" x 100,000) is no token.
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise malformed from exc
    if not all(isinstance(v, str) for v in values.values()):
        raise malformed
    if values.pop("q") != _query_tag(query_key):
        raise BadUserInput(
            "nextToken belongs to a different query: pass the same arguments as the request "
            "that returned it",
            argument="nextToken",
        )
    return values


def encode(position: Position, query_key: str) -> str:
    return seal({"c": position.created_at, "i": position.record_id}, query_key)


def decode(token: str, query_key: str) -> Position:
    """The position a token names; ``BadUserInput`` for anything this server did not issue."""
    values = unseal(token, query_key, ("c", "i"))
    return Position(created_at=values["c"], record_id=values["i"])
