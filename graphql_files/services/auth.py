"""Who is calling, and what they may do.

``Authenticator.principal(headers)`` turns ``x-api-key`` and ``Authorization: Bearer <JWT>`` into
a ``Principal`` (either, both, or neither: a guest), refusing bad or expired credentials with
``UNAUTHENTICATED``. ``Access`` holds one caller's principal and the policy, and answers the two
questions every service asks, independently, as Amplify's Data and Storage do:

- ``data(model, operation)``: may they, and restricted to which owner?
- ``storage(path, action)``: may they?

A refusal is ``UNAUTHENTICATED`` for a caller with no credentials and ``FORBIDDEN`` otherwise.
Keys and tokens are never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jwt

from ..domain.models import ModelSpec
from ..domain.policy import Policy, Rule
from ..errors import DomainError, Forbidden, Unauthenticated
from ..settings import Settings
from .apikeys import ApiKeys

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 30
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class User:
    sub: str
    groups: frozenset[str]
    expires_at: datetime | None


@dataclass(frozen=True)
class Principal:
    api_key: str | None = None  # the key's id ("static" for GRAPHQL_FILES_API_KEY)
    user: User | None = None

    @property
    def anonymous(self) -> bool:
        return self.api_key is None and self.user is None


GUEST = Principal()


@dataclass(frozen=True)
class DataGrant:
    """What a data rule allowed: everything, or only records this owner owns."""

    owner: str | None  # restrict reads and writes to this owner's records
    creator: str | None  # the owner to give a record this caller creates


def _expiry(claims: Mapping[str, Any]) -> datetime:
    """``exp`` as a datetime. PyJWT has checked it is not past, after ``int()``, which also
    lets through strings of digits and values no datetime can hold."""
    exp = claims["exp"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise Unauthenticated("invalid token: exp must be a number")
    try:
        return datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise Unauthenticated("invalid token: exp out of range") from exc


class TokenVerifier:
    """Signed-in users: JWTs signed with ``JWT_SECRET`` (HS256) or ``JWKS_FILE`` keys (RS256)."""

    def __init__(self, settings: Settings, *, secret: str | None = None) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        # Apart: a JWKS key may have any kid, "HS256" included.
        self._rsa_keys: dict[str | None, Any] = {}
        self._hs_secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else secret
        self._verified: dict[str, tuple[User, float]] = {}  # and until when (epoch seconds)
        if settings.jwks_file is not None:
            jwks = jwt.PyJWKSet.from_dict(json.loads(Path(settings.jwks_file).read_text()))
            self._rsa_keys = {k.key_id: k.key for k in jwks.keys}

    @property
    def enabled(self) -> bool:
        return bool(self._rsa_keys) or self._hs_secret is not None

    def _key_for(self, token: str) -> tuple[Any, str]:
        """The key to check this token's signature with, and the one algorithm it is for."""
        header = jwt.get_unverified_header(token)
        if header.get("alg") == "HS256":
            return self._hs_secret, "HS256"
        kid = header.get("kid")
        rsa = self._rsa_keys
        if isinstance(kid, str) and kid in rsa:
            return rsa[kid], "RS256"
        return (next(iter(rsa.values())) if len(rsa) == 1 and kid is None else None), "RS256"

    def verify(self, token: str) -> User:
        """The token's user; a token already verified is only checked for expiry again
        (clients send the same token with every request; its signature cannot change)."""
        cached = self._verified.get(token)
        if cached is not None:
            user, until = cached
            if until > time.time():
                return user
            del self._verified[token]
        user = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))  # the oldest
        until = math.inf if user.expires_at is None else user.expires_at.timestamp()
        self._verified[token] = (user, until + LEEWAY_SECONDS)
        return user

    def _verify(self, token: str) -> User:
        if not self.enabled:
            raise Unauthenticated("this server accepts no user tokens (no JWT_SECRET or JWKS_FILE)")
        try:
            key, algorithm = self._key_for(token)
            if key is None:
                raise Unauthenticated("the token was signed with an unknown key")
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        groups = claims.get("groups", claims.get("cognito:groups", []))
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Unauthenticated("invalid token: groups must be a list of strings")
        return User(sub=str(claims["sub"]), groups=frozenset(groups), expires_at=_expiry(claims))

    def issue(self, sub: str, *, groups: list[str] | None = None, ttl_seconds: int) -> str:
        """An HS256 token (for the embedded defaults' printed development user)."""
        secret = self._hs_secret
        if secret is None:
            raise ValueError("no HS256 secret to sign with")
        now = int(datetime.now(UTC).timestamp())
        claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl_seconds}
        if groups:
            claims["groups"] = groups
        if self._issuer:
            claims["iss"] = self._issuer
        if self._audience:
            claims["aud"] = self._audience
        return jwt.encode(claims, secret, algorithm="HS256")


