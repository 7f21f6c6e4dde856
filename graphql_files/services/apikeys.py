"""API keys, stored hashed in MongoDB with an expiry (Amplify's ``apiKeyAuthorizationMode``).

A key is ``gfk_<id>_<43 random characters>``; only its SHA-256 is stored (a random 256-bit
secret needs no slow hash). Verified keys are remembered for ``CACHE_SECONDS``, so a revocation
takes effect on every instance within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..adapters.mongo import Collection, Database
from ..errors import NotFound

DEFAULT_DAYS = 30
CACHE_SECONDS = 10.0
PREFIX = "gfk_"


@dataclass(frozen=True)
class ApiKey:
    id: str
    description: str
    created_at: datetime
    expires_at: datetime
    revoked: bool

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at

    @property
    def status(self) -> str:
        return "revoked" if self.revoked else "expired" if self.expired() else "active"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _from_document(doc: dict[str, object]) -> ApiKey:
    def aware(value: object) -> datetime:
        assert isinstance(value, datetime)
        return value if value.tzinfo else value.replace(tzinfo=UTC)  # BSON dates come back naive

    return ApiKey(
        id=str(doc["_id"]),
        description=str(doc.get("description", "")),
        created_at=aware(doc["createdAt"]),
        expires_at=aware(doc["expiresAt"]),
        revoked=bool(doc.get("revoked", False)),
    )


class ApiKeys:
    def __init__(self, *, database: Database) -> None:
        self._keys: Collection = database.collection("api_keys")
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def ensure_indexes(self) -> None:
        await self._keys.create_index([("hash", 1)], unique=True)

    async def create(
        self, *, expires_in_days: float = DEFAULT_DAYS, description: str = ""
    ) -> tuple[ApiKey, str]:
        """A new key and its secret; the secret is shown this once and never stored."""
        key_id = uuid.uuid4().hex[:12]
        secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        now = datetime.now(UTC).replace(microsecond=0)
        key = ApiKey(key_id, description, now, now + timedelta(days=expires_in_days), False)
        await self._keys.insert_one(
            {
                "_id": key.id,
                "hash": _hash(secret),
                "description": description,
                "createdAt": key.created_at,
                "expiresAt": key.expires_at,
                "revoked": False,
            }
        )
        return key, secret

    async def find(self, secret: str) -> ApiKey | None:
        """The key a secret belongs to (expired and revoked ones included), or None."""
        if not secret.startswith(PREFIX):
            return None
        digest = _hash(secret)
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        doc = await self._keys.find_one({"hash": digest})
        key = None if doc is None else _from_document(doc)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic(), key)
        return key

    async def list_keys(self) -> list[ApiKey]:
        docs = await self._keys.find({}, sort=[("createdAt", 1)], limit=10_000)
        return [_from_document(d) for d in docs]

    async def revoke(self, key_id: str) -> ApiKey:
        doc = await self._keys.find_one_and_update({"_id": key_id}, {"$set": {"revoked": True}})
        if doc is None:
            raise NotFound(f"no API key {key_id!r}")
        self._cache.clear()  # this process stops accepting it at once; others within the TTL
        return _from_document(doc)
