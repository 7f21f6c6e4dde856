"""The fence around other libraries' internals (``graphql_files/api/engine/_compat.py``): the
versions installed are the ones its checks were written against, its checks pass and would
catch a change, and no other module of the package imports a library's internals.

When one of these fails after an upgrade: read the library's changes for the name ``_compat``
reports, adapt the module that uses it (``_compat.HOOKS`` says which), then move the pin in
pyproject.toml."""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import pytest

from graphql_files.api.engine import _compat

PACKAGE = Path(_compat.__file__).resolve().parents[2]
# modules of strawberry and graphql-core that are theirs to change: only _compat imports them
INTERNAL = (
    "strawberry.schema.schema",
    "strawberry.schema.schema_converter",
    "strawberry.schema.exceptions",
    "strawberry.schema.validation_rules",
    "strawberry.types.field",
    "strawberry.types.execution",
    "strawberry.types.graphql",
    "strawberry.types.unset",
    "strawberry.execution",
    "strawberry.utils",
    "strawberry.http",
    "strawberry.subscriptions",
    "strawberry.extensions.max_aliases",
    "graphql.execution.executor",
    "graphql.execution.collect_fields",
    "graphql.execution.values",
    "graphql.pyutils",
    "graphql.error",
    "cross_web",
    "python_multipart",
)


@pytest.mark.parametrize(("distribution", "pinned"), _compat.PINNED.items())
def test_the_installed_versions_are_the_ones_checked(distribution: str, pinned: str) -> None:
    assert version(distribution) == pinned, (
        f"{distribution} {version(distribution)} is installed, but _compat's checks were written "
        f"against {pinned}: re-check what it lists before moving the pin in pyproject.toml"
    )


def test_every_internal_the_server_uses_still_has_its_shape() -> None:
    assert _compat.problems() == []


def test_a_changed_hook_is_reported_with_its_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an upgrade that changed an overridden method would look like."""
    owner = _compat.BaseGraphQLWSHandler

    async def handle_start(self: object, message: object, extra: object) -> None: ...

    monkeypatch.setattr(owner, "handle_start", handle_start)
    (problem,) = [p for p in _compat.problems() if "handle_start now takes" in p]
    assert problem.startswith("strawberry-graphql 0.341.2: BaseGraphQLWSHandler.handle_start")
    assert "['message', 'extra'], not ['message']" in problem
    assert "api/ws/websockets.py" in problem


def test_no_module_but_compat_imports_a_librarys_internals() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if any(name == inner or name.startswith(inner + ".") for inner in INTERNAL):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {name}")
    assert offenders == [], "import these through graphql_files/api/engine/_compat.py"
