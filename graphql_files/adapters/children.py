"""Child processes the server runs beside itself: the embedded stores (``embedded``).

A child is started on loopback ports chosen for it, waited for until it answers, and stopped
after the app (SIGTERM, then SIGKILL past a grace period). It never outlives the server: on
Linux it is started with ``PR_SET_PDEATHSIG``, so the kernel kills it when the server dies,
however it dies (SIGKILL and crashes included). That signal follows the *thread* that started
the child, so children are started from the event loop's thread, never from a worker thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import inspect
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from ..errors import StartupError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
STOP_SECONDS = 15.0  # a store given SIGTERM flushes its data; past this it is killed
START_ATTEMPTS = 3


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` right now (held open together while they are
    chosen, so none is picked twice)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            probe = socket.socket()
            held.append(probe)
            probe.bind((host, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for probe in held:
            probe.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, between fork and exec
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on TCP ``port`` (Linux: /proc). A port that
    merely answers may be another process's: ports are chosen free, then bound by the child a
    moment later, and anyone may take one in between."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rpartition(":")[2], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return False
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(descriptor) in inodes:
                return True
        except OSError:
            continue
    return False


class ChildProcess:
    """One program run beside the server, its output appended to ``log_path``.

    ``command()`` gives its command line, called afresh for each start: it chooses the free
    ports the program is told to listen on, and a port chosen free may be taken before the
    program binds it (by any process starting at the same moment). The program then exits
    while starting, and ``start`` tries again with new ports, up to ``START_ATTEMPTS`` times."""

    def __init__(
        self,
        name: str,
        command: Callable[[], Sequence[str]],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self._command = command
        self._log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self, ready: Callable[[int], bool | Awaitable[bool]], *, within: float) -> None:
        """Start it (from the event loop's thread: see the module's docstring) and wait until
        ``ready(pid)`` holds; ``StartupError`` (with the end of its log) if it never does."""
        for attempt in range(1, START_ATTEMPTS + 1):
            self._spawn()
            try:
                await self._wait_ready(ready, within=within)
                return
            except _Exited as exited:
                if attempt == START_ATTEMPTS:
                    raise StartupError(str(exited)) from None
                log.info("%s; starting it again on other ports", exited)

    def _spawn(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as output:
            output.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting\n".encode())
            output.flush()
            try:
                self._process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                    list(self._command()),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    cwd=self._cwd,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            except OSError as exc:
                raise StartupError(f"could not start {self.name}: {exc}") from exc

    async def _wait_ready(
        self, ready: Callable[[int], bool | Awaitable[bool]], *, within: float
    ) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + within
        while True:
            if process.poll() is not None:
                raise _Exited(
                    f"{self.name} exited with status {process.returncode} while starting"
                    f"{self._log_tail()}"
                )
            answer = ready(process.pid)
            if await answer if inspect.isawaitable(answer) else answer:
                return
            if time.monotonic() > deadline:
                await self.stop()
                raise StartupError(
                    f"{self.name} did not answer within {within:g}s{self._log_tail()}"
                )
            await asyncio.sleep(0.05)

    async def stop(self, grace: float = STOP_SECONDS) -> None:
        """SIGTERM, then SIGKILL if it is still running after ``grace`` seconds."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), grace)
        except TimeoutError:
            log.warning("%s did not stop within %gs of SIGTERM: killed", self.name, grace)
            process.kill()
            await asyncio.to_thread(process.wait)

    def _log_tail(self, lines: int = 5) -> str:
        """The last lines the child printed, for an error that says why it did not start."""
        try:
            text = self._log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        shown = " | ".join(line.strip() for line in text if line.strip())
        return f" (its log {self._log_path}: {shown})" if shown else ""


class _Exited(Exception):
    """The child ended while starting (a port it was given taken meanwhile, most likely)."""
