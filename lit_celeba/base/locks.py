"""A file lock that says whom it waits for: ``filelock``'s, with the waiting reported.

The kernel releases a ``filelock.FileLock`` (a ``flock`` on Unix) when its holder dies, even by
SIGKILL, and filelock closes the lock's descriptor in every process forked while it is held (an
``os.register_at_fork`` hook), so a child that outlives a killed parent does not keep it. What
filelock lacks: its wait says nothing, however long; :func:`held` waits in turns, says every
``WAIT_REPORT_EVERY_S`` which process holds the lock (its pid is written into the lock file) and
gives up after a limit with a message that names the file and the holder.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from lit_celeba.base.errors import CelebAError, LitCelebaError
from lit_celeba.base.processes import process_alive

WAIT_REPORT_EVERY_S = 30.0  # how often a waiting process says that it still waits


@contextmanager
def held(
    lock_path: Path,
    wait_limit_s: float,
    doing: str,
    advice: str,
    unwritable: Callable[[Path, OSError], LitCelebaError],
) -> Iterator[None]:
    """Hold ``lock_path``'s lock for the ``with`` block. While another process holds it, say so
    (``doing``: what the holder does, for the message) and give up after ``wait_limit_s`` with
    ``advice``; a folder where the lock cannot be written raises ``unwritable(folder, err)``."""
    lock = FileLock(lock_path, on_acquired=_write_holder)
    try:
        _acquire(lock, lock_path, wait_limit_s, doing, advice)
    except OSError as err:
        raise unwritable(lock_path.parent, err) from None
    try:
        yield
    finally:
        lock.release()


def _write_holder(fd: int) -> None:
    """Who holds the lock, for the message of a process that waits (filelock's
    ``on_acquired``)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _acquire(lock: FileLock, lock_path: Path, wait_limit_s: float, doing: str, advice: str):
    start = time.monotonic()
    turn = 0.0  # the first try does not wait: a process that must wait says so at once
    while True:
        try:
            lock.acquire(timeout=turn, poll_interval=0.2)
            return
        except Timeout:
            pass
        waited = time.monotonic() - start
        if waited >= wait_limit_s:
            raise CelebAError(
                f"Gave up after waiting {waited:.0f} s for the lock {lock_path}, held by "
                f"{holder(lock_path)}. If no other lit_celeba run holds it, end that process; "
                f"or {advice}."
            )
        print(
            f"Waiting for the lock {lock_path}, held by {holder(lock_path)} {doing}; waited "
            f"{waited:.0f} s (giving up after {wait_limit_s:.0f} s).",
            file=sys.stderr,
            flush=True,
        )
        turn = min(WAIT_REPORT_EVERY_S, wait_limit_s - waited)


def holder(lock_path: Path) -> str:
    """The process that holds (or last held) ``lock_path``, in words."""
    try:
        pid = int(lock_path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "another process"
    if process_alive(pid):
        return f"process {pid}"
    return f"process {pid}, which has ended (a process it started may still hold the lock)"
