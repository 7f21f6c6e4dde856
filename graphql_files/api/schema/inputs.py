"""GraphQL input types, generated from the model specs with Amplify's names.

``model_inputs(SONG, enums, enum_operators)`` gives ``ModelSongFilterInput``,
``ModelSongConditionInput``, ``ModelSubscriptionSongFilterInput``, ``CreateSongInput``,
``UpdateSongInput`` and ``DeleteSongInput``; the same call serves every model. Optional fields
default to ``UNSET`` so that "not given" and "given as null" stay distinct (null in an update
removes a field).

No ``from __future__ import annotations``: the generated classes' annotations must be objects.
"""

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional, Union, get_args, get_origin

import strawberry
from strawberry import UNSET

from ...domain.models import FieldType, ModelSpec
from .types import python_type

_OPERATOR_DOCS = {
    "eq": "equal to",
    "ne": "not equal to (a missing field matches)",
    "le": "less than or equal to",
    "lt": "less than",
    "ge": "greater than or equal to",
    "gt": "greater than",
    "contains": "a substring of the value; on a list, an element of it",
    "not_contains": "not a substring (not an element, on a list); a missing field matches",
    "between": "within [low, high], both included",
    "begins_with": "a prefix of the value",
    "attribute_exists": "true: the field is set; false: it is not",
    "in_": "one of these values",
    "not_in": "none of these values (a missing field matches)",
}
_GRAPHQL_NAMES = {
    "in_": "in",
    "not_in": "notIn",
    "not_contains": "notContains",
    "begins_with": "beginsWith",
    "attribute_exists": "attributeExists",
}


def _optional(annotation: Any) -> bool:
    return get_origin(annotation) is Union and type(None) in get_args(annotation)


