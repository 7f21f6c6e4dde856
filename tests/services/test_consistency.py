"""Hunting for a counter-example to the promise: no record names a missing object, no version
goes back, and the sweeper neither deletes a named object nor leaves an orphan behind.

A hypothesis state machine runs two operations at a time, concurrently, drawn from every path
that adopts or deletes an object: the record-file workflows, uploads and removeFile, deleteX
with deleteFiles, and the sweeper (grace 0). Each operation may get one fault, at any of its S3
calls or MongoDB writes, before or after the call took effect:

- an error (the driver's refusal, or an answer lost after the effect happened);
- a cancellation (a deadline, a client gone): the code's own clean-up still runs;
- a crash: the operation's process is gone, so nothing it does afterwards reaches S3 or
  MongoDB; its claims stay until their lease runs out.

After every step the invariants are checked; then every claim's lease is run out (the claims'
clock moved forward) and a sweep with grace 0 must leave exactly the named objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from graphql_files.adapters.mongo import Collection
from graphql_files.adapters.s3 import Files
from graphql_files.domain.declaration import BUILTIN, Declaration
from graphql_files.domain.models import FileSpec, ModelSpec
from graphql_files.errors import DatabaseUnavailable, DomainError, StorageUnavailable
from graphql_files.services.attachments import Source
from graphql_files.services.auth import Access, Principal, User
from graphql_files.services.storage import Upload
from graphql_files.services.wiring import Services, open_services

from .. import stores
from ..declared import DECLARED, required_values, sample_file
from ..helpers import full_access, make_settings, put_object

RECORDS = 2  # per model: few, so operations collide
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
IN_FLIGHT: set[asyncio.Task[Any]] = set()  # late calls; each lands before the step ends


async def land_late(call: Awaitable[Any]) -> None:
    await asyncio.sleep(0.02)  # the fault is the delay itself: the call lands after its answer
    with contextlib.suppress(DomainError):  # a refused write changes nothing
        await call


def injecting(
    name: str, method: Callable[..., Awaitable[Any]], error: Callable[[str], Exception]
) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        plan = PLAN.get()
        if plan is None:
            return await method(*args, **kwargs)
        if plan.crashed:
            raise Crash
        if plan.target in (None, name):
            plan.calls += 1
        if plan.target not in (None, name) or plan.calls != plan.at:
            return await method(*args, **kwargs)
        if plan.fault is Fault.LATE:
            IN_FLIGHT.add(asyncio.ensure_future(land_late(method(*args, **kwargs))))
        elif plan.fault.after:
            await method(*args, **kwargs)
        STATS[f"fault: {plan.fault.value} {name}"] += 1
        event(f"fault: {plan.fault.value} {name}")
        if plan.fault in (Fault.ERROR_BEFORE, Fault.ERROR_AFTER, Fault.LATE):
            raise error(f"injected: {plan.fault.value} {name}")
        if plan.fault in (Fault.CANCEL_BEFORE, Fault.CANCEL_AFTER):
            raise asyncio.CancelledError
        plan.crashed = True
        raise Crash

    return call


S3_CALLS = ("head", "read_start", "read_into", "list_page", "upload", "delete", "delete_many")
MONGODB_WRITES = ("insert_one", "find_one_and_update", "find_one_and_delete", "delete_many")


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


# --- operations --------------------------------------------------------------------------------

Op = Callable[["Consistency"], Awaitable[Any]]


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

    async def spool(self) -> io.BytesIO:
        return io.BytesIO(self.data[self.position :])

    async def check_rest(self) -> None:
        pass  # the whole body has arrived, and it is sound


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
    async def run(m: Consistency) -> Any:
        return await m.services.attachments.delete_record(
            m.access, t.model, t.id, delete_files=delete_files
        )

    return run


def create(t: Target) -> Op:
    async def run(m: Consistency) -> Any:
        return await m.services.records.create(
            full_access(m.services), t.model, required_values(t.model), record_id=t.id
        )

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


def operations(declaration: Declaration) -> st.SearchStrategy[Op]:
    """Every path that adopts or deletes an object, over every file field declared."""
    targets = st.builds(Target, st.sampled_from(declaration.models), st.integers(0, RECORDS - 1))
    ones, manies = file_targets(declaration, False), file_targets(declaration, True)
    anything = st.one_of(file_targets(declaration, False), manies)
    adoptable = st.one_of(st.none(), st.integers(0, PRESIGNED - 1))  # None: sent with the request
    return st.one_of(
        st.builds(attach, ones, adoptable, st.booleans()),
        st.builds(detach, ones, st.booleans()),
        st.builds(add, manies, st.lists(adoptable, min_size=1, max_size=2)),
        st.builds(replace, manies, st.integers(0, 5), adoptable, st.booleans()),
        st.builds(remove, manies, st.integers(0, 5), st.booleans()),
        st.builds(delete_record, targets, st.booleans()),
        st.builds(upload_file, anything, st.integers(0, PRESIGNED - 1)),
        st.builds(remove_file, targets, st.integers(0, 5)),
        st.builds(sweep),
    )


def plantings(declaration: Declaration) -> st.SearchStrategy[list[tuple[FileTarget, int]]]:
    """Clients' presigned uploads that land straight in S3, unchecked."""
    anything = st.one_of(file_targets(declaration, False), file_targets(declaration, True))
    return st.lists(st.tuples(anything, st.integers(0, PRESIGNED - 1)), max_size=3)


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
faults = st.sampled_from(Fault)
plans = st.one_of(
    st.none(),
    st.builds(Plan, st.integers(1, 5), faults),
    st.builds(Plan, st.just(1), faults, st.sampled_from(TARGETS)),
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
        self.clock_offset = timedelta(0)
        real_clock = self.services.storage.claims.clock
        self.services.storage.claims.clock = lambda: real_clock() + self.clock_offset
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

    def folder(self, t: Target) -> str:
        return self.services.attachments.folder(t.model, t.id)

    async def recreate_deleted(self) -> None:
        for model in self.env.declaration.models:
            for index in range(RECORDS):
                with contextlib.suppress(DomainError):  # it exists
                    await create(Target(model, index))(self)

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
        self.env.steps += 1
        for plan in (plan1, plan2):
            if plan is not None:
                STATS[f"plans {'that struck' if plan.calls >= plan.at else 'not reached'}"] += 1
        for result in results:
            if isinstance(result, DomainError):
                self.env.outcomes[result.code] += 1
            elif isinstance(result, Crash | asyncio.CancelledError):
                self.env.outcomes[type(result).__name__] += 1
            elif isinstance(result, BaseException):
                raise result  # a bug: anything else is not an answer
            else:
                self.env.outcomes["ok"] += 1

    @invariant()
    def no_record_names_a_missing_object(self) -> None:
        self.run(self.check_named_objects_exist())

    @invariant()
    def versions_only_grow(self) -> None:
        for model in self.env.declaration.models:
            for index in range(RECORDS):
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
        self.clock_offset += self.services.storage.claims.lease + timedelta(seconds=1)
        report = self.run(self.services.sweeper.run(grace=timedelta(0)))
        assert report.busy == 0, "a sweep with every lease run out found a claimed object"
        assert report.dangling == [], report.dangling
        self.run(self.check_named_objects_exist())
        named = self.run(self.all_named())
        stored = self.run(self.all_stored())
        assert stored == named, f"orphans left: {sorted(stored - named)}"

    async def check_named_objects_exist(self) -> None:
        named = sorted(await self.all_named())
        found = await self.services.files.head_many(named)
        missing = [p for p, info in zip(named, found, strict=True) if info is None]
        assert missing == [], f"records name missing objects: {missing}"

    async def all_named(self) -> set[str]:
        paths: set[str] = set()
        for model in self.env.declaration.models:
            async for _, named in self.services.records.iterate_paths(model):
                paths.update(named)
        return paths

    async def all_stored(self) -> set[str]:
        return {o.path async for o in self.services.files.iterate("images/")}


def machine(declaration: Declaration) -> type[Consistency]:
    """The state machine for ``declaration``: two operations at a time, over all its models."""
    steps = operations(declaration)

    class ForDeclaration(Consistency):
        @rule(
            first=steps,
            second=steps,
            plan1=plans,
            plan2=plans,
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

    return ForDeclaration


@pytest.mark.parametrize("declaration", [BUILTIN, DECLARED], ids=["built-in", "declared"])
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
