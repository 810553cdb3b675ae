"""Writing the decoded cache (:mod:`lit_celeba.data.cache`) safely beside other processes.

A build that is killed (SIGTERM, SIGKILL, Ctrl-C) must not block the next one: the lock is
``filelock``'s, which closes its copy in the forked decoder processes, the decoders die with their
parent (:func:`decoder_init`), temporaries nobody is building any more are removed
(:func:`remove_abandoned_temporaries`), and a run that waits for another's build says for whom and
how long, and gives up after ``cache.LOCK_WAIT_LIMIT_S``. A cache file that is damaged (truncated,
header changed) is found by its header and size (:func:`damage_of`), named, and rebuilt. Blocks
are reserved before the memory-mapped write (:func:`allocate`), and a folder that cannot take the
file is named with what to do (:func:`write_failure`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout

from lit_celeba.base.errors import CelebAError, LitCelebaError, UsageError
from lit_celeba.base.processes import pool_worker_init

LOCK_ADVICE = "choose another folder with --data.cache_dir, or set --data.cache false"


def unwritable(cache_dir: Path, err: OSError) -> UsageError:
    reason = err.strerror or str(err)
    return UsageError(
        f"Cannot write the decoded-image cache in {cache_dir}: {reason}. Choose a writable folder "
        "with --data.cache_dir, or set --data.cache false to decode the JPEGs on the fly."
    )


def damage_of(path: Path, shape: tuple[int, ...]) -> str | None:
    """Why ``path`` is not a complete cache of ``shape`` (uint8, C order), or None if it is."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            found_shape, fortran, dtype = read_header(fh)
            offset, size = fh.tell(), os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as err:
        return f"unreadable header: {err}"
    if tuple(found_shape) != tuple(shape) or dtype != np.uint8 or fortran:
        return f"holds {tuple(found_shape)} {dtype}, expected {tuple(shape)} uint8"
    expected = offset + int(np.prod(shape))
    if size != expected:
        return f"{size} bytes, expected {expected}"
    return None


def allocate(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.uint8, shape=shape)
    offset, size = array.offset, array.nbytes
    del array
    # Reserve the blocks now: a memory-mapped write to a full disk would kill the process with
    # SIGBUS instead of raising an error that can name the folder.
    with open(tmp_path, "r+b") as fh:
        os.posix_fallocate(fh.fileno(), 0, offset + size)


_TEMPORARY = re.compile(r"^(celeba-[0-9a-f]+)\.npy\.tmp-\d+$")


def remove_abandoned_temporaries(cache_dir: Path, key: str) -> None:
    """Remove the temporaries of cache ``key`` (the caller holds its lock: a build that was
    killed left them) and those of other caches that nobody is building (their lock is free): a
    killed build of another subset would otherwise keep its gigabytes forever."""
    for stale in cache_dir.glob(f"celeba-{key}.npy.tmp-*"):
        stale.unlink()
    for tmp in cache_dir.glob("celeba-*.npy.tmp-*"):
        match = _TEMPORARY.match(tmp.name)
        lock_path = cache_dir / f"{match.group(1)}.lock" if match else None
        if lock_path is None or not lock_path.exists():
            continue
        with contextlib.suppress(OSError, Timeout), FileLock(lock_path, blocking=False):
            tmp.unlink()  # Timeout: the lock is held, its build still runs


def decoder_init(parent_pid: int) -> None:
    """Make a forked decoder process harmless to the builds that come after its parent."""
    # The cache lock's descriptor, which the fork copied, filelock has closed here already.
    # Die with the parent, even by SIGKILL, instead of decoding into a file nobody will use.
    pool_worker_init(parent_pid)
    # One decoder per pool process, the pool being the parallelism. Not in the main process (a
    # build without a pool), where it would slow the training that follows.
    torch.set_num_threads(1)


def write_failure(
    err: OSError, cache_dir: Path, count: int, shape: tuple[int, ...]
) -> LitCelebaError | None:
    """What a build that failed with ``err`` tells the user: a folder it may not write to, or a
    full disk with the size the cache of ``count`` images (``shape``) needs; None for another
    error, which goes up as it is."""
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR):
        return unwritable(cache_dir, err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return CelebAError(
            f"The cache folder {cache_dir} is full: the decoded cache of {count} images needs "
            f"{np.prod(shape) / 1e9:.2f} GB. Free space there, point data.cache_dir at another "
            "disk, or set data.cache false to decode the JPEGs on the fly. Nothing else was "
            "changed."
        )
    return None