def input_type(
    name: str,
    annotations: dict[str, Any],
    description: str,
    names: dict[str, str] | None = None,
    docs: dict[str, str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> type:
    """A strawberry input class: nullable fields default to UNSET, non-null ones are required
    unless ``defaults`` gives them a value."""
    cls = type(name, (), {"__annotations__": annotations, "__doc__": description})
    for attr, annotation in annotations.items():
        options: dict[str, Any] = {
            "name": (names or {}).get(attr),
            "description": (docs or {}).get(attr) or None,
        }
        if attr in (defaults or {}):
            options["default"] = (defaults or {})[attr]
        elif _optional(annotation):
            options["default"] = UNSET
        setattr(cls, attr, strawberry.field(**options))
    return strawberry.input(cls, description=description or None)


def _operator_input(name: str, scalar: Any, operators: tuple[str, ...]) -> type:
    annotations: dict[str, Any] = {}
    for op in operators:
        if op in ("between", "in_", "not_in"):
            annotations[op] = Optional[list[scalar]]
        elif op == "attribute_exists":
            annotations[op] = Optional[bool]
        else:
            annotations[op] = Optional[scalar]
    return input_type(
        name,
        annotations,
        f"Conditions on one {scalar.__name__} field; all must hold.",
        _GRAPHQL_NAMES,
        {op: _OPERATOR_DOCS[op] for op in operators},
    )


_STRING_OPS = (
    "ne",
    "eq",
    "le",
    "lt",
    "ge",
    "gt",
    "contains",
    "not_contains",
    "between",
    "begins_with",
    "attribute_exists",
)
_INT_OPS = ("ne", "eq", "le", "lt", "ge", "gt", "between", "attribute_exists")
_SUBSCRIPTION_STRING_OPS = (*_STRING_OPS[:-1], "in_", "not_in")
_SUBSCRIPTION_INT_OPS = (*_INT_OPS[:-1], "in_", "not_in")

ModelStringInput = _operator_input("ModelStringInput", str, _STRING_OPS)
ModelIDInput = _operator_input("ModelIDInput", strawberry.ID, _STRING_OPS)
ModelIntInput = _operator_input("ModelIntInput", int, _INT_OPS)
ModelSubscriptionStringInput = _operator_input(
    "ModelSubscriptionStringInput", str, _SUBSCRIPTION_STRING_OPS
)
ModelSubscriptionIDInput = _operator_input(
    "ModelSubscriptionIDInput", strawberry.ID, _SUBSCRIPTION_STRING_OPS
)
ModelSubscriptionIntInput = _operator_input("ModelSubscriptionIntInput", int, _SUBSCRIPTION_INT_OPS)

_FLOAT_OPS = _INT_OPS
_BOOLEAN_OPS = ("ne", "eq", "attribute_exists")
_ENUM_OPS = ("ne", "eq", "attribute_exists")
_SUBSCRIPTION_BOOLEAN_OPS = ("ne", "eq")
_SUBSCRIPTION_ENUM_OPS = ("ne", "eq", "in_", "not_in")

ModelFloatInput = _operator_input("ModelFloatInput", float, _FLOAT_OPS)
ModelBooleanInput = _operator_input("ModelBooleanInput", bool, _BOOLEAN_OPS)
ModelSubscriptionFloatInput = _operator_input(
    "ModelSubscriptionFloatInput", float, _SUBSCRIPTION_INT_OPS
)
ModelSubscriptionBooleanInput = _operator_input(
    "ModelSubscriptionBooleanInput", bool, _SUBSCRIPTION_BOOLEAN_OPS
)

# Dates are stored as AWSDateTime text, so they filter with the string operators, as in Amplify;
# a list field filters with its items' operators.
_FILTER_INPUTS: dict[str, type] = {
    "ID": ModelIDInput,
    "String": ModelStringInput,
    "Int": ModelIntInput,
    "Float": ModelFloatInput,
    "Boolean": ModelBooleanInput,
    "DateTime": ModelStringInput,
}
_SUBSCRIPTION_INPUTS: dict[str, type] = {
    "ID": ModelSubscriptionIDInput,
    "String": ModelSubscriptionStringInput,
    "Int": ModelSubscriptionIntInput,
    "Float": ModelSubscriptionFloatInput,
    "Boolean": ModelSubscriptionBooleanInput,
    "DateTime": ModelSubscriptionStringInput,
}


@dataclass(frozen=True)
class EnumInputs:
    """The operator inputs of one declared enum: ``ModelPostStatusInput`` and its
    subscription twin."""

    filter: type
    subscription: type


def enum_inputs(enum_class: type[enum.Enum]) -> EnumInputs:
    name = enum_class.__name__
    return EnumInputs(
        filter=_operator_input(f"Model{name}Input", enum_class, _ENUM_OPS),
        subscription=_operator_input(
            f"ModelSubscription{name}Input", enum_class, _SUBSCRIPTION_ENUM_OPS
        ),
    )


def _boolean_input(
    name: str,
    model: ModelSpec,
    operators: Callable[[FieldType], type],
    combinators: tuple[str, ...],
    skip: tuple[str, ...],
    what: str,
) -> type:
    """A filter over a model's fields with and/or/not, referring to itself."""
    cls: Any = type(name, (), {})
    annotations: dict[str, Any] = {
        f.name: Optional[operators(f.type)] for f in model.filterable if f.name not in skip
    }
    for combinator in combinators:
        annotations[f"{combinator}_"] = (
            Optional[cls] if combinator == "not" else Optional[list[cls]]
        )
    names = {f"{c}_": c for c in combinators}
    docs = {
        "and_": "all of these hold",
        "or_": "at least one of these holds",
        "not_": "this does not hold",
    }
    cls.__annotations__ = annotations
    description = f"{what}; every field given must hold."
    for attr in annotations:
        setattr(
            cls,
            attr,
            strawberry.field(default=UNSET, name=names.get(attr), description=docs.get(attr)),
        )
    decorated: type = strawberry.input(cls, description=description)
    return decorated


@dataclass(frozen=True)
class ModelInputs:
    filter: type
    condition: type
    subscription_filter: type
    create: type
    update: type
    delete: type


def model_inputs(
    model: ModelSpec,
    enums: Mapping[str, type[enum.Enum]],
    enum_operators: Mapping[str, EnumInputs],
) -> ModelInputs:
    """Every input type of one model, named as Amplify names them."""
    n = model.name
    writable = model.fields

    def filters(kind: FieldType) -> type:
        if kind.enum is not None:
            return enum_operators[kind.name].filter
        return _FILTER_INPUTS[kind.name]

    def subscription_filters(kind: FieldType) -> type:
        if kind.enum is not None:
            return enum_operators[kind.name].subscription
        return _SUBSCRIPTION_INPUTS[kind.name]

    def optional(kind: FieldType) -> Any:
        return python_type(replace(kind, required=False), enums)

    create = input_type(
        f"Create{n}Input",
        {"id": Optional[strawberry.ID]} | {f.name: python_type(f.type, enums) for f in writable},
        f"A new {n}. `id` is optional: 1-128 characters, no '/', no control characters; "
        "the server makes a UUID when it is left out.",
        docs={f.name: f.description for f in writable},
    )
    update = input_type(
        f"Update{n}Input",
        {"id": strawberry.ID}
        | {f.name: optional(f.type) for f in writable}
        | {"expectedVersion": Optional[int]},
        f"Changes to a {n}: fields left out are kept, fields given as null are removed.",
        docs={
            "expectedVersion": "Write only if the record is still at this version; "
            "otherwise CONFLICT with extensions.currentVersion."
        },
    )
    delete = input_type(
        f"Delete{n}Input",
        {"id": strawberry.ID, "expectedVersion": Optional[int], "deleteFiles": bool},
        f"Which {n} to delete.",
        defaults={"deleteFiles": False},
        docs={
            "expectedVersion": "Delete only if the record is still at this version.",
            "deleteFiles": "Also delete the record's files that lie in its own folder (and "
            "that no other record names), after the record is gone.",
        },
    )
    return ModelInputs(
        filter=_boolean_input(
            f"Model{n}FilterInput",
            model,
            filters,
            ("and", "or", "not"),
            (),
            f"A filter on {n} records",
        ),
        condition=_boolean_input(
            f"Model{n}ConditionInput",
            model,
            filters,
            ("and", "or", "not"),
            ("id",),
            f"A condition the {n} must meet for the write to happen",
        ),
        subscription_filter=_boolean_input(
            f"ModelSubscription{n}FilterInput",
            model,
            subscription_filters,
            ("and", "or"),
            (),
            f"Which {n} changes to receive",
        ),
        create=create,
        update=update,
        delete=delete,
    )
