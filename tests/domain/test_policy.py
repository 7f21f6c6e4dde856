"""The access rules file: what each line means, which storage path applies to a key, and the one
line that names the file and line of a mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphql_files.domain.policy import (
    DATA_OPERATIONS,
    Policy,
    PolicyError,
    Rule,
    load_policy,
)

RULES = """\
[data.Song]
owner = ["create", "read"]
groups.admins = "*"

[storage."images/*"]
authenticated = ["read"]

[storage."images/private/*"]
groups.admins = ["read", "delete"]

[storage."users/{entity_id}/*"]
entity = ["read", "write"]
guest = ["get"]
"""


def policy_from(tmp_path: Path, text: str) -> Policy:
    rules = tmp_path / "access.toml"
    rules.write_text(text)
    return load_policy(rules)


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    return policy_from(tmp_path, RULES)


def test_the_built_in_rules_are_the_seeds() -> None:
    policy = load_policy(None)
    everything = frozenset(DATA_OPERATIONS)
    assert policy.data_rules("Song") == (Rule("publicApiKey", everything),)
    assert policy.data_rules("PhotoAlbum") == (Rule("publicApiKey", everything),)
    (images,) = policy.storage
    assert images.pattern == "images/*"
    assert images.rules == (Rule("authenticated", frozenset({"get", "list", "write", "delete"})),)
    assert not policy.grants_guests("get")


def test_each_line_is_one_rule(policy: Policy) -> None:
    assert policy.data_rules("Song") == (
        Rule("owner", frozenset({"create", "read"})),
        Rule("groups", frozenset(DATA_OPERATIONS), group="admins"),
    )
    path, _ = policy.storage_path("users/alice/x.png")
    assert path is not None
    # storage's "read" is get and list
    assert path.rules == (
        Rule("entity", frozenset({"get", "list", "write"})),
        Rule("guest", frozenset({"get"})),
    )


def test_declared_models_get_the_built_in_rule_and_their_own_tables(tmp_path: Path) -> None:
    rules = tmp_path / "access.toml"
    rules.write_text('[data.Post]\nowner = "*"\n')
    policy = load_policy(rules, ["Post", "User"])
    everything = frozenset(DATA_OPERATIONS)
    assert policy.data_rules("Post") == (Rule("owner", everything),)
    assert policy.data_rules("User") == (Rule("publicApiKey", everything),)
    assert policy.data_rules("Song") == ()  # not declared: no rule reaches it
    rules.write_text('[data.Song]\nowner = "*"\n')
    with pytest.raises(PolicyError, match=r"unknown model 'Song' \(expected Post, User\)"):
        load_policy(rules, ["Post", "User"])


def test_a_data_table_replaces_only_its_models_rules(policy: Policy) -> None:
    assert policy.data_rules("PhotoAlbum") == load_policy(None).data_rules("PhotoAlbum")
    assert policy.data_rules("NoSuchModel") == ()


def test_storage_tables_replace_every_built_in_storage_rule(tmp_path: Path) -> None:
    policy = policy_from(tmp_path, '[storage."public/*"]\nguest = ["read"]\n')
    assert [p.pattern for p in policy.storage] == ["public/*"]
    assert policy.storage_path("images/x.png") == (None, None)


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("images/x.png", "images/*"),
        ("images/a/b/c.png", "images/*"),
        ("images/", "images/*"),  # a listing prefix
        ("images/private/x.png", "images/private/*"),
        ("images/private/", "images/private/*"),
        ("images/privateer.png", "images/*"),  # whole segments, not a string prefix
        ("images", None),  # not under the path: the folder itself
        ("other/x.png", None),
    ],
)
def test_the_most_specific_path_wins(policy: Policy, key: str, pattern: str | None) -> None:
    path, _ = policy.storage_path(key)
    assert (path.pattern if path else None) == pattern


def test_a_more_specific_path_does_not_inherit(policy: Policy) -> None:
    path, _ = policy.storage_path("images/private/x.png")
    assert path is not None
    assert [r.kind for r in path.rules] == ["groups"]  # no "authenticated" from images/*


@pytest.mark.parametrize(
    ("key", "entity"),
    [
        ("users/alice/x.png", "alice"),
        ("users/alice/deep/x.png", "alice"),
        ("users/alice/", "alice"),
    ],
)
def test_the_entity_segment_is_the_key_segment_in_its_place(
    policy: Policy, key: str, entity: str
) -> None:
    path, found = policy.storage_path(key)
    assert path is not None
    assert path.pattern == "users/{entity_id}/*"
    assert found == entity


@pytest.mark.parametrize("key", ["users//x.png", "users/alice", "users/"])
def test_no_entity_no_match(policy: Policy, key: str) -> None:
    assert policy.storage_path(key) == (None, None)


def test_what_guests_may_do_anywhere(policy: Policy) -> None:
    assert policy.grants_guests("get")
    assert not policy.grants_guests("list")
    assert not policy.grants_guests("write")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            '[data.Song]\npublicApiKey = "*"\n\n[storage."images/*"]\n'
            'authenticated = ["read", "scribble"]\n',
            5,
            "authenticated: unknown action 'scribble' (expected read, get, list, write, delete)",
        ),
        (
            '# comment\n\n[data.Song]\nowner = "*"\ngroups.admins = ["read", "nope"]\n',
            5,
            "groups.admins: unknown operation 'nope' (expected create, read, update, delete)",
        ),
        ('[data.Nope]\nowner = "*"\n', 1, "unknown model 'Nope' (expected PhotoAlbum, Song)"),
        (
            '[data.Song]\nstranger = "*"\n',
            2,
            "unknown rule 'stranger' (expected publicApiKey, guest, authenticated, owner, groups)",
        ),
        ('[data.Song]\ngroups = "*"\n', 2, "write groups rules as groups.<name> = [...]"),
        (
            "[data.Song]\nowner = []\n",
            2,
            'owner must be "*" or a list of create, read, update, delete',
        ),
        (
            '[data.Song]\nowner = "all"\n',
            2,
            'owner must be "*" or a list of create, read, update, delete',
        ),
        ("[data]\nSong = 1\n", 2, "[data.Song] must be a table of rules"),
        (
            '[storage."images"]\nguest = ["read"]\n',
            1,
            "storage path 'images' must look like 'images/*'",
        ),
        (
            '[storage."/images/*"]\nguest = ["read"]\n',
            1,
            "storage path '/images/*' must look like 'images/*'",
        ),
        (
            '[storage."a//b/*"]\nguest = ["read"]\n',
            1,
            "storage path 'a//b/*' must look like 'images/*'",
        ),
        (
            '[storage."images/*"]\nguest = ["read"]\nentity = ["read"]\n',
            3,
            "an entity rule needs a {entity_id} segment in 'images/*'",
        ),
        (
            '[storage."images/*"]\nowner = ["read"]\n',
            2,
            "unknown rule 'owner' (expected guest, authenticated, entity, groups)",
        ),
        (
            "[other]\nx = 1\n",
            1,
            'unknown section [other] (expected [data.<Model>] or [storage."<path>/*"])',
        ),
    ],
)
def test_a_mistake_names_its_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    with pytest.raises(PolicyError) as refused:
        policy_from(tmp_path, text)
    assert str(refused.value) == f"{tmp_path / 'access.toml'}, line {line}: {message}"


def test_a_file_that_is_not_toml_is_refused_with_the_parsers_words(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"access\.toml: .*line 1"):
        policy_from(tmp_path, "not toml [")


def test_a_missing_file_is_refused() -> None:
    with pytest.raises(PolicyError, match=r"cannot read /nonexistent/access\.toml"):
        load_policy(Path("/nonexistent/access.toml"))
