"""Hunting for a counter-example to the promise: no record names a missing object, no record
names a missing parent, no version goes back, and the sweeper neither deletes a named object
nor leaves an orphan behind.

A hypothesis state machine runs two operations at a time, concurrently, drawn from every path
that adopts or deletes an object: the record-file workflows, uploads and removeFile, deleteX
with deleteFiles, and the sweeper (grace 0). Over a declaration with relations (``RELATED``:
cascade two levels deep, restrict, nullify of a has_one), also from every path that makes a
record name a parent or deletes one: createX of a child naming a parent, updateX moving a child
to another parent (or to none), and deleteX of a parent with and without its files; and every
other step is such a race on purpose, a child written naming a parent at once with that
parent's delete. Records are created, updated and deleted as the API does, through
``services.relations``. Each operation may get one fault, at any of its S3 calls or MongoDB
writes (or, aimed at one, at a MongoDB read: a parent checked, a record read before its delete,
children looked up or counted), before or after the call took effect:

- an error (the driver's refusal, or an answer lost after the effect happened; or the call
  lands late, after its error was answered);
- a cancellation (a deadline, a client gone): the code's own clean-up still runs;
- a crash: the operation's process is gone, so nothing it does afterwards reaches S3 or
  MongoDB; its claims stay until their lease runs out;
- a slow call: it lands, later, while the other operation goes on.

After every step the invariants are checked; then every claim's lease is run out (the clocks of
the object claims and of the record claims moved forward), a sweep with grace 0 must leave
exactly the named objects and no record claim, and still no record names a missing parent.
Before every step the records deleted are created again (children naming a parent that
exists): a delete that a crash cut short leaves a parent with part of its children, and a later
delete of it must go on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from tempfile import SpooledTemporaryFile
from typing import IO, Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from graphql_files.adapters.mongo import Collection
from graphql_files.adapters.s3 import Files
from graphql_files.domain.declaration import BUILTIN, Declaration
from graphql_files.domain.models import FileSpec, ModelSpec, RelationSpec
from graphql_files.domain.variants import image_format_of, key_of
from graphql_files.errors import DatabaseUnavailable, DomainError, StorageUnavailable
from graphql_files.services.attachments import Source
from graphql_files.services.auth import Access, Principal, User
from graphql_files.services.storage import Upload
from graphql_files.services.wiring import Services, open_services

from .. import stores
from ..declared import DECLARED, RELATED, required_values, sample_file
from ..helpers import full_access, make_settings, put_object

RECORDS = 2  # per model: few, so operations collide
EXTRA = 2  # children a step may create besides those recreated (created, moved, deleted)
PRESIGNED = 2  # presigned uploads per file field a client may adopt
STATS: Counter[str] = Counter()


# --- faults ------------------------------------------------------------------------------------


class Fault(enum.Enum):
    ERROR_BEFORE = "error before"
    ERROR_AFTER = "error after"  # the call took effect; its answer was lost
    CANCEL_BEFORE = "cancel before"
    CANCEL_AFTER = "cancel after"
    CRASH_BEFORE = "crash before"
    CRASH_AFTER = "crash after"
    LATE = "error, then the call lands late"  # a lost connection, the request still in flight
    SLOW = "slow"  # the call goes, and answers, later: the other operation runs on meanwhile

    @property
    def after(self) -> bool:
        return self.name.endswith("AFTER")


class Crash(BaseException):
    """The operation's process died: nothing it does from here on reaches S3 or MongoDB."""


@dataclass
class Plan:
    """One operation's fault: its ``at``-th S3 call or MongoDB write (of those named
    ``target``, when given) fails with ``fault``."""

    at: int
    fault: Fault
    target: str | None = None  # "MongoDB find_one_and_update", "S3 upload", ...
    calls: int = 0
    crashed: bool = False


PLAN: ContextVar[Plan | None] = ContextVar("fault_plan", default=None)
SLOW_SECONDS = 0.05  # longer than a cascade of a few children takes; shorter than a claim's wait
# A lost call lands this much after its error was answered: long enough for the other operation
# to have done its work meanwhile (a delete, a cascade), far within a claim's lease.
LATE_SECONDS = 0.1
IN_FLIGHT: set[asyncio.Task[Any]] = set()  # late calls; each lands before the step ends


