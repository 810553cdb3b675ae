"""Files written whole or not at all: the one atomic write of lit_celeba.

A file is written to a temporary ``.NAME.PID.RANDOM.tmp`` beside it (created exclusively: never
through someone else's file), flushed and fsynced, then renamed over the target (``os.replace``,
atomic on POSIX and Windows) and the folder fsynced: a run stopped at any moment leaves the
earlier file whole or the new one, never half of either. Temporaries that a killed writer left
are removed by the next write of the same file (their writer's process id is gone). What is
several files or a folder (the demo set, an export) is built the same way, in a hidden
:func:`building_folder` beside its target that the next build removes once its process is gone.

Python's ``tempfile`` and Lightning's fsspec transaction write the temporary elsewhere (the
system's temporary folder) and move it, which across file systems is a copy into the target
itself (``checkpoints/atomic_io.py`` says what that did to a checkpoint); neither fsyncs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lit_celeba.base.processes import process_alive

# A file name may have 255 bytes; the temporary adds up to 30 characters to the target's.
_NAME_KEPT = 200


def temporary_path(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place:
    ``.NAME.PID.RANDOM.tmp`` beside it (NAME cut to its first 200 characters)."""
    return path.with_name(f".{path.name[:_NAME_KEPT]}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale_temporaries(path: Path) -> None:
    """The :func:`temporary_path` files of ``path`` whose writer no longer runs."""
    name = path.name[:_NAME_KEPT]
    pattern = re.compile(rf"^\.{re.escape(name)}\.(\d+)\.[0-9a-f]+\.tmp$")
    for leftover in path.parent.glob(f".{glob.escape(name)}.*.tmp"):
        match = pattern.match(leftover.name)
        if match and not process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                leftover.unlink()


def building_folder(target: Path, stage: str = "partial") -> Path:
    """Where this process builds what goes to ``target`` before it moves it there:
    ``.NAME.STAGE-PID-RANDOM`` beside it (``partial`` while built, ``old`` for what it swaps
    out); :func:`remove_abandoned_folders` removes it once its process has ended."""
    return target.with_name(
        f".{target.name[:_NAME_KEPT]}.{stage}-{os.getpid()}-{secrets.token_hex(4)}"
    )


def remove_abandoned_folders(target: Path) -> None:
    """The :func:`building_folder` folders of ``target`` whose process has ended (killed while
    it built, or while it swapped an older one out)."""
    name = target.name[:_NAME_KEPT]
    pattern = re.compile(rf"^\.{re.escape(name)}\.[a-z]+-(\d+)-[0-9a-f]+$")
    for leftover in target.parent.glob(f".{glob.escape(name)}.*"):
        match = pattern.match(leftover.name)
        if match and leftover.is_dir() and not process_alive(int(match.group(1))):
            shutil.rmtree(leftover, ignore_errors=True)


def create_exclusive(path: Path) -> int:
    """A new file's descriptor, opened for writing; an existing ``path`` is refused (O_EXCL).
    0o666 lets the umask decide, as for any other file the user creates."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def fsync_folder(folder: Path) -> None:
    """Makes a rename in ``folder`` durable; not possible (nor needed) on every platform."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_write(
    path: Path, mode: str = "w", *, fsync: bool = True, **open_args: Any
) -> Iterator[IO[Any]]:
    """An open file (``mode`` "w" or "wb"; ``open_args`` as for :func:`open`, e.g. ``newline``)
    whose content replaces ``path`` whole when the ``with`` block ends without an error, and is
    thrown away when it raises. ``fsync=False`` for a file whose loss in a system crash its
    reader detects (a digest) and rebuilds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes a file whole: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        with os.fdopen(create_exclusive(temporary), mode, **open_args) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(temporary, path)
    finally:
        # Only a temporary that was made is removed; the error that stopped the write is the one
        # the caller sees, not one from the clean-up.
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    if fsync:
        fsync_folder(path.parent)
    remove_stale_temporaries(path)
