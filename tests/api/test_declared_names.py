"""The names the declaration refuses are the names the generated API takes for itself: every
name a generated class or input has beside a model's own fields is reserved in
``domain.declaration``, so no declared field can shadow one (issue 20: a field named ``model``
passed check-models, and ``createPost`` wrote, then failed)."""

from __future__ import annotations

import pytest
from graphql import GraphQLInputObjectType, GraphQLObjectType

from graphql_files.api.schema.bindings import api_for
from graphql_files.api.schema.build import build_schema
from graphql_files.domain.declaration import (
    BUILTIN,
    FIELD_NAME,
    RESERVED_FIELDS,
    SYSTEM_NAMES,
    WORKFLOW_INPUT_FIELDS,
    Declaration,
)
from graphql_files.settings import Settings

from ..declared import DECLARED


@pytest.mark.parametrize("declaration", [BUILTIN, DECLARED], ids=["built-in", "declared"])
def test_every_generated_name_beside_a_models_own_is_reserved(declaration: Declaration) -> None:
    schema = build_schema(Settings.model_construct(), declaration)._schema
    api = api_for(declaration)
    for binding in api.bindings:
        model = binding.model
        own = (
            {f.name for f in model.fields}
            | {f.name for f in model.files}
            | {r.name for r in model.relations}
        )
        attributes = {name for name in dir(binding.object_type) if FIELD_NAME.fullmatch(name)}
        assert attributes - own <= RESERVED_FIELDS, binding.object_type
        object_type = schema.type_map[model.name]
        assert isinstance(object_type, GraphQLObjectType)
        assert set(object_type.fields) - own <= SYSTEM_NAMES
        n = model.name
        for name in (
            f"Create{n}Input",
            f"Update{n}Input",
            f"Delete{n}Input",
            f"Model{n}FilterInput",
            f"Model{n}ConditionInput",
            f"ModelSubscription{n}FilterInput",
        ):
            input_type = schema.type_map[name]
            assert isinstance(input_type, GraphQLInputObjectType)
            assert set(input_type.fields) - own <= RESERVED_FIELDS, name
        for file in model.files:
            verbs: tuple[tuple[str, str], ...] = (
                ("Add", file.name),
                ("Replace", file.singular),
                ("Remove", file.name),
            )
            if not file.many:
                verbs = (("Attach", file.singular), ("Detach", file.singular))
            for verb, what in verbs:
                name = f"{verb}{n}{what[:1].upper()}{what[1:]}Input"
                input_type = schema.type_map[name]
                assert isinstance(input_type, GraphQLInputObjectType)
                fields = set(input_type.fields) - {model.id_argument}
                assert fields <= WORKFLOW_INPUT_FIELDS, name