async def land_late(call: Awaitable[Any]) -> None:
    await asyncio.sleep(LATE_SECONDS)  # the fault is the delay itself: it lands after its answer
    with contextlib.suppress(DomainError):  # a refused write changes nothing
        await call


def injecting(
    name: str,
    method: Callable[..., Awaitable[Any]],
    error: Callable[[str], Exception],
    *,
    aimed_only: bool = False,
) -> Callable[..., Awaitable[Any]]:
    """``method`` failing as the operation's plan says; with ``aimed_only``, only a plan aimed
    at this call counts it (the MongoDB reads: a fault that just counts calls stays on the
    writes and the S3 calls)."""
    counted = (name,) if aimed_only else (None, name)

    async def call(*args: Any, **kwargs: Any) -> Any:
        plan = PLAN.get()
        if plan is None:
            return await method(*args, **kwargs)
        if plan.crashed:
            raise Crash
        if plan.target not in counted:
            return await method(*args, **kwargs)
        plan.calls += 1
        if plan.calls != plan.at:
            return await method(*args, **kwargs)
        STATS[f"fault: {plan.fault.value} {name}"] += 1
        event(f"fault: {plan.fault.value} {name}")
        if plan.fault is Fault.SLOW:
            await asyncio.sleep(SLOW_SECONDS)
            return await method(*args, **kwargs)
        if plan.fault is Fault.LATE:
            IN_FLIGHT.add(asyncio.ensure_future(land_late(method(*args, **kwargs))))
        elif plan.fault.after:
            await method(*args, **kwargs)
        if plan.fault in (Fault.ERROR_BEFORE, Fault.ERROR_AFTER, Fault.LATE):
            raise error(f"injected: {plan.fault.value} {name}")
        if plan.fault in (Fault.CANCEL_BEFORE, Fault.CANCEL_AFTER):
            raise asyncio.CancelledError
        plan.crashed = True
        raise Crash

    return call


S3_CALLS = ("head", "read_start", "read_into", "list_page", "upload", "delete", "delete_many")
MONGODB_WRITES = (
    "insert_one",
    "find_one_and_update",
    "find_one_and_delete",
    "update_many",  # leases renewed
    "delete_many",
)
# a parent checked, a record read before its delete, children looked up or counted
MONGODB_READS = ("find_one", "find", "count", "first_per_group")


def inject_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in S3_CALLS:
        monkeypatch.setattr(
            Files, name, injecting(f"S3 {name}", getattr(Files, name), StorageUnavailable)
        )
    for name in MONGODB_WRITES:
        monkeypatch.setattr(
            Collection,
            name,
            injecting(f"MongoDB {name}", getattr(Collection, name), DatabaseUnavailable),
        )
    for name in MONGODB_READS:
        monkeypatch.setattr(
            Collection,
            name,
            injecting(
                f"MongoDB {name}",
                getattr(Collection, name),
                DatabaseUnavailable,
                aimed_only=True,
            ),
        )


# --- operations --------------------------------------------------------------------------------

Op = Callable[["Consistency"], Awaitable[Any]]


SPOOLED: list[IO[bytes]] = []  # closed once the step that spooled them is over, as a request's


@dataclass
class BytesUpload:
    """A file sent with the request, as a resolver gets it (``storage.Upload``), all arrived."""

    data: bytes
    filename: str | None
    content_type: str | None
    position: int = 0

    @property
    def size(self) -> int:
        return len(self.data)

    async def begin(self) -> None:
        pass

    async def peek(self, size: int) -> bytes:
        return self.data[self.position : self.position + size]

    async def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.position + size
        chunk, self.position = self.data[self.position : end], min(end, len(self.data))
        return chunk

    async def spool(self) -> IO[bytes]:
        """As the server's own uploads spool: a temporary file (its variants are made from a
        reader of their own while the original goes to S3)."""
        spooled = SpooledTemporaryFile(max_size=1024)  # noqa: SIM115 - closed after the step
        spooled.write(self.data[self.position :])
        spooled.seek(0)
        SPOOLED.append(spooled)
        return spooled

    async def check_rest(self) -> None:
        pass  # the whole body has arrived, and it is sound


