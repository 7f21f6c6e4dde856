"""Settings: durations, MongoDB URIs, and the one line a bad value becomes, never quoting a
secret. (That the CLI stops with that line is tested in ``test_cli``.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from graphql_files.settings import Settings, describe_invalid, parse_duration


def test_durations() -> None:
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("2d") == timedelta(days=2)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    assert Settings(sweep_interval="1h", sweep_grace="30m").sweep_grace == 1800


def test_describe_invalid_never_prints_a_secret_input() -> None:
    with pytest.raises(ValidationError) as invalid:
        Settings(mongodb_uri="mongodb://user:s3cr3tpass@host:notaport")
    line = describe_invalid(invalid.value)
    assert line.startswith("invalid setting GRAPHQL_FILES_MONGODB_URI: ")
    assert "s3cr3tpass" not in line
    # whatever pydantic's message holds, a secret field's input never reaches the line
    with pytest.raises(ValidationError) as too_short:
        Settings(jwt_secret="short-s3cr3t")
    assert "short-s3cr3t" not in describe_invalid(too_short.value)


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://127.0.0.1:27017",
        "mongodb://user:p%40ss@db1:27017,db2:27017/app?replicaSet=rs0&authSource=admin",
        "mongodb+srv://user:pass@cluster0.example.mongodb.net/?retryWrites=true&w=majority",
    ],
)
def test_well_formed_mongodb_uris_are_accepted(uri: str) -> None:
    settings = Settings(mongodb_uri=uri)
    assert settings.mongodb_uri is not None
    assert settings.mongodb_uri.get_secret_value() == uri
