"""Each declared model's GraphQL pieces side by side (its spec, object type, inputs and page),
and the declaration's own (its enums, ``ModelName``): generated once per declaration.

Generic resolvers serve every model; ``typed`` gives each the model's types, which strawberry
reads from the annotations (values a type checker cannot follow, so they are set at run time).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from ...domain.declaration import Declaration
from ...domain.models import ModelSpec
from .inputs import EnumInputs, ModelInputs, enum_inputs, model_inputs
from .relations import relation_field
from .types import (
    RecordType,
    connection_class,
    enum_type,
    finish,
    model_name_enum,
    record_class,
    typed,
)

__all__ = ["Api", "Binding", "api_for", "typed"]


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
    declaration shares them. Models name each other through relations, so every model's class
    (and page) is made first, then the relation fields, then all are finished as types."""
    enums = {e.name: enum_type(e.name, e.values, e.description) for e in declaration.enums}
    operators: dict[str, EnumInputs] = {name: enum_inputs(cls) for name, cls in enums.items()}
    by_name: dict[str, Binding] = {}
    for model in declaration.models:
        object_type = record_class(model, enums)
        by_name[model.name] = Binding(
            model,
            object_type,
            model_inputs(model, enums, operators),
            connection_class(object_type),
        )
    for binding in by_name.values():
        for relation in binding.model.relations:
            setattr(binding.object_type, relation.name, relation_field(relation, by_name))
    for binding in by_name.values():
        finish(binding.object_type, binding.model.description)
    for binding in by_name.values():
        finish(binding.connection, f"One page of {binding.model.name} records.")
    return Api(declaration, tuple(by_name.values()), enums, model_name_enum(declaration.models))