def close_spools() -> None:
    for spooled in SPOOLED:
        spooled.close()
    SPOOLED.clear()


def upload(file: FileSpec) -> Upload:
    """A file sent with the request, one that ``file`` accepts."""
    data, content_type, name = sample_file(file)
    return BytesUpload(data, name, content_type)


def presigned_name(file: FileSpec, index: int) -> str:
    """A client's presigned upload for ``file``, which a workflow may adopt."""
    return f"{file.name}-{index}-{sample_file(file)[2]}"


@dataclass(frozen=True)
class Target:
    model: ModelSpec
    index: int

    @property
    def id(self) -> str:
        return f"{self.model.name[0].lower()}{self.index}"


@dataclass(frozen=True)
class FileTarget(Target):
    file: FileSpec = field(kw_only=True)


def source(t: FileTarget, choice: int | None, m: Consistency) -> Source:
    if choice is None:
        return Source(upload=upload(t.file))
    return Source(uploaded_path=m.folder(t) + presigned_name(t.file, choice))


def attach(t: FileTarget, choice: int | None, delete_previous: bool) -> Op:
    async def run(m: Consistency) -> Any:
        return await m.services.attachments.attach(
            m.access, t.model, t.file, t.id, source(t, choice, m), delete_previous=delete_previous
        )

    return run


def detach(t: FileTarget, delete_file: bool) -> Op:
    async def run(m: Consistency) -> Any:
        return await m.services.attachments.detach(
            m.access, t.model, t.file, t.id, delete_file=delete_file
        )

    return run


def add(t: FileTarget, choices: list[int | None]) -> Op:
    async def run(m: Consistency) -> Any:
        sources = [source(t, c, m) for c in choices]
        return await m.services.attachments.add(m.access, t.model, t.file, t.id, sources)

    return run


def replace(t: FileTarget, which: int, choice: int | None, delete_previous: bool) -> Op:
    async def run(m: Consistency) -> Any:
        named = await m.named_by(t)
        if not named:
            return None
        old = named[which % len(named)]
        return await m.services.attachments.replace(
            m.access,
            t.model,
            t.file,
            t.id,
            old,
            source(t, choice, m),
            delete_previous=delete_previous,
        )

    return run


def remove(t: FileTarget, which: int, delete_files: bool) -> Op:
    async def run(m: Consistency) -> Any:
        named = await m.named_by(t)
        if not named:
            return None
        paths = [named[which % len(named)]]
        return await m.services.attachments.remove(
            m.access, t.model, t.file, t.id, paths, delete_files=delete_files
        )

    return run


def delete_record(t: Target, delete_files: bool) -> Op:
    """deleteX: its children cascaded, nullified or refusing it, as its relations say."""

    async def run(m: Consistency) -> Any:
        return await m.services.relations.delete(m.access, t.model, t.id, delete_files=delete_files)

    run.__name__ = f"delete_record {t.model.name} {t.id} delete_files={delete_files}"
    return run


def describe(op: Op) -> str:
    """An operation, as a counter-example shows it: the relation ones name themselves."""
    return op.__name__ if op.__name__ != "run" else op.__qualname__.split(".")[0]


def kind(op: Op) -> str:
    """What an operation is, in the outcomes printed: its function (and model)."""
    return " ".join(describe(op).split()[:2])


def parent_id(m: Consistency, relation: RelationSpec, index: int) -> str:
    return Target(m.env.declaration.model(relation.target), index).id


def create(t: Target, parent: int | None) -> Op:
    """createX of a child (one besides those recreated before every step) naming, in each
    reference, the parent of index ``parent`` (none at all when None)."""

    async def run(m: Consistency) -> Any:
        values = required_values(t.model)
        for relation in t.model.parents:
            values.pop(relation.references, None)
            if parent is not None:
                values[relation.references] = parent_id(m, relation, parent)
        return await m.services.relations.create(m.access, t.model, values, record_id=t.id)

    run.__name__ = f"create {t.model.name} {t.id} naming {parent}"
    return run


