"""Typed settings, read from ``GRAPHQL_FILES_*`` environment variables.

Nothing here reads the environment at import time: ``Settings()`` does, when the CLI or a test
asks for it. A bad value raises ``pydantic.ValidationError``; ``describe_invalid`` turns it into
the one line the CLI prints before it exits.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import jwt
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "GRAPHQL_FILES_"
MIB = 1024 * 1024
SEVEN_DAYS = 7 * 24 * 3600

# Browsers on this machine may call the API from any local port (a dev server, say); this is
# the default when CORS_ORIGINS is empty.
LOCALHOST_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"

CommaList = Annotated[tuple[str, ...], NoDecode]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


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

    mongodb_uri: SecretStr | None = None
    mongodb_database: str = Field("graphql_files", min_length=1, max_length=63)
    mongodb_timeout_ms: int = Field(3000, ge=100, le=120_000)

    s3_bucket: str | None = Field(None, min_length=3, max_length=63)
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

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

    max_upload_bytes: int = Field(50 * MIB, ge=1)
    max_upload_files: int = Field(10, ge=1, le=100)
    allowed_content_types: CommaList = ("image/*", "audio/*")
    signed_url_ttl: int = Field(900, ge=1, le=SEVEN_DAYS)
    attachment_prefix: str = "images/"
    cors_origins: CommaList = ()
    sweep_interval: float | None = Field(None, gt=0)
    sweep_grace: float = Field(3600, ge=0)

    max_query_depth: int = Field(15, ge=2, le=100)
    max_aliases: int = Field(30, ge=1)
    max_tokens: int = Field(5000, ge=100)
    max_request_bytes: int = Field(MIB, ge=1024)
    subscriber_buffer: int = Field(256, ge=1, le=100_000)

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

    @field_validator("jwks_file")
    @classmethod
    def _jwks(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                jwt.PyJWKSet.from_dict(json.loads(value.read_text()))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ValueError(f"cannot use {value} as a JWKS file: {exc}") from exc
        return value

    @field_validator("attachment_prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        if not value.endswith("/") or value.startswith("/") or "//" in value:
            raise ValueError("must be a folder such as 'images/' (ends with '/', no leading '/')")
        return value

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
    """One line naming the first offending variable, as the CLI prints it."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    return f"invalid setting {ENV_PREFIX}{field.upper()}: {first['msg']}"
