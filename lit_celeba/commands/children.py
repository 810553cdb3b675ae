"""The processes one ``compare`` starts (its fits, tests and the reading of its configurations):
each in a session of its own, so that a Ctrl-C in the terminal reaches compare, which stops them
all, rather than each separately; each dies with compare however compare dies
(``PR_SET_PDEATHSIG``: :func:`lit_celeba.base.processes.die_with_starter`); and each keeps the lock
on ``--out`` (its descriptor is passed on), so that no second compare writes there while any of them
still runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lit_celeba.base.processes import PARENT_ENV
from lit_celeba.callbacks.progress import PREFIX

STOP_GRACE_S = 5.0  # how long stopped runs get to end on SIGTERM before SIGKILL


class Stopped(BaseException):
    """compare was stopped by a signal; its runs have been stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Children:
    """The processes one comparison starts: started here, each in a session of its own, and
    stopped together by :meth:`stop` (on compare's SIGINT, SIGTERM or SIGHUP)."""

    def __init__(self, keep_fds: Sequence[int] = ()) -> None:
        self.keep_fds = tuple(keep_fds)
        self.stopping = False
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()

    def run(
        self,
        command: list[str],
        log: Path | None,
        env: dict[str, str],
        on_line: Callable[[str], None] | None = None,
    ) -> tuple[int, float, bytes]:
        """Run ``command`` with its output (stdout and stderr) in ``log``, passing each line it
        prints after :data:`PREFIX` to ``on_line``; its exit status, wall-clock seconds, and its
        output when there is no log."""
        start = time.perf_counter()
        with self._lock:
            if self.stopping:
                raise Stopped(signal.SIGTERM)
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**env, PARENT_ENV: str(os.getpid())}, start_new_session=True,
                pass_fds=self.keep_fds,
            )  # fmt: skip
            self._running.add(process)
        output = b""
        try:
            with open(log or os.devnull, "wb") as stream:
                for line in process.stdout:
                    stream.write(line)
                    output = output + line if log is None else output
                    if on_line is not None and PREFIX.encode() in line:
                        text = line.decode(errors="replace").rsplit(PREFIX, 1)[1]
                        on_line(text.strip())
            status = process.wait()
        finally:
            with self._lock:
                self._running.discard(process)
        return status, time.perf_counter() - start, output

    def stop(self) -> None:
        """SIGTERM to every running process and what it started, then SIGKILL to whatever is
        left after :data:`STOP_GRACE_S`."""
        with self._lock:
            self.stopping = True
            running = list(self._running)
        for process in running:
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            _signal_group(process, signal.SIGKILL)  # also what it started and left behind


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)  # its session's group: the process and what it started


@contextlib.contextmanager
def stopping_children_on_signals(children: Children) -> Iterator[None]:
    """While in the block, SIGINT, SIGTERM and SIGHUP stop ``children`` and raise
    :class:`Stopped` (in the main thread; elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        children.stop()
        raise Stopped(signum)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def child_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int | None:
    """The CPU threads each of ``jobs`` runs at once may use, or ``None`` to leave torch's
    default: each run's torch would otherwise use every core. ``--jobs 3`` on 2 cores (tuned.yaml,
    7,000 real faces, other work running beside) took 261 s an epoch that way, and 45 s with
    OMP_NUM_THREADS=1."""
    if jobs < 2 or "OMP_NUM_THREADS" in os.environ:
        return None  # one run at a time, or the user's own choice
    return max(1, cpu_cores() // jobs)


def job_environment(jobs: int, slot: int, devices: list[str] | None) -> dict[str, str]:
    """The environment of the run in ``slot``: its GPU with ``--devices``, else its share of
    the CPU cores."""
    env = child_environment()
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
    elif (threads := threads_per_job(jobs)) is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env