def move(t: Target, relation: RelationSpec, to: int | None) -> Op:
    """updateX pointing a child's reference at the parent of index ``to`` (which may not exist),
    or at none."""

    async def run(m: Consistency) -> Any:
        if to is None:
            return await m.services.relations.update(
                m.access, t.model, t.id, set_values={}, unset=[relation.references]
            )
        named = {relation.references: parent_id(m, relation, to)}
        return await m.services.relations.update(m.access, t.model, t.id, set_values=named)

    run.__name__ = f"move {t.model.name} {t.id} to {to}"
    return run


def upload_file(t: FileTarget, choice: int) -> Op:
    """A client's own upload into a record's folder (uploadFile), adoptable later."""

    async def run(m: Consistency) -> Any:
        path = m.folder(t) + presigned_name(t.file, choice)
        return await m.services.storage.upload(m.access, path, upload(t.file))

    return run


def remove_file(t: Target, which: int) -> Op:
    """removeFile of a named object or of a presigned upload."""

    async def run(m: Consistency) -> Any:
        presigned = [presigned_name(f, i) for f in t.model.files for i in range(PRESIGNED)]
        candidates = [*(await m.named_by(t)), *(m.folder(t) + n for n in presigned)]
        return await m.services.storage.remove(m.access, candidates[which % len(candidates)])

    return run


def sweep() -> Op:
    async def run(m: Consistency) -> Any:
        return await m.services.sweeper.run(grace=timedelta(0))

    return run


def file_targets(declaration: Declaration, many: bool) -> st.SearchStrategy[FileTarget]:
    pairs = [(m, f) for m in declaration.models for f in m.files if f.many is many]
    return st.builds(
        lambda pair, index: FileTarget(pair[0], index, file=pair[1]),
        st.sampled_from(pairs),
        st.integers(0, RECORDS - 1),
    )


def indexes(model: ModelSpec) -> int:
    """How many records of ``model`` a step may touch: a child may be created besides those
    recreated before every step."""
    return RECORDS + EXTRA if model.parents else RECORDS


def targets_in(models: list[ModelSpec]) -> st.SearchStrategy[Target]:
    return st.sampled_from(models).flatmap(
        lambda model: st.builds(Target, st.just(model), st.integers(0, indexes(model) - 1))
    )


def parent_indexes(
    model: ModelSpec, relations: tuple[RelationSpec, ...]
) -> st.SearchStrategy[int | None]:
    """The parent a child names: one of those recreated, one past them (``RECORDS``: never
    there, or a child created in a step), or none where the references may be null."""
    indexes: st.SearchStrategy[int | None] = st.integers(0, RECORDS)
    if not any(model.field(r.references).type.required for r in relations):
        indexes = st.one_of(st.none(), indexes)
    return indexes


def relation_operations(declaration: Declaration) -> list[st.SearchStrategy[Op]]:
    """Creates of children naming a parent, moves of children to another parent (or none), and
    deletes of parents with and without their files: each as likely as a file workflow."""
    creates, moves = [], []
    for model in declaration.models:
        if not model.parents:
            continue
        new = st.builds(Target, st.just(model), st.integers(RECORDS, RECORDS + EXTRA - 1))
        creates.append(st.builds(create, new, parent_indexes(model, model.parents)))
        for relation in model.parents:
            to = parent_indexes(model, (relation,))
            moves.append(st.builds(move, targets_in([model]), st.just(relation), to))
    if not creates:
        return []
    parents = targets_in([m for m in declaration.models if m.children])
    return [
        st.one_of(creates),
        st.one_of(moves),
        st.builds(delete_record, parents, st.just(False)),
        st.builds(delete_record, parents, st.just(True)),
    ]


