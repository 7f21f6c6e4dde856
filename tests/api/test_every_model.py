"""The whole API for every declared model, over HTTP and websockets: the built-in Song and
PhotoAlbum and the declared test set (``tests/declared.py``) run through the same tests, so a
model declared tomorrow is covered by them. Operation names are derived here as the contract
in DESIGN.md ("Declared models") states them, not read from the server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphql_files.domain.declaration import BUILTIN
from graphql_files.domain.models import FieldSpec, FileSpec, ModelSpec, capitalized
from graphql_files.services.wiring import Services
from graphql_files.settings import Settings

from ..declared import DECLARED, DECLARED_TEXT, sample_file, value_for, wrong_file
from ..helpers import (
    GraphQLClient,
    LiveServer,
    codes,
    make_settings,
    multipart,
    put_object,
    stored_originals,
    subscribed,
    ws_client,
)

DECLARATIONS = {"built-in": BUILTIN, "declared": DECLARED}


@dataclass(frozen=True)
class Case:
    """One model (and maybe one of its file fields) of one declaration."""

    declaration: str
    model: ModelSpec
    file: FileSpec | None = None

    @property
    def id(self) -> str:
        tail = f".{self.file.name}" if self.file else ""
        return f"{self.declaration}:{self.model.name}{tail}"

    @property
    def the_file(self) -> FileSpec:
        assert self.file is not None
        return self.file


def cases(*, files: bool, many: bool | None = None, sized: bool = False) -> list[Any]:
    found = []
    for label, declaration in DECLARATIONS.items():
        for model in declaration.models:
            if not files:
                found.append(Case(label, model))
                continue
            for file in model.files:
                if (many is None or file.many is many) and (not sized or file.max_bytes):
                    found.append(Case(label, model, file))
    return [pytest.param(c, id=c.id) for c in found]


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    chosen: Case = request.param
    return chosen


@pytest.fixture
def settings(s3_endpoint: str, bucket: str, tmp_path: Path, case: Case) -> Settings:
    """The server started with the case's declaration: none for the built-in one, the declared
    test set from a file, as a user starts it."""
    if case.declaration == "built-in":
        return make_settings(s3_endpoint, bucket)
    models = tmp_path / "models.toml"
    models.write_text(DECLARED_TEXT)
    return make_settings(s3_endpoint, bucket, models_file=models)


# --- the names the contract gives --------------------------------------------------------------


def selection(model: ModelSpec) -> str:
    fields = " ".join(f.name for f in model.fields)
    files = " ".join(
        f"{f.name} {{ path url {{ url }} properties {{ size contentType }} }}" for f in model.files
    )
    return f"id version {fields} {files}"


def record_op(kind: str, model: ModelSpec) -> str:
    """createX / updateX / deleteX with their input."""
    name = f"{kind}{model.name}"
    return f"""mutation($input: {capitalized(name)}Input!) {{
      {name}(input: $input) {{ {selection(model)} }} }}"""


def workflow(verb: str, model: ModelSpec, item: str) -> tuple[str, str]:
    """(mutation text, field name) of a record-file workflow: attachPostImage, addPostFiles..."""
    name = f"{verb}{model.name}{capitalized(item)}"
    text = f"""mutation($input: {capitalized(name)}Input!) {{
      {name}(input: $input) {{ {selection(model)} }} }}"""
    return text, name


def required_input(model: ModelSpec, record_id: str) -> dict[str, Any]:
    return {"id": record_id, **{f.name: value_for(f.type) for f in model.fields if f.required}}


async def create(client: GraphQLClient, model: ModelSpec, record_id: str = "r1") -> dict[str, Any]:
    data = await client.data(
        record_op("create", model), {"input": required_input(model, record_id)}
    )
    record: dict[str, Any] = data[f"create{model.name}"]
    return record


async def get(client: GraphQLClient, model: ModelSpec, record_id: str = "r1") -> dict[str, Any]:
    query = f"query($id: ID!) {{ get{model.name}(id: $id) {{ {selection(model)} }} }}"
    data = await client.data(query, {"id": record_id})
    record: dict[str, Any] = data[f"get{model.name}"]
    return record


async def keys(services: Services, prefix: str) -> set[str]:
    """The objects under ``prefix`` but image variants, once every deletion begun after an
    answer is done (no variant may outlive its original: ``stored_originals``)."""
    return set(await stored_originals(services, prefix))


async def send(
    client: GraphQLClient,
    case: Case,
    verb: str,
    item: str,
    values: dict[str, Any],
    uploads: list[tuple[bytes, str, str]] | None = None,
    upload_field: str = "file",
) -> dict[str, Any]:
    """A workflow request: with files sent in the request (multipart) or as plain JSON."""
    text, _ = workflow(verb, case.model, item)
    variables = {"input": {case.model.id_argument: "r1", **values}}
    if not uploads:
        return await client.run(text, variables)
    if upload_field == "files":
        variables["input"]["files"] = [None] * len(uploads)
        names = [f"variables.input.files.{n}" for n in range(len(uploads))]
    else:
        variables["input"]["file"] = None
        names = ["variables.input.file"]
    files = {n: (name, data, kind) for n, (data, kind, name) in zip(names, uploads, strict=True)}
    response = await multipart(client, text, variables, files)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ok(body: dict[str, Any], field: str) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    record: dict[str, Any] = body["data"][field]
    return record


async def fetch(url: str) -> bytes:
    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)
    assert response.status_code == 200, response.text
    return response.content


# --- record-file workflows ---------------------------------------------------------------------


@pytest.mark.parametrize("case", cases(files=True, many=False), indirect=True)
async def test_one_file_attach_replace_detach(
    client: GraphQLClient, services: Services, case: Case
) -> None:
    model, file = case.model, case.the_file
    folder = services.attachments.folder(model, "r1")
    assert folder == f"images/{model.name}/r1/"
    await create(client, model)
    data, content_type, name = sample_file(file)
    _, attach = workflow("attach", model, file.name)

    record = ok(
        await send(client, case, "attach", file.name, {}, [(data, content_type, name)]), attach
    )
    first = record[file.key_field]
    assert first.startswith(folder), first
    assert first.endswith(name), first
    assert record["version"] == 2
    assert record[file.name]["path"] == first
    assert record[file.name]["properties"]["contentType"] == content_type
    assert await fetch(record[file.name]["url"]["url"]) == data

    presigned = folder + "presigned-" + name  # a client's own upload, adopted by its path
    await put_object(services, presigned, data, content_type=content_type)
    record = ok(await send(client, case, "attach", file.name, {"uploadedPath": presigned}), attach)
    adopted = record[file.key_field]  # a copy, under a key of its own
    assert adopted.startswith(folder), adopted
    assert adopted.endswith("-presigned-" + name), adopted
    assert record["version"] == 3
    # deletePrevious: the first is gone; and so is the upload the copy was made from
    assert await keys(services, folder) == {adopted}

    _, detach = workflow("detach", model, file.name)
    body = await send(client, case, "detach", file.name, {"deleteFile": True, "expectedVersion": 3})
    record = ok(body, detach)
    assert record[file.key_field] is None
    assert record[file.name] is None
    assert record["version"] == 4
    assert await keys(services, folder) == set()
    other = [f for f in model.files if f is not file]
    assert all(record[f.key_field] in (None, []) for f in other)  # the other fields untouched


@pytest.mark.parametrize("case", cases(files=True, many=True), indirect=True)
async def test_many_file_add_replace_remove(
    client: GraphQLClient, services: Services, case: Case
) -> None:
    model, file = case.model, case.the_file
    folder = services.attachments.folder(model, "r1")
    await create(client, model)
    data, content_type, name = sample_file(file)
    presigned = folder + "presigned-" + name
    await put_object(services, presigned, data, content_type=content_type)

    _, add = workflow("add", model, file.name)
    body = await send(client, case, "add", file.name, {}, [(data, content_type, name)] * 2, "files")
    sent = ok(body, add)[file.key_field]
    assert len(sent) == 2
    assert all(p.startswith(folder) for p in sent)
    record = ok(await send(client, case, "add", file.name, {"uploadedPaths": [presigned]}), add)
    adopted = record[file.key_field][-1]  # a copy, under a key of its own
    assert adopted.endswith("-presigned-" + name), adopted
    assert record[file.key_field] == [*sent, adopted]
    assert [ref["path"] for ref in record[file.name]] == record[file.key_field]
    assert record["version"] == 3

    _, replace = workflow("replace", model, file.singular)
    body = await send(
        client, case, "replace", file.singular, {"path": sent[0]}, [(data, content_type, name)]
    )
    record = ok(body, replace)
    new = record[file.key_field][0]
    assert new not in sent
    assert record[file.key_field][1:] == [sent[1], adopted]
    assert sent[0] not in await keys(services, folder)

    _, remove = workflow("remove", model, file.name)
    values = {"paths": [sent[1], adopted], "deleteFiles": True, "expectedVersion": 4}
    record = ok(await send(client, case, "remove", file.name, values), remove)
    assert record[file.key_field] == [new]
    assert record["version"] == 5
    assert await keys(services, folder) == {new}


@pytest.mark.parametrize("case", cases(files=True), indirect=True)
async def test_a_file_field_refuses_types_it_does_not_accept(
    client: GraphQLClient, services: Services, case: Case
) -> None:
    model, file = case.model, case.the_file
    folder = services.attachments.folder(model, "r1")
    await create(client, model)
    data, content_type, name = wrong_file(file)
    verb = "add" if file.many else "attach"
    upload_field = "files" if file.many else "file"
    body = await send(client, case, verb, file.name, {}, [(data, content_type, name)], upload_field)
    assert codes(body) == ["UNSUPPORTED_MEDIA_TYPE"], body

    presigned = folder + "wrong-" + name
    await put_object(services, presigned, data, content_type=content_type)
    adopt = {"uploadedPaths": [presigned]} if file.many else {"uploadedPath": presigned}
    body = await send(client, case, verb, file.name, adopt)
    assert codes(body) == ["UNSUPPORTED_MEDIA_TYPE"], body

    record = await get(client, model)
    assert record["version"] == 1
    assert record[file.key_field] in (None, [])
    assert await keys(services, folder) == {presigned}  # nothing left behind


@pytest.mark.parametrize("case", cases(files=True, sized=True), indirect=True)
async def test_a_file_field_refuses_files_over_its_size(
    client: GraphQLClient, services: Services, case: Case
) -> None:
    model, file = case.model, case.the_file
    assert file.max_bytes is not None
    folder = services.attachments.folder(model, "r1")
    await create(client, model)
    data, content_type, name = sample_file(file)
    big = data + b"\0" * (file.max_bytes + 1 - len(data))  # one byte over its own limit
    verb = "add" if file.many else "attach"
    upload_field = "files" if file.many else "file"
    body = await send(client, case, verb, file.name, {}, [(big, content_type, name)], upload_field)
    assert codes(body) == ["PAYLOAD_TOO_LARGE"], body

    presigned = folder + "big-" + name
    await put_object(services, presigned, big, content_type=content_type)
    adopt = {"uploadedPaths": [presigned]} if file.many else {"uploadedPath": presigned}
    assert codes(await send(client, case, verb, file.name, adopt)) == ["PAYLOAD_TOO_LARGE"]

    record = await get(client, model)
    assert record["version"] == 1
    assert record[file.key_field] in (None, [])
    assert await keys(services, folder) == {presigned}


@pytest.mark.parametrize("case", cases(files=True), indirect=True)
async def test_a_presigned_upload_into_a_record_folder_takes_its_models_types(
    client: GraphQLClient, services: Services, case: Case
) -> None:
    """createUploadUrl into a record's folder accepts what the model's file fields accept (a
    PDF for a PDF field, up to the largest size one of them allows), so the upload can then be
    adopted; elsewhere the server's ALLOWED_CONTENT_TYPES and MAX_UPLOAD_BYTES apply."""
    model, file = case.model, case.the_file
    folder = services.attachments.folder(model, "r1")
    _, content_type, name = sample_file(file)
    query = """mutation($input: CreateUploadUrlInput!) {
      createUploadUrl(input: $input) { path fields } }"""
    data = await client.data(
        query, {"input": {"path": folder + name, "contentType": content_type, "size": 10}}
    )
    assert data["createUploadUrl"]["fields"]["Content-Type"] == content_type
    accepted = {
        t for f in model.files for t in (f.types or services.settings.allowed_content_types)
    }
    refused = [
        kind
        for kind in ("image/png", "audio/mpeg", "application/pdf")
        if kind not in accepted and f"{kind.split('/')[0]}/*" not in accepted
    ]
    for kind in refused:
        error = await client.error(
            query, {"input": {"path": folder + "x", "contentType": kind, "size": 10}}
        )
        assert error["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE", error


@pytest.mark.parametrize("case", cases(files=False), indirect=True)
async def test_delete_with_files_removes_the_records_folder(
    client: GraphQLClient, services: Services, case: Case
) -> None:
    model = case.model
    folder = services.attachments.folder(model, "r1")
    await create(client, model)
    for file in model.files:
        uploads = [sample_file(file)]
        verb, field = ("add", "files") if file.many else ("attach", "file")
        ok(
            await send(client, case, verb, file.name, {}, uploads, field),
            workflow(verb, model, file.name)[1],
        )
    record = await get(client, model)
    named = {
        p
        for f in model.files
        for p in ([record[f.key_field]] if not f.many else record[f.key_field])
    }
    assert len(named) == len(model.files)
    assert await keys(services, folder) == named

    text = f"""mutation($input: Delete{model.name}Input!) {{
      delete{model.name}(input: $input) {{ id version }} }}"""
    body = await client.data(text, {"input": {"id": "r1", "deleteFiles": True}})
    assert body[f"delete{model.name}"]["version"] == len(model.files) + 2
    assert await keys(services, folder) == set()
    assert (await client.data(f'{{ get{model.name}(id: "r1") {{ id }} }}'))[
        f"get{model.name}"
    ] is None


# --- CRUD over every field type -----------------------------------------------------------------


def other_value(spec: FieldSpec) -> Any:
    """A valid value of the field's type other than ``value_for``'s."""
    kind = spec.type
    if kind.enum is not None:
        item: Any = kind.enum.values[-1] if len(kind.enum.values) > 1 else kind.enum.values[0]
    else:
        item = {
            "String": "y",
            "ID": "j",
            "Int": 7,
            "Float": -1.5,
            "Boolean": False,
            "DateTime": "2027-03-01T00:00:00Z",
        }[kind.name]
    return [item, item] if kind.is_list else item


def as_sent(model: ModelSpec, record: dict[str, Any], names: Any) -> dict[str, Any]:
    """``record``'s fields ``names`` as variables carry them: DateTime values come back with
    milliseconds (AWSDateTime's form), ``2026-01-31T12:00:00.000Z``."""
    values = {}
    for name in names:
        value = record[name]
        if model.field(name).type.name == "DateTime" and value is not None:
            value = value.replace(".000Z", "Z")
        values[name] = value
    return values


def plain_fields(model: ModelSpec) -> list[FieldSpec]:
    return [f for f in model.fields if not model.file_of(f.name)]


@pytest.mark.parametrize("case", cases(files=False), indirect=True)
async def test_crud_and_filters_over_every_field(client: GraphQLClient, case: Case) -> None:
    model = case.model
    first = {f.name: value_for(f.type) for f in plain_fields(model)}
    second = {f.name: other_value(f) for f in plain_fields(model)}
    declaration = DECLARATIONS[case.declaration]
    for relation in model.parents:  # a reference names a record: make the ones it will name
        parent = declaration.model(relation.target)
        for values in (first, second):
            await create(client, parent, values[relation.references])
    create_text = record_op("create", model)
    made = await client.data(create_text, {"input": {"id": "r1", **first}})
    assert as_sent(model, made[f"create{model.name}"], first) == first
    await client.data(create_text, {"input": {"id": "r2", **second}})
    assert as_sent(model, await get(client, model, "r2"), second) == second

    filter_type = f"Model{model.name}FilterInput"
    query = f"""query($f: {filter_type}, $limit: Int, $next: String) {{
      list{model.plural}(filter: $f, limit: $limit, nextToken: $next) {{
        items {{ id }} nextToken }} }}"""
    for spec in plain_fields(model):
        if spec.is_list:
            condition = {"contains": first[spec.name][0]} if spec.type.name == "String" else None
        else:
            condition = {"eq": first[spec.name]}
        if condition is None:
            continue
        page = (await client.data(query, {"f": {spec.name: condition}}))[f"list{model.plural}"]
        assert [item["id"] for item in page["items"]] == ["r1"], (spec.name, page)
        negated = {"not": {spec.name: condition}}
        page = (await client.data(query, {"f": negated}))[f"list{model.plural}"]
        assert [item["id"] for item in page["items"]] == ["r2"], (spec.name, page)

    await client.data(create_text, {"input": {"id": "r3", **first}})  # keyset pagination
    page = (await client.data(query, {"limit": 2}))[f"list{model.plural}"]
    rest = (await client.data(query, {"limit": 2, "next": page["nextToken"]}))[
        f"list{model.plural}"
    ]
    assert sorted(i["id"] for i in [*page["items"], *rest["items"]]) == ["r1", "r2", "r3"]
    assert rest["nextToken"] is None

    update = record_op("update", model)
    changed = await client.data(update, {"input": {"id": "r1", **second, "expectedVersion": 1}})
    assert changed[f"update{model.name}"]["version"] == 2
    stale = await client.error(update, {"input": {"id": "r1", **first, "expectedVersion": 1}})
    assert stale["extensions"]["code"] == "CONFLICT"
    assert stale["extensions"]["currentVersion"] == 2
    optional = [f for f in plain_fields(model) if not f.required]
    if optional:  # a field given as null is removed
        cleared = await client.data(update, {"input": {"id": "r1", optional[0].name: None}})
        assert cleared[f"update{model.name}"][optional[0].name] is None

    for spec in plain_fields(model):  # a value of the wrong type changes nothing
        body = await client.run(create_text, {"input": {"id": "bad", **first, spec.name: {"x": 1}}})
        assert codes(body) in (["BAD_USER_INPUT"], ["GRAPHQL_VALIDATION_FAILED"]), (spec.name, body)
    assert (await client.data(f'{{ get{model.name}(id: "bad") {{ id }} }}'))[
        f"get{model.name}"
    ] is None


@pytest.mark.parametrize("case", cases(files=False), indirect=True)
async def test_enum_values_outside_the_declaration_are_refused(
    client: GraphQLClient, case: Case
) -> None:
    model = case.model
    enums = [f for f in plain_fields(model) if f.type.enum is not None]
    for spec in enums:
        body = await client.run(
            record_op("create", model),
            {"input": {**required_input(model, "r1"), spec.name: "NOT_A_VALUE"}},
        )
        assert codes(body) == ["BAD_USER_INPUT"], body
        assert "NOT_A_VALUE" in body["errors"][0]["message"]


# --- subscriptions and the change feed ----------------------------------------------------------


@pytest.mark.parametrize("case", cases(files=False), indirect=True)
async def test_subscriptions_and_the_change_feed_for_every_model(
    live: LiveServer, case: Case
) -> None:
    model = case.model
    plain = plain_fields(model)
    name_field = plain[0].name
    async with live.client() as http, ws_client(live) as ws:
        for kind in ("Create", "Update", "Delete"):
            await ws.subscribe(
                f"subscription {{ on{kind}{model.name} {{ id version {name_field} }} }}"
            )
        await ws.subscribe(
            f"""subscription {{ recordChanges(models: [{model.enum_name}]) {{
              kind model id version {model.field_name} {{ id version }} }} }}"""
        )
        await subscribed(live, 4)
        await create(http, model)
        update = record_op("update", model)
        await http.data(update, {"input": {"id": "r1", name_field: other_value(plain[0])}})
        await http.data(record_op("delete", model), {"input": {"id": "r1"}})

        events = [await ws.next_payload() for _ in range(6)]
        by_field: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            ((field, value),) = event["data"].items()
            by_field.setdefault(field, []).append(value)
        assert [e["version"] for e in by_field[f"onCreate{model.name}"]] == [1]
        assert [e["version"] for e in by_field[f"onUpdate{model.name}"]] == [2]
        assert [e["version"] for e in by_field[f"onDelete{model.name}"]] == [3]
        feed = by_field["recordChanges"]
        assert [(c["kind"], c["model"], c["id"], c["version"]) for c in feed] == [
            ("CREATED", model.enum_name, "r1", 1),
            ("UPDATED", model.enum_name, "r1", 2),
            ("DELETED", model.enum_name, "r1", 3),
        ]
        assert [c[model.field_name]["version"] for c in feed] == [1, 2, 3]
