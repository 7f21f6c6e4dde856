"""The access rules: who may do what to which model, and to which storage path.

Data rules (per model) follow Amplify's ``a.model().authorization(...)``: ``publicApiKey``,
``guest``, ``authenticated``, ``owner`` and ``groups``, each optionally narrowed to ``create``,
``read``, ``update``, ``delete``. Storage rules (per path) follow ``defineStorage``'s ``access``:
``guest``, ``authenticated``, ``groups`` and ``entity`` (a ``{entity_id}`` path segment that
must equal the user's ``sub``), with actions ``read`` (= ``get`` + ``list``), ``get``, ``list``,
``write`` and ``delete``. Both deny by default and allow when any rule allows; for storage the
most specific path wins and does not inherit from shorter ones.

The rules live in one TOML file (``GRAPHQL_FILES_ACCESS_FILE``); each rule is one line:

    [data.Song]
    publicApiKey = "*"
    owner = ["create", "read", "update", "delete"]
    groups.admins = "*"

    [storage."images/*"]
    authenticated = ["read", "write", "delete"]

A ``[data.<Model>]`` table replaces that model's built-in rules; a ``[storage...]`` table
replaces all built-in storage rules. Without a file, the seed's defaults apply.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .toml_source import TomlSource

DATA_OPERATIONS = ("create", "read", "update", "delete")
STORAGE_ACTIONS = ("get", "list", "write", "delete")
DATA_KINDS = ("publicApiKey", "guest", "authenticated", "owner", "groups")
STORAGE_KINDS = ("guest", "authenticated", "entity", "groups")
ENTITY = "{entity_id}"

# The seed's defaults: records by API key, files under images/ for signed-in users.
DEFAULT_DATA_RULE = 'publicApiKey = "*"'
DEFAULT_STORAGE_RULES = """\
[storage."images/*"]
authenticated = ["read", "write", "delete"]
"""


def default_rules(models: Iterable[str]) -> str:
    """The built-in rule file for these models: each by API key; images/ for users."""
    tables = [f"[data.{name}]\n{DEFAULT_DATA_RULE}\n" for name in models]
    return "\n".join([*tables, DEFAULT_STORAGE_RULES])


class PolicyError(ValueError):
    """A rule file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Rule:
    kind: str  # one of DATA_KINDS or STORAGE_KINDS
    allows: frozenset[str]  # data operations or storage actions
    group: str | None = None


@dataclass(frozen=True)
class StoragePath:
    pattern: str  # "images/*", "private/{entity_id}/*"
    rules: tuple[Rule, ...]

    @property
    def segments(self) -> list[str]:
        return self.pattern[:-2].split("/")  # without the trailing "/*"

    def match(self, key: str) -> tuple[bool, str | None]:
        """Does ``key`` (or a listing prefix) lie under this path? And the entity segment."""
        parts = key.split("/")
        wanted = self.segments
        if len(parts) <= len(wanted):
            return False, None
        entity = None
        for part, expected in zip(parts, wanted, strict=False):
            if expected == ENTITY:
                if not part:
                    return False, None
                entity = part
            elif part != expected:
                return False, None
        return True, entity


@dataclass(frozen=True)
class Policy:
    data: Mapping[str, tuple[Rule, ...]]  # by model name
    storage: tuple[StoragePath, ...]  # most specific first

    def data_rules(self, model_name: str) -> tuple[Rule, ...]:
        return self.data.get(model_name, ())

    def grants_guests(self, action: str) -> bool:
        """Whether any storage path lets a caller with no credentials ``action`` (get, list,
        write, delete) there: if none lets guests write, an anonymous upload can be refused
        before its body is read."""
        return any(
            rule.kind == "guest" and action in rule.allows
            for path in self.storage
            for rule in path.rules
        )

    @staticmethod
    def folder(key: str) -> str:
        """What of ``key`` the storage rules read: every segment but the last (a path's rules
        match its leading segments and need one more after them), so keys in one folder are
        decided alike, and a page of them can be decided once."""
        return key.rpartition("/")[0]

    def storage_path(self, key: str) -> tuple[StoragePath | None, str | None]:
        """The most specific path that ``key`` lies under, and its entity segment."""
        for path in self.storage:
            matched, entity = path.match(key)
            if matched:
                return path, entity
        return None, None


# --- loading ----------------------------------------------------------------------------------


