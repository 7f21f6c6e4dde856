"""Typed settings, read from ``GRAPHQL_FILES_*`` environment variables.

Nothing here reads the environment at import time: ``Settings()`` does, when the CLI or a test
asks for it. A bad value raises ``pydantic.ValidationError``; ``describe_invalid`` turns it into
the one line the CLI prints before it exits.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, get_args
from urllib.parse import unquote_plus

import jwt
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pymongo.errors import ConfigurationError
from pymongo.uri_parser import parse_uri, parse_userinfo

ENV_PREFIX = "GRAPHQL_FILES_"
MIB = 1024 * 1024
S3_ATTEMPTS = 2  # one retry: a hung S3 answers STORAGE_UNAVAILABLE within seconds
CLOCK_SKEW_SECONDS = 30.0  # instances' clocks must agree this well (NTP does far better)
SEVEN_DAYS = 7 * 24 * 3600

# Browsers on this machine may call the API from any local port (a dev server, say); this is
# the default when CORS_ORIGINS is empty.
LOCALHOST_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"

CommaList = Annotated[tuple[str, ...], NoDecode]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


_HOST_NAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
SRV_SCHEME = "mongodb+srv://"


def uri_credentials(uri: str) -> list[str]:
    """The parts of a URI that must never be printed: its userinfo and password, as written
    and unescaped (longest first, so that redacting one leaves no piece of another)."""
    authority = uri.partition("://")[2].partition("/")[0].partition("?")[0]
    userinfo = authority.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    found = {userinfo, password, unquote_plus(userinfo), unquote_plus(password)}
    return sorted((part for part in found if part), key=len, reverse=True)


def redact(text: str, value: str, *, whole: bool = True) -> str:
    """``text`` without ``value`` (unless not ``whole``) and without the credentials ``value``
    holds if it is a URI."""
    for part in ([value] if whole else []) + uri_credentials(value):
        if part:
            text = text.replace(part, "***")
    return text


def check_mongodb_uri(uri: str) -> None:
    """ValueError, never quoting the URI, unless it is a MongoDB connection string that
    PyMongo accepts (option values included: a bad one is an error, not a warning). A
    ``mongodb+srv://`` URI is checked for its shape only: PyMongo would look it up in DNS."""
    try:
        if uri.startswith(SRV_SCHEME):
            _check_srv_shape(uri)
        else:
            parse_uri(uri, warn=False)
    except (ConfigurationError, ValueError, OSError) as exc:  # InvalidURI is a ConfigurationError
        raise ValueError(redact(str(exc), uri)) from None


def _check_srv_shape(uri: str) -> None:
    authority = uri.removeprefix(SRV_SCHEME).partition("?")[0].partition("/")[0]
    userinfo, at, host = authority.rpartition("@")
    if at:
        parse_userinfo(userinfo)  # ValueError (InvalidURI) for unescaped reserved characters
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(
            f"{SRV_SCHEME} URIs name one host, with no port and no second host (use mongodb:// "
            "to list hosts and ports)"
        )