def operations(declaration: Declaration) -> st.SearchStrategy[Op]:
    """Every path that adopts or deletes an object, over every file field declared; every path
    that makes a record name a parent, or deletes one, over every relation declared."""
    targets = targets_in(list(declaration.models))
    with_files = targets_in([m for m in declaration.models if m.files])
    adoptable = st.one_of(st.none(), st.integers(0, PRESIGNED - 1))  # None: sent with the request
    ops = relation_operations(declaration)
    if has_files(declaration, many=False):
        ones = file_targets(declaration, False)
        ops.append(st.builds(attach, ones, adoptable, st.booleans()))
        ops.append(st.builds(detach, ones, st.booleans()))
    if has_files(declaration, many=True):  # the related set declares none
        manies = file_targets(declaration, True)
        ops.append(st.builds(add, manies, st.lists(adoptable, min_size=1, max_size=2)))
        ops.append(st.builds(replace, manies, st.integers(0, 5), adoptable, st.booleans()))
        ops.append(st.builds(remove, manies, st.integers(0, 5), st.booleans()))
    return st.one_of(
        *ops,
        st.builds(delete_record, targets, st.booleans()),
        st.builds(upload_file, any_file(declaration), st.integers(0, PRESIGNED - 1)),
        st.builds(remove_file, with_files, st.integers(0, 5)),
        st.builds(sweep),
    )


def has_files(declaration: Declaration, *, many: bool) -> bool:
    return any(f.many is many for m in declaration.models for f in m.files)


def any_file(declaration: Declaration) -> st.SearchStrategy[FileTarget]:
    kinds = [many for many in (False, True) if has_files(declaration, many=many)]
    return st.one_of(*(file_targets(declaration, many) for many in kinds))


Race = tuple[Op, Plan | None, Op, Plan | None]  # two operations, each with its fault


def races(declaration: Declaration) -> st.SearchStrategy[Race] | None:
    """A child written naming a parent (created, or moved to it) at once with that parent's
    delete: the race the record claims decide, drawn more often than ``operations`` would. The
    child's write makes few calls (the claim, the write, the release): its fault is aimed at one
    of them."""
    references = [(m, r) for m in declaration.models for r in m.parents]
    if not references:
        return None
    near: st.SearchStrategy[Plan | None] = st.builds(Plan, st.integers(1, 3), faults)
    faulted = plans(declaration)

    @st.composite
    def race(draw: st.DrawFn) -> Race:
        model, relation = draw(st.sampled_from(references))
        parent = draw(st.integers(0, RECORDS - 1))
        if draw(st.booleans()):
            new = Target(model, draw(st.integers(RECORDS, RECORDS + EXTRA - 1)))
            write = create(new, parent)
        else:
            write = move(Target(model, draw(st.integers(0, indexes(model) - 1))), relation, parent)
        gone = Target(declaration.model(relation.target), parent)
        delete = delete_record(gone, draw(st.booleans()))
        one, other = (write, draw(near)), (delete, draw(faulted))
        if draw(st.booleans()):  # which starts first
            one, other = other, one
        return (*one, *other)

    return race()


def plantings(declaration: Declaration) -> st.SearchStrategy[list[tuple[FileTarget, int]]]:
    """Clients' presigned uploads that land straight in S3, unchecked."""
    return st.lists(st.tuples(any_file(declaration), st.integers(0, PRESIGNED - 1)), max_size=3)


# Most operations make 2-8 such calls (a claim taken, an upload, a record write, a claim
# released, a delete...): a fault lands on each of them in turn.
# Or a fault aimed at one kind of call, where faults matter most.
TARGETS = (
    "MongoDB insert_one",  # a claim taken, a record created
    "MongoDB find_one_and_update",  # a record write, an expired claim taken over
    "MongoDB delete_many",  # claims released
    "S3 upload",
    "S3 head",
    "S3 delete_many",
)
# With relations, a delete makes many more calls (a claim per parent in a cascade, a delete or
# an update per child): faults reach further, and aim at the second or third call of a kind too.
RELATION_TARGETS = (
    "MongoDB find_one_and_delete",  # a record deleted: a child in a cascade, then its parent
    "MongoDB find_one",  # a parent checked before a child names it, a record read before its delete
    "MongoDB find",  # children looked up (to deal with them, or for a restrict below a cascade)
    "MongoDB count",  # a restrict's children counted
)
faults = st.sampled_from(Fault)