class Authenticator:
    def __init__(self, *, api_keys: ApiKeys, tokens: TokenVerifier, static_key: str | None):
        self.api_keys = api_keys
        self.tokens = tokens
        self._static_key = static_key

    async def principal(self, headers: Mapping[str, str]) -> Principal:
        """The caller of a request (header names in lower case); ``Unauthenticated`` for bad
        or expired credentials."""
        key_id = await self._api_key(headers.get("x-api-key"))
        user = None
        authorization = (headers.get("authorization") or "").strip()
        if authorization:
            user = self.tokens.verify(_bearer_token(authorization))
        return Principal(api_key=key_id, user=user)

    async def _api_key(self, secret: str | None) -> str | None:
        if not secret:
            return None
        if self._static_key and hmac.compare_digest(secret.encode(), self._static_key.encode()):
            return "static"
        key = await self.api_keys.find(secret)
        if key is None:
            raise Unauthenticated("invalid API key")
        if key.revoked:
            raise Unauthenticated("this API key was revoked")
        if key.expired():
            raise Unauthenticated("this API key has expired")
        return key.id


def _bearer_token(authorization: str) -> str:
    """The JWT of an ``Authorization`` header: ``Bearer <jwt>``, or the bare JWT, which is how
    AppSync's clients (aws-amplify's ``userPool``, ``oidc`` and ``lambda`` modes) send it."""
    scheme, _, token = authorization.partition(" ")
    if not token:
        return scheme
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <token>' or the token itself")
    return token.strip()


_NEEDS = {
    "publicApiKey": "an API key (x-api-key header)",
    "authenticated": "a signed-in user (Authorization header)",
    "owner": "a signed-in user (Authorization header), on their own records",
    "entity": "a signed-in user (Authorization header) whose id the path names",
}


def _needs(rules: Iterable[Rule], wanted: str) -> str:
    """Who the rules would let do ``wanted``: what a refused caller is missing."""
    kinds = []
    for rule in rules:
        if wanted in rule.allows and rule.kind != "guest":
            kind = f"a user in group {rule.group!r}" if rule.kind == "groups" else _NEEDS[rule.kind]
            kinds.append(kind)
    return " or ".join(dict.fromkeys(kinds)) or "a rule that allows it (none does)"