def parse_duration(text: str) -> timedelta:
    """'90', '90s', '15m', '1h', '2d' -> a timedelta; ValueError otherwise."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h, 2d)")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class Settings(BaseSettings):
    """Every knob of the server. Unset services mean "use the embedded one"."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Where no MongoDB or S3 is configured: SecantusDB and SeaweedFS as child processes, their
    # data under data_dir ("disk"), or in-process engines that keep nothing ("memory").
    embedded: Literal["disk", "memory"] = "disk"
    data_dir: Path = Path(".graphql-files")

    mongodb_uri: SecretStr | None = None
    mongodb_database: str = Field("graphql_files", min_length=1, max_length=63)
    mongodb_timeout_ms: int = Field(3000, ge=100, le=120_000)

    s3_bucket: str | None = Field(None, min_length=3, max_length=63)
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_timeout: float = Field(5.0, gt=0, le=300)

    redis_url: SecretStr | None = None
    redis_stream: str = Field("graphql-files:changes", min_length=1)
    change_history: int = Field(10_000, ge=1)
    change_history_age: float = Field(86_400, gt=0)

    api_key: SecretStr | None = Field(None, min_length=16)
    jwt_secret: SecretStr | None = Field(None, min_length=32)
    jwks_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    access_file: Path | None = None
    models_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    max_upload_bytes: int = Field(50 * MIB, ge=1)
    max_upload_files: int = Field(10, ge=1, le=100)
    max_files_per_record: int = Field(1000, ge=1, le=100_000)
    allowed_content_types: CommaList = ("image/*", "audio/*")
    signed_url_ttl: int = Field(900, ge=1, le=SEVEN_DAYS)
    attachment_prefix: str = "images/"
    cors_origins: CommaList = ()
    sweep_interval: float | None = Field(None, gt=0)
    sweep_grace: float = Field(3600, ge=0)
    # image variants: an image declaring more pixels is refused before it is decoded (Pillow
    # refuses past about 178 million on its own); resizes run in at most this many threads
    max_image_pixels: int = Field(50_000_000, ge=1, le=178_000_000)
    image_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)

    request_timeout: float = Field(30.0, gt=0, le=3600)
    # Seconds a request body may stall between two reads before the request is answered 408:
    # uvicorn has no such timeout, so a client that declares a body and stops holds a task.
    body_idle_timeout: float = Field(30.0, gt=0, le=3600)
    claim_wait: float = Field(5.0, ge=0, le=60)

    max_query_depth: int = Field(15, ge=2, le=100)
    max_aliases: int = Field(30, ge=1)
    max_tokens: int = Field(5000, ge=100)
    max_query_cost: int = Field(100_000, ge=100)
    max_file_work: int = Field(20_000, ge=10)
    max_request_bytes: int = Field(MIB, ge=1024)
    # JSON (bodies, GET variables, multipart operations, websocket frames) nested deeper is
    # refused: parsers and graphql-core's variable coercion recurse once per level.
    max_json_depth: int = Field(64, ge=2, le=500)
    subscriber_buffer: int = Field(256, ge=1, le=100_000)
    max_subscriptions_per_connection: int = Field(100, ge=1, le=100_000)

    @field_validator("allowed_content_types", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("sweep_interval", "sweep_grace", "change_history_age", mode="before")
    @classmethod
    def _durations(cls, value: object) -> object:
        if isinstance(value, str) and value.strip():
            return parse_duration(value).total_seconds()
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return value

    @field_validator("tls_cert_file", "tls_key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "set both GRAPHQL_FILES_TLS_CERT_FILE and GRAPHQL_FILES_TLS_KEY_FILE, or neither"
            )
        return self

    @property
    def scheme(self) -> str:
        """``https`` when the server serves TLS itself (and its websockets are ``wss``)."""
        return "https" if self.tls_cert_file is not None else "http"

    @field_validator("jwks_file")
    @classmethod
    def _jwks(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                jwt.PyJWKSet.from_dict(json.loads(value.read_text()))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ValueError(f"cannot use {value} as a JWKS file: {exc}") from exc
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _mongodb_uri(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_mongodb_uri(value.get_secret_value())
        return value

    @field_validator("attachment_prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        if not value.endswith("/") or value.startswith("/") or "//" in value:
            raise ValueError("must be a folder such as 'images/' (ends with '/', no leading '/')")
        return value

    @property
    def claim_lease_seconds(self) -> float:
        """How long a claim on an object key outlives a holder that stopped answering: the
        hold limit (a request's deadline), plus the longest a MongoDB write or an S3 call
        already in flight may still take to land (each bounded by its timeout and retries),
        plus ``CLOCK_SKEW_SECONDS`` between instances' clocks."""
        in_flight = self.mongodb_timeout_ms / 1000 + S3_ATTEMPTS * 2 * self.s3_timeout
        return self.request_timeout + in_flight + CLOCK_SKEW_SECONDS

    @property
    def embedded_mongodb(self) -> bool:
        return self.mongodb_uri is None

    @property
    def embedded_s3(self) -> bool:
        return self.s3_bucket is None

    @property
    def embedded_events(self) -> bool:
        return self.redis_url is None


def describe_invalid(error: ValidationError) -> str:
    """One line naming the first offending variable, as the CLI prints it. pydantic quotes
    the input in some messages: a secret's is cut out, and so are a URI's credentials."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    message = str(first["msg"])
    value = first.get("input")
    if isinstance(value, str):
        message = redact(message, value, whole=_is_secret(field))
    if not first["loc"]:  # a rule across settings: its message names them
        return f"invalid settings: {message.removeprefix('Value error, ')}"
    return f"invalid setting {ENV_PREFIX}{field.upper()}: {message}"


def _is_secret(field: str) -> bool:
    info = Settings.model_fields.get(field)
    annotation = info.annotation if info is not None else None
    return annotation is SecretStr or SecretStr in get_args(annotation)
