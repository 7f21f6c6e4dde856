"""Shaping GraphQL errors: every error gets an ``extensions.code``; bugs are masked.

- a ``DomainError`` keeps its message and extensions (its code, ``currentVersion``, ...);
- a request error (syntax, validation, variable coercion: no ``path``, nothing executed) gets
  ``BAD_USER_INPUT``;
- anything else is a bug: the client sees "Internal server error" with
  ``INTERNAL_SERVER_ERROR``, and ``Schema.process_errors`` has logged its traceback.

The schema (``execution.LeanSchema``) logs, then shapes, the errors of every execution and of
every subscription event.
"""

from __future__ import annotations

import logging

from graphql import GraphQLError

from ...errors import BAD_USER_INPUT, INTERNAL_SERVER_ERROR, DomainError

log = logging.getLogger("graphql_files.errors")


def is_unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or isinstance(original, DomainError | GraphQLError):
        return False
    return error.path is not None  # input coercion errors carry no path: those are the client's


def shape(error: GraphQLError) -> GraphQLError:
    if error.extensions and "code" in error.extensions:
        return error
    if is_unexpected(error):
        return GraphQLError(
            "Internal server error",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": INTERNAL_SERVER_ERROR},
        )
    return GraphQLError(
        error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), "code": BAD_USER_INPUT},
    )


def log_errors(errors: list[GraphQLError]) -> None:
    """Log bugs with their traceback; refusals (domain and request errors) at debug level."""
    for error in errors:
        if is_unexpected(error):
            original = error.original_error
            assert original is not None
            log.error(
                "unexpected error at %s: %s",
                error.path,
                original,
                exc_info=(type(original), original, original.__traceback__),
            )
        else:
            log.debug("refused: %s", error.message)
