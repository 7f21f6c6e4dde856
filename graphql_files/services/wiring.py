"""The server's services, opened together and closed together.

``open_services(settings)`` is what the app's lifespan and the CLI commands enter: it opens
MongoDB, S3 and the event broker once, builds the services on top of them, and closes
everything in reverse order on exit.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..adapters.embedded import Keepsakes, Stores, open_stores
from ..adapters.mongo import Database, open_database
from ..adapters.s3 import Files, open_files
from ..domain.declaration import Declaration, load_declaration
from ..domain.feed import Broker, LocalBroker
from ..domain.policy import Policy, load_policy
from ..errors import DomainError
from ..logs import Disclosed
from ..settings import Settings
from .apikeys import ApiKeys
from .attachments import Attachments
from .auth import Authenticator, TokenVerifier
from .background import Background
from .claims import Claims
from .records import Records
from .relations import Relations
from .storage import Storage
from .sweep import Sweeper

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: Settings
    stores: Stores  # where MongoDB and S3 are, configured or embedded
    database: Database
    files: Files
    broker: Broker
    records: Records
    storage: Storage
    attachments: Attachments
    relations: Relations  # createX, updateX and deleteX: references to parents never dangle
    background: Background  # deletions that run after the answer: ``drain()`` awaits them
    sweeper: Sweeper
    policy: Policy
    authenticator: Authenticator
    declaration: Declaration
    welcome: tuple[str, ...] = ()  # credentials made for the embedded defaults, shown once
    # the same credentials as request headers (GraphiQL opens with them on loopback)
    dev_headers: Mapping[str, str] = field(default_factory=dict)

    async def readiness(self) -> dict[str, str]:
        """'ok' or the reason, for MongoDB and S3."""
        report: dict[str, str] = {}
        for name, ping in (("mongodb", self.database.ping), ("s3", self.files.ping)):
            try:
                await ping()
                report[name] = "ok"
            except DomainError as exc:
                report[name] = exc.message
        return report


@asynccontextmanager
async def open_services(
    settings: Settings, declaration: Declaration | None = None
) -> AsyncIterator[Services]:
    """Everything the server runs on, for ``declaration``'s models (read from
    ``MODELS_FILE`` when not given); bad declarations and rule files stop us before any
    connection."""
    declaration = declaration or load_declaration(settings.models_file)
    policy = load_policy(settings.access_file, [m.name for m in declaration.models])
    async with AsyncExitStack() as stack:
        stores = await stack.enter_async_context(open_stores(settings))
        database = await stack.enter_async_context(open_database(settings, stores.mongodb))
        files = await stack.enter_async_context(open_files(settings, stores.s3))
        broker = open_broker(settings)
        await broker.start()
        stack.push_async_callback(broker.close)
        records = Records(
            database=database,
            broker=broker,
            models=declaration.models,
            max_files=settings.max_files_per_record,
        )
        claims, record_claims = (
            Claims(
                collection=database.collection(name),
                hold_seconds=settings.request_timeout,
                lease_seconds=settings.claim_lease_seconds,
                wait_seconds=settings.claim_wait,
                shared=shared,
            )
            # on object keys; on records (relations: child writes share a parent's claim)
            for name, shared in (("claims", False), ("record_claims", True))
        )
        api_keys = ApiKeys(database=database)
        try:
            await records.ensure_indexes()
            await claims.ensure_indexes()
            await record_claims.ensure_indexes()
            await api_keys.ensure_indexes()
        except DomainError as exc:
            log.warning("could not create MongoDB indexes yet (%s); /readyz will say so", exc)
        authenticator, welcome, dev_headers = await _authenticator(
            settings, api_keys, stores.keepsakes
        )
        storage = Storage(
            files=files,
            records=records,
            claims=claims,
            settings=settings,
            models=declaration.models,
        )
        # closed first (the stack unwinds in reverse): pending deletions still have S3 and MongoDB
        background = Background()
        stack.push_async_callback(background.close)
        attachments = Attachments(
            records=records, storage=storage, settings=settings, background=background
        )
        yield Services(
            settings=settings,
            stores=stores,
            database=database,
            files=files,
            broker=broker,
            records=records,
            storage=storage,
            attachments=attachments,
            relations=Relations(
                records=records,
                attachments=attachments,
                claims=record_claims,
                models=declaration.models,
            ),
            background=background,
            sweeper=Sweeper(
                records=records,
                storage=storage,
                prefix=settings.attachment_prefix,
                record_claims=record_claims,
            ),
            policy=policy,
            authenticator=authenticator,
            declaration=declaration,
            welcome=welcome,
            dev_headers=dev_headers,
        )


def open_broker(settings: Settings) -> Broker:
    if settings.redis_url is None:
        return LocalBroker(history=settings.change_history)
    from ..adapters.redis_log import RedisBroker

    return RedisBroker(
        url=settings.redis_url.get_secret_value(),
        stream=settings.redis_stream,
        history_length=settings.change_history,
        history_age_seconds=settings.change_history_age,
    )


DEV_USER = "dev-user"
DEV_TOKEN_SECONDS = 12 * 3600


async def _authenticator(
    settings: Settings, api_keys: ApiKeys, keepsakes: Keepsakes
) -> tuple[Authenticator, tuple[str, ...], dict[str, str]]:
    """On the embedded defaults, with nothing configured, make an API key and a user token so
    that a new user can get in (the seed's rules need both for the whole workflow). Where the
    embedded data is kept, so are they: after a restart the same key and token secret work."""
    welcome: list[str] = []
    headers: dict[str, str] = {}
    dev_secret = None
    generate = settings.embedded_mongodb
    if generate and settings.jwt_secret is None and settings.jwks_file is None:
        dev_secret = keepsakes.get("tokenSecret") or secrets.token_urlsafe(32)
        keepsakes.put("tokenSecret", dev_secret)
    tokens = TokenVerifier(settings, secret=dev_secret)
    static = settings.api_key.get_secret_value() if settings.api_key else None
    if generate and static is None:
        secret, expires_at = await _dev_api_key(api_keys, keepsakes)
        until = expires_at.date().isoformat()
        welcome.append(f"  API key   {secret}   (x-api-key header; valid until {until})")
        headers["x-api-key"] = secret
    if dev_secret is not None:
        token = tokens.issue(DEV_USER, ttl_seconds=DEV_TOKEN_SECONDS)
        welcome.append(f"  User      Bearer {token}")
        headers["Authorization"] = f"Bearer {token}"
        welcome.append(f"            (Authorization header; user {DEV_USER!r}, valid 12 hours)")
    authenticator = Authenticator(api_keys=api_keys, tokens=tokens, static_key=static)
    return authenticator, tuple(welcome), headers


async def _dev_api_key(api_keys: ApiKeys, keepsakes: Keepsakes) -> tuple[str, datetime]:
    """The kept development key while it has a day or more to live; else a new one."""
    kept = keepsakes.get("apiKey")
    key = await api_keys.find(kept) if kept is not None else None
    if (
        kept is not None
        and key is not None
        and key.status == "active"
        and key.expires_at - datetime.now(UTC) > timedelta(days=1)
    ):
        return kept, key.expires_at
    key, secret = await api_keys.create(description="made at start-up for the embedded defaults")
    keepsakes.put("apiKey", secret)
    return secret, key.expires_at


def describe(services: Services, *, url: str) -> str:
    """The start-up block: where to go, and which parts are embedded. ``Disclosed``: the log
    shows it as it is, since a key made for the embedded defaults is how a new user gets in;
    so nothing configured may be in it unredacted (an endpoint's password, say)."""
    s = services.settings
    events = (
        "in process (one server instance)"
        if s.embedded_events
        else f"Redis stream {s.redis_stream!r} (shared by every instance)"
    )
    sweep = (
        f"every {s.sweep_interval:g}s, removing orphans older than {s.sweep_grace:g}s"
        if s.sweep_interval
        else "off (GRAPHQL_FILES_SWEEP_INTERVAL)"
    )
    lines = [
        "graphql-files is ready",
        f"  GraphiQL  {url}",
        f"  MongoDB   {services.stores.mongodb.summary}",
        f"  S3        {services.stores.s3.summary}",
        f"  Events    {events}",
        f"  Sweep     {sweep}",
        *services.welcome,
    ]
    return Disclosed("\n".join(lines))
