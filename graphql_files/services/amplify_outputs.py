"""``amplify_outputs.json``: what an unmodified aws-amplify v6 needs to talk to this server.

Amplify Gen 2 apps configure everything from that file (``Amplify.configure(outputs)``). Its
``data`` section names the GraphQL endpoint, the region, the API key and the authorization
modes; its ``model_introspection`` describes every model (fields, primary key, auth rules) so
that ``client.models.Song.create/get/list/update/delete`` and ``onCreate``/``observeQuery``
generate the operations this server serves. It is made from the same model descriptions the
schema is made from, and from the rule file.

Relation fields are written as Amplify Gen 2's generator writes a ``references`` relation
(aws-amplify/amplify-codegen, packages/appsync-modelgen-plugin: ``process-has-many.ts``,
``process-has-one.ts``, ``process-belongs-to.ts`` and ``getFieldAssociation`` in
``visitors/appsync-model-introspection-visitor.ts``), which is what the client's selection sets
(``comments.*`` becomes ``comments { items { ... } }``), lazy loaders (``post.comments()`` lists
Comment by ``postId``, ``comment.post()`` gets Post by its ``postId``) and ``create({post})`` read
(aws-amplify/amplify-data, packages/data-schema/src/runtime/internals/APIClient.ts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..domain.declaration import Declaration
from ..domain.models import SYSTEM_FIELDS, FieldSpec, ModelSpec, RelationSpec
from ..domain.policy import Policy, Rule

OUTPUTS_VERSION = "1.4"
# Our scalars as Amplify's (the others are the same names).
SCALARS = {"DateTime": "AWSDateTime"}
READ_ONLY = frozenset({"version", "createdAt", "updatedAt"})
# A signed-in user's JWT reaches the server as Amplify's "lambda" (authToken) or "userPool"
# (a custom token provider) modes: both send it in the Authorization header.
USER_AUTHORIZATION = "AWS_LAMBDA"


def amplify_outputs(
    *, url: str, api_key: str | None, region: str, policy: Policy, declaration: Declaration
) -> dict[str, Any]:
    """The whole file: Amplify's ``data`` section for this server."""
    data: dict[str, Any] = {
        "url": url,
        "aws_region": region,
        "default_authorization_type": "API_KEY" if api_key else USER_AUTHORIZATION,
        "authorization_types": [USER_AUTHORIZATION] if api_key else [],
        "model_introspection": model_introspection(policy, declaration),
    }
    if api_key:
        data["api_key"] = api_key
    return {"version": OUTPUTS_VERSION, "data": data}


def model_introspection(policy: Policy, declaration: Declaration) -> dict[str, Any]:
    return {
        "version": 1,
        "models": {model.name: _model(model, policy) for model in declaration.models},
        "enums": {e.name: {"name": e.name, "values": list(e.values)} for e in declaration.enums},
        "nonModels": {},
    }


def _model(model: ModelSpec, policy: Policy) -> dict[str, Any]:
    fields = {
        **{f.name: _field(f) for f in (SYSTEM_FIELDS[0], *model.fields)},
        **{r.name: _relation(r) for r in model.relations},
        **{f.name: _field(f) for f in SYSTEM_FIELDS[1:]},
    }
    return {
        "name": model.name,
        "fields": fields,
        "syncable": True,
        "pluralName": model.plural,
        "attributes": [
            {"type": "model", "properties": {}},
            {"type": "auth", "properties": {"rules": _rules(policy.data_rules(model.name))}},
        ],
        "primaryKeyInfo": {
            "isCustomPrimaryKey": False,
            "primaryKeyFieldName": "id",
            "sortKeyFieldNames": [],
        },
    }


def _field(spec: FieldSpec) -> dict[str, Any]:
    kind = spec.type
    field: dict[str, Any] = {
        "name": spec.name,
        "isArray": kind.is_list,
        "type": {"enum": kind.name} if kind.enum else SCALARS.get(kind.name, kind.name),
        "isRequired": kind.items_required if kind.is_list else kind.required,
        "attributes": [],
    }
    if kind.is_list:
        field["isArrayNullable"] = not kind.required
    if spec.name in READ_ONLY:
        field["isReadOnly"] = True
        field["isRequired"] = spec.name == "version"
    return field


def _relation(relation: RelationSpec) -> dict[str, Any]:
    """A relation field as Amplify writes ``a.hasMany("Comment", "postId")``, ``a.hasOne(...)``
    and ``a.belongsTo("Post", "postId")``: the related model as its type, never required, and
    the reference field (always the child's) named on both sides: ``associatedWith`` from the
    parent's side (``targetNames`` empty for a ``hasOne``), ``targetNames`` from the child's."""
    references = [relation.references]
    association: dict[str, Any] = {"connectionType": relation.kind.upper()}
    if relation.kind == "belongs_to":
        association["targetNames"] = references
    else:
        association["associatedWith"] = references
        if relation.kind == "has_one":
            association["targetNames"] = []
    field: dict[str, Any] = {
        "name": relation.name,
        "isArray": relation.kind == "has_many",
        "type": {"model": relation.target},
        "isRequired": False,
        "attributes": [],
    }
    if relation.kind == "has_many":
        field["isArrayNullable"] = True
    field["association"] = association
    return field


def _rules(rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """The rule file's data rules as Amplify's ``authorization`` rules."""
    out = []
    for rule in rules:
        operations = sorted(rule.allows)
        if rule.kind == "publicApiKey":
            out.append({"allow": "public", "provider": "apiKey", "operations": operations})
        elif rule.kind == "guest":
            out.append({"allow": "public", "provider": "iam", "operations": operations})
        elif rule.kind == "authenticated":
            out.append({"allow": "private", "provider": "function", "operations": operations})
        elif rule.kind == "owner":
            out.append(
                {
                    "provider": "userPools",
                    "ownerField": "owner",
                    "allow": "owner",
                    "identityClaim": "sub",
                    "operations": operations,
                }
            )
        elif rule.kind == "groups":
            out.append(
                {
                    "groupClaim": "groups",
                    "provider": "userPools",
                    "allow": "groups",
                    "groups": [rule.group or ""],
                    "operations": operations,
                }
            )
    return out
