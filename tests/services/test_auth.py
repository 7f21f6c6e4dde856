"""Token verification: HS256, RS256 from a JWKS file, issuer, audience, expiry. (The api-key
command is tested with the CLI.)"""

from __future__ import annotations

import datetime as real
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import api_jwt
from jwt.algorithms import RSAAlgorithm

import graphql_files.services.auth as auth_module
from graphql_files.domain.policy import Policy, load_policy
from graphql_files.errors import Unauthenticated
from graphql_files.services.auth import Access, Principal, TokenVerifier, User
from graphql_files.settings import Settings

SECRET = "s" * 40


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(time.time()) + 600, **extra}


def test_hs256_with_issuer_and_audience() -> None:
    verifier = TokenVerifier(
        Settings(jwt_secret=SECRET, jwt_issuer="https://idp", jwt_audience="files")
    )
    good = jwt.encode(claims(iss="https://idp", aud="files", groups=["a", "b"]), SECRET)
    user = verifier.verify(good)
    assert (user.sub, user.groups) == ("alice", frozenset({"a", "b"}))
    for bad in (
        claims(iss="https://other", aud="files"),
        claims(iss="https://idp", aud="x"),
        claims(aud="files"),
        {"sub": "alice", "iss": "https://idp", "aud": "files"},
    ):
        with pytest.raises(Unauthenticated):
            verifier.verify(jwt.encode(bad, SECRET))
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(jwt.encode(claims(iss="https://idp", aud="files", exp=1), SECRET))
    with pytest.raises(Unauthenticated):
        verifier.verify(jwt.encode(claims(iss="https://idp", aud="files"), "w" * 40))


def test_rs256_from_a_jwks_file(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    (tmp_path / "jwks.json").write_text(
        json.dumps({"keys": [{**public_jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]})
    )
    verifier = TokenVerifier(Settings(jwks_file=tmp_path / "jwks.json"))
    signed = jwt.encode(
        claims(**{"cognito:groups": ["admins"]}), private, algorithm="RS256", headers={"kid": "k1"}
    )
    assert verifier.verify(signed).groups == frozenset({"admins"})
    with pytest.raises(Unauthenticated, match="unknown key"):
        verifier.verify(jwt.encode(claims(), private, algorithm="RS256", headers={"kid": "k9"}))
    # an HS256 token is no good when only RS256 keys are configured
    with pytest.raises(Unauthenticated):
        verifier.verify(jwt.encode(claims(), SECRET))


def test_no_user_tokens_without_keys() -> None:
    with pytest.raises(Unauthenticated, match="accepts no user tokens"):
        TokenVerifier(Settings()).verify(jwt.encode(claims(), SECRET))


def test_a_verified_token_is_rechecked_for_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SECRET))
    token = jwt.encode(claims(exp=int(time.time()) + 60), SECRET)
    assert verifier.verify(token).sub == "alice"
    assert verifier.verify(token).sub == "alice"  # from the cache

    # 91 s later, for this module and for PyJWT: past expiry and the 30 s leeway
    class Later(real.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.datetime.fromtimestamp(time.time() + 91, tz)

    monkeypatch.setattr(auth_module, "time", SimpleNamespace(time=lambda: time.time() + 91))
    monkeypatch.setattr(api_jwt, "datetime", Later)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


def _caller(policy: Policy, api_key: bool, sub: str | None, *groups: str) -> Access:
    user = User(sub, frozenset(groups), None) if sub is not None else None
    return Access(policy, Principal(api_key="k" if api_key else None, user=user))


def test_sharing_classes_hold_only_what_the_rules_tell_apart(tmp_path: Path) -> None:
    """Callers of one class may share a subscription's execution (``api/multiplex.py``)."""
    seed = load_policy(None)  # records by API key, images/ for signed-in users
    assert (
        _caller(seed, True, "alice").sharing_class()
        == _caller(seed, True, "bob", "x").sharing_class()
    )
    classes = {_caller(seed, k, s).sharing_class() for k in (True, False) for s in ("a", None)}
    assert len(classes) == 4  # key or not, user or not
    assert _caller(seed, True, "a").sharing_class() is not None

    rules = tmp_path / "access.toml"
    rules.write_text(
        '[data.Song]\nowner = "*"\ngroups.admins = "*"\npublicApiKey = ["read"]\n'
        '[storage."private/{entity_id}/*"]\nentity = ["read"]\n'
    )
    policy = load_policy(rules)
    # reads limited to their own records: never shared
    assert _caller(policy, False, "bob").sharing_class() is None
    # an API key reads every Song: the owner rule does not limit this user
    assert _caller(policy, True, "bob").sharing_class() is not None
    # entity paths tell users apart; named groups do; unnamed groups do not
    root = _caller(policy, False, "root", "admins", "other").sharing_class()
    assert root == _caller(policy, False, "root", "admins").sharing_class()
    assert root != _caller(policy, False, "toor", "admins").sharing_class()
    # bad credentials share with no one
    assert Access(seed, error=Unauthenticated("no")).sharing_class() is None
