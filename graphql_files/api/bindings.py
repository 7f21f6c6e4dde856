"""Each model's GraphQL pieces side by side: its spec, object type, inputs and connection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..domain.models import PHOTO_ALBUM, SONG, ModelSpec
from .inputs import ModelInputs, model_inputs
from .types import PhotoAlbum, RecordType, Song, connection_type

Resolver = TypeVar("Resolver", bound=Callable[..., Any])


def typed(resolver: Resolver, *, returns: object, **arguments: object) -> Resolver:
    """``resolver`` with the per-model types strawberry reads from its annotations: one generic
    resolver serves every model, its ``Any`` annotations replaced here by that model's types
    (values a type checker cannot follow, which is why they are given at run time)."""
    resolver.__annotations__.update(arguments, **{"return": returns})
    return resolver


@dataclass(frozen=True)
class Binding:
    model: ModelSpec
    object_type: type[RecordType]
    inputs: ModelInputs
    connection: Any


def _bind(model: ModelSpec, graphql_type: type[RecordType]) -> Binding:
    assert graphql_type.model is model
    return Binding(model, graphql_type, model_inputs(model), connection_type(graphql_type))


SONG_API = _bind(SONG, Song)
PHOTO_ALBUM_API = _bind(PHOTO_ALBUM, PhotoAlbum)
BINDINGS: dict[str, Binding] = {b.model.enum_name: b for b in (SONG_API, PHOTO_ALBUM_API)}
