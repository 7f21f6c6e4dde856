"""Validly signed tokens with hostile claims, and key sets that collide with the HS256 secret:
always ``UNAUTHENTICATED`` (or a user), never an exception that becomes a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from graphql_files.errors import Unauthenticated
from graphql_files.services.auth import TokenVerifier
from graphql_files.settings import Settings

from ..helpers import API_KEY, TEST_JWT_SECRET, GraphQLClient

SECRET = "s" * 40
# a fixed time well ahead (2100-01-01): the same in every test process, so the parametrized
# ids are too (pytest-xdist compares them across its workers)
IN_THE_FUTURE = 4_102_444_800


def signed(payload: str, secret: str = SECRET, header: str = '{"alg":"HS256","typ":"JWT"}') -> str:
    """An HS256 token over raw JSON text, for claims json.dumps cannot write (Infinity)."""

    def part(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    head_and_body = part(header.encode()) + b"." + part(payload.encode())
    signature = part(hmac.new(secret.encode(), head_and_body, hashlib.sha256).digest())
    return (head_and_body + b"." + signature).decode()


def claims(**values: Any) -> str:
    return json.dumps({"sub": "alice", "exp": IN_THE_FUTURE, **values})


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (claims(exp=10**30), "exp out of range"),
        (claims(exp=1e30), "exp out of range"),
        (claims(exp=253_402_300_800), "exp out of range"),  # year 10000
        (claims(exp=str(IN_THE_FUTURE)), "exp must be a number"),
        (claims(exp=[IN_THE_FUTURE]), "exp"),
        (claims(exp=-5), "expired"),
        (claims(exp=-1e30), "expired"),
        (claims(iat=10**30), "iat"),
        (claims(nbf=10**30), "nbf"),
        ('{"sub": "alice", "exp": Infinity}', "exp"),
        ('{"sub": "alice", "exp": NaN}', "exp"),
        (claims()[:-1] + ', "iat": Infinity}', "iat"),
        (claims()[:-1] + ', "nbf": -Infinity}', "nbf"),
        (claims(sub={"an": "object"}), "invalid token"),
        ('{"sub": "alice", "x": ' + "[" * 5000 + "]" * 5000 + "}", "invalid token"),
        ("[]", "invalid token"),
    ],
)
def test_hostile_claims_are_unauthenticated(payload: str, says: str) -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    with pytest.raises(Unauthenticated, match=says):
        verifier.verify(signed(payload))


@pytest.mark.parametrize(
    "header",
    [
        '{"alg":"HS256","kid":["a"]}',
        '{"alg":["HS256"]}',
        "[]",
        '{"alg":"none"}',
        '{"kid":"x"}',
        "[" * 5000 + "]" * 5000,  # json.loads raises RecursionError, which PyJWT lets through
    ],
)
def test_hostile_headers_are_unauthenticated(header: str) -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    with pytest.raises(Unauthenticated):
        verifier.verify(signed(claims(), header=header))


def test_a_fractional_exp_in_range_is_accepted() -> None:
    user = TokenVerifier(Settings(jwt_secret=SECRET)).verify(
        signed(claims(exp=IN_THE_FUTURE + 0.5))
    )
    assert user.expires_at is not None
    assert user.expires_at.timestamp() == IN_THE_FUTURE + 0.5


def test_a_jwks_key_named_hs256_does_not_shadow_the_secret(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    (tmp_path / "jwks.json").write_text(
        json.dumps({"keys": [{**public_jwk, "kid": "HS256", "alg": "RS256", "use": "sig"}]})
    )
    verifier = TokenVerifier(Settings(jwt_secret=SECRET, jwks_file=tmp_path / "jwks.json"))
    assert verifier.verify(signed(claims())).sub == "alice"
    rs256 = jwt.encode(
        json.loads(claims(sub="bob")), private, algorithm="RS256", headers={"kid": "HS256"}
    )
    assert verifier.verify(rs256).sub == "bob"
    # neither key verifies the other algorithm's tokens
    with pytest.raises(Unauthenticated):
        verifier.verify(signed(claims(), header='{"alg":"RS256","kid":"HS256"}'))
    assert verifier.issue("carol", ttl_seconds=60).count(".") == 2


async def test_an_out_of_range_exp_over_http(client: GraphQLClient) -> None:
    token = signed(claims(exp=10**30), secret=TEST_JWT_SECRET)
    error = await client.error(
        "{ listSongs { items { id } } }",
        headers={**API_KEY, "authorization": f"Bearer {token}"},
    )
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "exp out of range" in error["message"]