def plans(declaration: Declaration) -> st.SearchStrategy[Plan | None]:
    if not any(m.parents for m in declaration.models):
        return st.one_of(
            st.none(),
            st.builds(Plan, st.integers(1, 5), faults),
            st.builds(Plan, st.just(1), faults, st.sampled_from(TARGETS)),
        )
    return st.one_of(
        st.none(),
        st.builds(Plan, st.integers(1, 8), faults),
        st.builds(Plan, st.integers(1, 3), faults, st.sampled_from(TARGETS + RELATION_TARGETS)),
    )


# --- the machine -------------------------------------------------------------------------------


@dataclass
class Environment:
    loop: asyncio.AbstractEventLoop
    s3_endpoint: str
    declaration: Declaration
    examples: int = 0
    steps: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class Consistency(RuleBasedStateMachine):
    """The invariants, for any declaration; ``machine`` adds the rule, drawn from its models."""

    def __init__(self, env: Environment) -> None:
        super().__init__()
        self.env = env
        env.examples += 1
        self.stack = AsyncExitStack()
        self.services: Services = self.run(self.open())
        user = User("tester", frozenset(), None)
        self.access = Access(self.services.policy, Principal(api_key="static", user=user))
        self.versions: dict[tuple[str, str], tuple[str, int]] = {}
        self.last_step = "none"
        self.clock_offset = timedelta(0)
        for claims in (self.services.storage.claims, self.services.relations.claims):
            real_clock = claims.clock
            claims.clock = lambda real_clock=real_clock: real_clock() + self.clock_offset
        self.run(self.recreate_deleted())

    def run(self, awaitable: Awaitable[Any]) -> Any:
        return self.env.loop.run_until_complete(awaitable)

    async def open(self) -> Services:
        bucket = self.stack.enter_context(stores.current().buckets.lease())
        settings = make_settings(self.env.s3_endpoint, bucket, claim_wait=0.2)
        services = open_services(settings, self.env.declaration)
        return await self.stack.enter_async_context(services)

    def teardown(self) -> None:
        self.run(self.stack.aclose())
        close_spools()

    def folder(self, t: Target) -> str:
        return self.services.attachments.folder(t.model, t.id)

    async def recreate_deleted(self) -> None:
        """Every record of index below ``RECORDS``, parents first: a child ``c{i}`` names the
        parent ``p{i}``, or ``p0`` when the parent's relation is a restrict (``p1`` can go)."""
        for model in parents_first(self.env.declaration):
            for index in range(RECORDS):
                t = Target(model, index)
                if await self.services.records.find(model, t.id) is not None:
                    continue
                values = required_values(model)
                for relation in model.parents:
                    kept = self.restricts(relation)
                    values[relation.references] = parent_id(self, relation, 0 if kept else index)
                # refused: its parent is gone, or busy (a crashed delete holds its claim)
                with contextlib.suppress(DomainError):
                    await self.services.relations.create(
                        full_access(self.services), model, values, record_id=t.id
                    )

    def restricts(self, relation: RelationSpec) -> bool:
        """Whether the parent's side of a child's ``relation`` is a restrict."""
        parent = self.env.declaration.model(relation.target)
        return any(
            r.on_delete == "restrict"
            for r in parent.children
            if r.target == relation.source and r.references == relation.references
        )

    async def named_by(self, t: Target) -> list[str]:
        """What the record names: in ``t``'s file field, or in all of them."""
        try:
            record = await self.services.records.get(full_access(self.services), t.model, t.id)
        except DomainError:
            return []
        return list(record.paths_of(t.file) if isinstance(t, FileTarget) else record.file_paths)

    def two_at_once(
        self,
        first: Op,
        second: Op,
        plan1: Plan | None,
        plan2: Plan | None,
        plant: list[tuple[FileTarget, int]],
    ) -> None:
        self.run(self.recreate_deleted())  # deleting is tested; a deleted record stops nothing
        for target, index in plant:  # clients' presigned uploads land (straight in S3, unchecked)
            data, content_type, _ = sample_file(target.file)
            path = self.folder(target) + presigned_name(target.file, index)
            self.run(put_object(self.services, path, data, content_type=content_type))

        async def with_plan(op: Op, plan: Plan | None) -> object:
            PLAN.set(plan)
            return await op(self)

        async def both() -> tuple[object, object]:
            return await asyncio.gather(
                with_plan(first, plan1), with_plan(second, plan2), return_exceptions=True
            )

        results = self.run(both())
        # deletions after the answer carry their operation's plan (a task copies the context)
        self.run(self.services.background.drain())
        if IN_FLIGHT:  # what the lost calls still do lands within the lease's margin
            self.run(asyncio.wait(IN_FLIGHT))
            IN_FLIGHT.clear()
        close_spools()
        self.env.steps += 1
        for plan in (plan1, plan2):
            if plan is not None:
                STATS[f"plans {'that struck' if plan.calls >= plan.at else 'not reached'}"] += 1
        done = []
        for op, plan, result in zip((first, second), (plan1, plan2), results, strict=True):
            reason = ""
            if isinstance(result, DomainError) and "claims:" in str(result):
                raise result  # the claims' own bookkeeping is never the answer
            if isinstance(result, DomainError):
                outcome = result.code
                reason = f" {result.extra['reason']}" if "reason" in result.extra else ""
            elif isinstance(result, Crash | asyncio.CancelledError):
                outcome = type(result).__name__
            elif isinstance(result, BaseException):
                raise result  # a bug: anything else is not an answer
            else:
                outcome = "ok"
            self.env.outcomes[outcome] += 1
            STATS[f"{kind(op)}: {outcome}{reason}"] += 1
            done.append(f"{describe(op)} ({plan}): {outcome}{reason}")
        # a race may not happen again when hypothesis replays it: what the last step did
        self.last_step = " at once with ".join(done)

    @invariant()
    def no_record_names_a_missing_object(self) -> None:
        self.run(self.check_named_objects_exist())

    @invariant()
    def no_record_names_a_missing_parent(self) -> None:
        self.run(self.check_parents_exist())

    @invariant()
    def versions_only_grow(self) -> None:
        for model in self.env.declaration.models:
            for index in range(indexes(model)):
                t = Target(model, index)
                try:
                    record = self.run(
                        self.services.records.get(full_access(self.services), model, t.id)
                    )
                except DomainError:
                    continue
                key = (model.name, t.id)
                created, version = self.versions.get(key, (record.created_at, 0))
                if created == record.created_at:
                    assert record.version >= version, (
                        f"{key} went from v{version} to v{record.version}"
                    )
                self.versions[key] = (record.created_at, record.version)

    @invariant()
    def a_sweep_leaves_exactly_the_named_objects(self) -> None:
        # every claim's lease runs out: what crashed or timed-out work left claimed is free
        leases = (self.services.storage.claims.lease, self.services.relations.claims.lease)
        self.clock_offset += max(leases) + timedelta(seconds=1)
        report = self.run(self.services.sweeper.run(grace=timedelta(0)))
        assert report.busy == 0, "a sweep with every lease run out found a claimed object"
        assert report.dangling == [], report.dangling
        self.run(self.check_named_objects_exist())
        named = self.run(self.all_named())
        stored = self.run(self.all_stored())
        assert stored == named, f"orphans left: {sorted(stored - named)}"
        claims = self.services.database.collection("record_claims")
        left = self.run(claims.count({}))
        assert left == 0, f"{left} record claims outlived their lease and the sweep"
        self.run(self.check_parents_exist())

    async def check_parents_exist(self) -> None:
        """Every reference that is not null names a record of its model, whoever owns it."""
        declaration = self.env.declaration
        dangling = []
        for model in declaration.models:
            for relation in model.parents:
                parent = declaration.model(relation.target)
                ids = await self.stored_ids(parent)
                for doc in await self.stored(model):
                    named = doc.get(relation.references)
                    if named is not None and named not in ids:
                        dangling.append(f"{model.name} {doc['_id']} -> {parent.name} {named}")
        assert dangling == [], f"records name missing parents: {dangling}; after {self.last_step}"

    async def stored(self, model: ModelSpec) -> list[dict[str, Any]]:
        return [doc async for doc in self.services.records.collection(model).iterate({})]

    async def stored_ids(self, model: ModelSpec) -> set[str]:
        return {doc["_id"] for doc in await self.stored(model)}

    async def check_named_objects_exist(self) -> None:
        """Every object a record names exists, and so does every variant its file field
        declares of it (their URLs open)."""
        named = sorted(await self.all_named())
        found = await self.services.files.head_many(named)
        missing = [p for p, info in zip(named, found, strict=True) if info is None]
        assert missing == [], f"records name missing objects (or variants): {missing}"

    async def all_named(self) -> set[str]:
        """What records name, with the variants each file field declares of its images."""
        paths: set[str] = set()
        for model in self.env.declaration.models:
            for doc in await self.stored(model):
                for file in model.files:
                    value = doc.get(file.key_field)
                    named = value if isinstance(value, list) else [value] if value else []
                    paths.update(named)
                    paths.update(
                        key_of(v, p) for p in named if image_format_of(p) for v in file.variants
                    )
        return paths

    async def all_stored(self) -> set[str]:
        return {o.path async for o in self.services.files.iterate("images/")}


