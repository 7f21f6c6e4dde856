"""Each declared model's GraphQL pieces side by side (its spec, object type, inputs and page),
and the declaration's own (its enums, ``ModelName``): generated once per declaration.

Generic resolvers serve every model; ``typed`` gives each the model's types, which strawberry
reads from the annotations (values a type checker cannot follow, so they are set at run time).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from ...domain.declaration import Declaration
from ...domain.models import ModelSpec
from .inputs import EnumInputs, ModelInputs, enum_inputs, model_inputs
from .types import RecordType, connection_type, enum_type, model_name_enum, record_type

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


@dataclass(frozen=True)
class Api:
    """Everything generated for one declaration."""

    declaration: Declaration
    bindings: tuple[Binding, ...]
    enums: Mapping[str, type[enum.Enum]]
    model_name: type[enum.Enum]  # ModelName

    def by_enum(self, enum_name: str) -> Binding:
        """The binding of the model a change event names (``SONG``)."""
        return next(b for b in self.bindings if b.model.enum_name == enum_name)


@cache
def api_for(declaration: Declaration) -> Api:
    """The GraphQL pieces of ``declaration``, made once: every schema built for the same
    declaration shares them."""
    enums = {e.name: enum_type(e.name, e.values, e.description) for e in declaration.enums}
    operators: dict[str, EnumInputs] = {name: enum_inputs(cls) for name, cls in enums.items()}
    bindings = []
    for model in declaration.models:
        object_type = record_type(model, enums)
        bindings.append(
            Binding(
                model,
                object_type,
                model_inputs(model, enums, operators),
                connection_type(object_type),
            )
        )
    return Api(declaration, tuple(bindings), enums, model_name_enum(declaration.models))
