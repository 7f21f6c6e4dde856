"""Child processes the server runs beside itself: the embedded stores (``embedded``).

A child is started on loopback ports chosen for it, waited for until it answers, and stopped
after the app (SIGTERM, then SIGKILL past a grace period). It never outlives the server: on
Linux it is started with ``PR_SET_PDEATHSIG``, so the kernel kills it when the server dies,
however it dies (SIGKILL and crashes included). That signal follows the *thread* that started
the child, so children are started from the event loop's thread, never from a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
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


async def port_answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class ChildProcess:
    """One program run beside the server, its output appended to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self._log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start it (from the event loop's thread: see the module's docstring)."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as output:
            output.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting\n".encode())
            output.flush()
            try:
                self._process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                    self._argv,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    cwd=self._cwd,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            except OSError as exc:
                raise StartupError(f"could not start {self.name}: {exc}") from exc

    async def wait_ready(self, ready: Callable[[], Awaitable[bool]], *, within: float) -> None:
        """Poll ``ready()`` until it holds; ``StartupError`` (with the end of the child's log)
        if the child exits first or ``within`` seconds pass."""
        assert self._process is not None, "start() first"
        deadline = time.monotonic() + within
        while True:
            if self._process.poll() is not None:
                raise StartupError(
                    f"{self.name} exited with status {self._process.returncode} while starting"
                    f"{self._log_tail()}"
                )
            if await ready():
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