def parents_first(declaration: Declaration) -> list[ModelSpec]:
    """The models, each after the models its records name."""
    ordered: list[ModelSpec] = []
    left = list(declaration.models)
    while left:
        ready = [
            m for m in left if {r.target for r in m.parents} <= {o.name for o in [*ordered, m]}
        ]
        ordered += ready or left  # models naming each other: in any order
        left = [m for m in left if m not in ordered]
    return ordered


def machine(declaration: Declaration) -> type[Consistency]:
    """The state machine for ``declaration``: two operations at a time, over all its models;
    with relations, as often a child's write racing its parent's delete."""
    steps = operations(declaration)
    faulted = plans(declaration)
    racing = races(declaration)

    class ForDeclaration(Consistency):
        @rule(
            first=steps,
            second=steps,
            plan1=faulted,
            plan2=faulted,
            plant=plantings(declaration),
        )
        def step(
            self,
            first: Op,
            second: Op,
            plan1: Plan | None,
            plan2: Plan | None,
            plant: list[tuple[FileTarget, int]],
        ) -> None:
            self.two_at_once(first, second, plan1, plan2, plant)

        if racing is not None:

            @rule(race=racing, plant=plantings(declaration))
            def race(self, race: Race, plant: list[tuple[FileTarget, int]]) -> None:
                first, plan1, second, plan2 = race
                self.two_at_once(first, second, plan1, plan2, plant)

    return ForDeclaration


@pytest.mark.parametrize(
    "declaration", [BUILTIN, DECLARED, RELATED], ids=["built-in", "declared", "related"]
)
def test_the_promise_holds_under_concurrency_and_faults(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, declaration: Declaration
) -> None:
    inject_faults(monkeypatch)
    STATS.clear()
    loop = asyncio.new_event_loop()
    env = Environment(loop, s3_endpoint, declaration)
    machine_type = machine(declaration)
    try:
        run_state_machine_as_test(
            # hypothesis annotates this type[RuleBasedStateMachine]; its docstring (and its code)
            # take any callable that returns a machine
            lambda: machine_type(env),  # type: ignore[arg-type]
            settings=settings(
                max_examples=30,
                stateful_step_count=12,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        loop.close()
    faults = sum(n for k, n in STATS.items() if k.startswith("fault"))
    for key, count in sorted(STATS.items()):
        print(f"  {key}: {count}")
    print(
        f"\nexplored {env.examples} examples, {env.steps} concurrent steps, "
        f"{faults} faults injected; outcomes {dict(env.outcomes)}"
    )
    assert env.steps > 0
    assert faults > 0