class Access:
    """What one caller may do, under the rule file: data rules per model and storage rules per
    path, each guarding only its own category (as Amplify's Data and Storage do). Every service
    asks here; no other module reads the rules."""

    def __init__(
        self, policy: Policy, principal: Principal = GUEST, error: DomainError | None = None
    ) -> None:
        self.policy = policy
        self.principal = principal
        self.error = error  # bad credentials: every check answers this

    def data(self, model: ModelSpec, operation: str) -> DataGrant:
        """May the caller ``operation`` (create, read, update, delete) ``model``'s records,
        and restricted to which owner's?"""
        if self.error is not None:
            raise self.error
        user = self.principal.user
        creator = user.sub if user else None
        rules = self.policy.data_rules(model.name)
        granted = self._data_grant(rules, operation)
        if granted == "all":
            return DataGrant(owner=None, creator=creator)
        if granted == "own":
            restricted = None if operation == "create" else creator
            return DataGrant(owner=restricted, creator=creator)
        raise self._refusal(f"{operation} {model.name} records", _needs(rules, operation))

    def _data_grant(self, rules: Iterable[Rule], operation: str) -> Literal["all", "own"] | None:
        """ "all" when a rule lets this caller ``operation`` every record, "own" when only an
        owner rule does, None when none does."""
        as_owner = False
        for rule in rules:
            if operation not in rule.allows:
                continue
            if rule.kind == "owner" and self.principal.user is not None:
                as_owner = True
            elif self._grants(rule):
                return "all"
        return "own" if as_owner else None

    def sharing_class(self) -> Hashable | None:
        """What of this caller the rules can tell apart; callers of one class are allowed and
        refused alike and see the same records, files and URLs, so they may share one
        execution of a subscription. It holds whether there is an API key and a user, the
        user's groups that rules name, and the user's sub where entity paths exist. None (share
        with no one): bad credentials, or a user who may read some model's records only as
        their owner."""
        if self.error is not None:
            return None
        user = self.principal.user
        if user is None:
            return (self.principal.api_key is not None, False, frozenset(), None)
        models = self.policy.data.values()
        if any(self._data_grant(model_rules, "read") == "own" for model_rules in models):
            return None
        rules = [
            *(rule for model_rules in models for rule in model_rules),
            *(rule for path in self.policy.storage for rule in path.rules),
        ]
        named = {rule.group for rule in rules if rule.group is not None}
        entity = any(rule.kind == "entity" for rule in rules)
        return (
            self.principal.api_key is not None,
            True,
            user.groups & named,
            user.sub if entity else None,
        )

    def upload_refusal(self) -> DomainError | None:
        """Why this caller may send no file at all, known before its upload's body is read
        (which may be up to ``MAX_UPLOAD_FILES`` x ``MAX_UPLOAD_BYTES``): bad credentials, or
        none where the storage rules let no guest write. None: read it, each file's own key
        decides."""
        if self.error is not None:
            return self.error
        if self.principal.anonymous and not self.policy.grants_guests("write"):
            return Unauthenticated(
                "uploads need a signed-in user (an Authorization header): the storage rules "
                "let no guest write"
            )
        return None

    def storage(self, path: str, action: str) -> None:
        """Raise unless the caller may ``action`` (get, list, write, delete) at ``path``."""
        if self.error is not None:
            raise self.error
        if not self.may_storage(path, action):
            rules, _ = self.policy.storage_path(path)
            needed = _needs(rules.rules if rules else (), action)
            raise self._refusal(f"{action} {path}", needed)

    def storage_check(self, action: str) -> Callable[[str], None]:
        """``storage(path, action)`` for many paths: the rules decide by folder
        (``Policy.folder``), so each folder is decided once; a refusal is raised as ``storage``
        raises it for that path."""
        decided: dict[str, bool] = {}

        def check(path: str) -> None:
            folder = self.policy.folder(path)
            allowed = decided.get(folder)
            if allowed is None:
                allowed = decided[folder] = self.may_storage(path, action)
            if not allowed:
                self.storage(path, action)

        return check

    def may_storage(self, path: str, action: str) -> bool:
        """``storage`` as a question, for filtering (a listing's keys, say): the rules of the
        most specific path ``path`` lies under decide. False for bad credentials."""
        if self.error is not None:
            return False
        rules, entity = self.policy.storage_path(path)
        return any(
            action in rule.allows and self._grants(rule, entity)
            for rule in (rules.rules if rules else ())
        )

    def _grants(self, rule: Rule, entity: str | None = None) -> bool:
        """Whether one rule lets this caller in (``owner`` is decided per record, elsewhere)."""
        user = self.principal.user
        if rule.kind == "publicApiKey":
            return self.principal.api_key is not None
        if rule.kind == "guest":
            return user is None
        if rule.kind == "authenticated":
            return user is not None
        if rule.kind == "groups":
            return user is not None and rule.group in user.groups
        if rule.kind == "entity":
            return user is not None and entity == user.sub
        return False

    def _refusal(self, what: str, needed: str) -> DomainError:
        if self.principal.anonymous:
            return Unauthenticated(f"{what} needs {needed}")
        return Forbidden(f"not allowed to {what}: it needs {needed}")

    def for_integrity(self) -> Access:
        """This caller, with the server's authority over records: what a delete the caller
        may make carries with it (a cascade's deletes, a nullify's updates) reaches every
        child, whoever owns it, as a database's foreign keys do. Storage stays the caller's."""
        return _IntegrityAccess(self.policy, self.principal, self.error)


class _IntegrityAccess(Access):
    def data(self, model: ModelSpec, operation: str) -> DataGrant:
        if self.error is not None:
            raise self.error
        return DataGrant(owner=None, creator=None)