class _Source(TomlSource):
    """The rule text, for errors that name their line."""

    def error(self, message: str, *path: str) -> PolicyError:  # type: ignore[override]
        return PolicyError(super().error(message, *path))

    def at(self, message: str, table: Iterable[str], key: str | None = None) -> PolicyError:
        return self.error(message, *table, *(key.split(".", 1) if key else ()))


def _allows(
    value: Any,
    allowed: tuple[str, ...],
    source: _Source,
    table: list[str],
    key: str,
    *,
    storage: bool,
) -> frozenset[str]:
    if value == "*":
        return frozenset(allowed)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise source.at(f'{key} must be "*" or a list of {", ".join(allowed)}', table, key)
    result: set[str] = set()
    for item in value:
        if storage and item == "read":
            result |= {"get", "list"}
        elif item in allowed:
            result.add(item)
        else:
            choices = ("read", *allowed) if storage else allowed
            raise source.at(
                f"{key}: unknown {'action' if storage else 'operation'} "
                f"{item!r} (expected {', '.join(choices)})",
                table,
                key,
            )
    return frozenset(result)


def _rules(
    table: Mapping[str, Any],
    kinds: tuple[str, ...],
    allowed: tuple[str, ...],
    source: _Source,
    where: list[str],
    *,
    storage: bool,
) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for kind, value in table.items():
        if kind == "groups":
            if not isinstance(value, dict) or not value:
                raise source.at("write groups rules as groups.<name> = [...]", where, kind)
            for group, group_value in value.items():
                key = f"groups.{group}"
                rules.append(
                    Rule(
                        "groups",
                        _allows(group_value, allowed, source, where, key, storage=storage),
                        group,
                    )
                )
        elif kind in kinds:
            rules.append(Rule(kind, _allows(value, allowed, source, where, kind, storage=storage)))
        else:
            raise source.at(f"unknown rule {kind!r} (expected {', '.join(kinds)})", where, kind)
    return tuple(rules)


def _parse(
    text: str, name: str, models: frozenset[str]
) -> tuple[dict[str, tuple[Rule, ...]], list[StoragePath] | None]:
    source = _Source(name, text)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{name}: {exc}") from exc
    unknown = set(document) - {"data", "storage"}
    if unknown:
        first = sorted(unknown)[0]
        raise source.at(
            f'unknown section [{first}] (expected [data.<Model>] or [storage."<path>/*"])', [first]
        )
    data: dict[str, tuple[Rule, ...]] = {}
    for model_name, table in document.get("data", {}).items():
        where = ["data", model_name]
        if model_name not in models:
            raise source.at(
                f"unknown model {model_name!r} (expected {', '.join(sorted(models))})", where
            )
        if not isinstance(table, dict):
            raise source.at(f"[data.{model_name}] must be a table of rules", where)
        data[model_name] = _rules(table, DATA_KINDS, DATA_OPERATIONS, source, where, storage=False)
    storage = None
    if "storage" in document:
        storage = []
        for pattern, table in document["storage"].items():
            where = ["storage", pattern]
            if not pattern.endswith("/*") or pattern.startswith("/") or "//" in pattern:
                raise source.at(f"storage path {pattern!r} must look like 'images/*'", where)
            path = StoragePath(
                pattern, _rules(table, STORAGE_KINDS, STORAGE_ACTIONS, source, where, storage=True)
            )
            if any(r.kind == "entity" for r in path.rules) and ENTITY not in path.segments:
                raise source.at(
                    f"an entity rule needs a {ENTITY} segment in {pattern!r}", where, "entity"
                )
            storage.append(path)
    return data, storage


def load_policy(path: Path | None, models: Iterable[str] | None = None) -> Policy:
    """The built-in defaults for ``models`` (the declared model names; the built-in
    declaration's without them), overridden by the file at ``path`` (if any)."""
    if models is None:
        from .declaration import BUILTIN

        models = [m.name for m in BUILTIN.models]
    names = frozenset(models)
    data, storage = _parse(default_rules(models), "built-in rules", names)
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read {path}: {exc.strerror}") from exc
        file_data, file_storage = _parse(text, str(path), names)
        data.update(file_data)
        if file_storage is not None:
            storage = file_storage
    assert storage is not None
    ordered = sorted(storage, key=lambda p: len(p.pattern), reverse=True)
    return Policy(data=data, storage=tuple(ordered))
