"""The decoded-image cache: a subset's JPEGs decoded once into one uint8 ``.npy`` file.

Images are stored as decoded (height x width x RGB, uint8) at full height, keeping only the source
columns that the recipe's resize reads (``transforms.columns_read``: 128 of 178 at 64x64, all 178
from 90x90 on). Nothing is resampled, so every transform computed from the cache equals the exact
recipe transform. The file is memory-mapped: in RAM when there is room (the recipe's 17,000 images
take 1.42 GB at 64x64), paged from disk when there is not (the full train split takes 13.6 GB).

The file name is a hash of everything that decides its content (the image source: a folder, an
archive's path, size and date, or TFRecord files and offsets; each image's name, size and
modification time or CRC; the columns kept, the format version), so a changed subset, image size or
data set never reuses a stale cache, and caches of two copies never mix. It is written under a lock
to a temporary name and renamed into place, so two processes (DDP ranks, two runs) never see a
half-written cache, and a build that was killed leaves nothing that looks complete.

A build that is killed never blocks the next one, and a damaged file is named and rebuilt
(:mod:`lit_celeba.data.cache_files`). Each face is decoded as it is everywhere else, by
:func:`lit_celeba.data.images.decode_face`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lit_celeba.base.errors import CelebAError
from lit_celeba.base.locks import held
from lit_celeba.data.cache_files import (
    LOCK_ADVICE,
    allocate,
    damage_of,
    decoder_init,
    remove_abandoned_temporaries,
    unwritable,
    write_failure,
)
from lit_celeba.data.celeba import FACE_SIZE
from lit_celeba.data.framing import Framing, framing_key, say_unframed
from lit_celeba.data.images import ImageSource, as_source, decode_face

CACHE_VERSION = 1
IMAGE_SHAPE = (FACE_SIZE[1], FACE_SIZE[0], 3)  # CelebA's aligned faces: height, width, RGB
_CHUNK = 256
# How long a run waits for another process's build of the same cache before giving up. Decoding
# all 202,599 images takes minutes on a few cores; an hour only ever runs out on a stuck holder.
LOCK_WAIT_LIMIT_S = 3600.0


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lit_celeba"


def cache_key(
    images: ImageSource | Path,
    names: Sequence[str],
    columns: Sequence[int],
    framing: Framing = "celeba",
) -> str:
    """A hash of the cache's content: source, columns kept, framing (and the detector's
    settings), names, each image's size and date (or CRC, or record offset)."""
    source = as_source(images)
    header = (f"v{CACHE_VERSION} {IMAGE_SHAPE} {list(columns)} {source.identity()}"
              f"{framing_key(framing)}\n")  # fmt: skip
    digest = hashlib.sha256(header.encode())
    for line in source.key_lines(names):
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()[:24]


def _decode_chunk(
    tmp_path: str,
    source: ImageSource,
    names: list[str],
    start: int,
    columns: list[int],
    framing: Framing,
) -> tuple[int, int]:
    """Decodes ``names`` into the cache from row ``start``; (images, of them reframed)."""
    array = np.load(tmp_path, mmap_mode="r+")
    kept, reframed = np.asarray(columns), 0
    for offset, (name, data) in enumerate(zip(names, source.read_many(names), strict=True)):
        image, moved = decode_face(data, source.where(name), kept, framing)
        array[start + offset] = image.numpy()
        reframed += moved
    array.flush()
    return len(names), reframed


def build_cache(
    images: ImageSource | Path,
    names: Sequence[str],
    cache_dir: Path,
    columns: Sequence[int],
    workers: int | None = None,
    description: str = "images",
    wait_limit_s: float = LOCK_WAIT_LIMIT_S,
    framing: Framing = "celeba",
) -> Path:
    """Decode ``names`` from ``images`` (a source, or an unpacked folder) into
    ``cache_dir/<key>.npy`` unless it exists, in ``framing``, keeping the source ``columns`` of
    each image. A damaged file is rebuilt."""
    columns = [int(c) for c in columns]
    source = as_source(images)
    key = cache_key(source, names, columns, framing)
    final = cache_dir / f"celeba-{key}.npy"
    shape = cache_shape(len(names), columns)
    if damage_of(final, shape) is None:
        return final  # complete (it is renamed into place whole): no lock, no write needed
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise unwritable(cache_dir, err) from None
    lock = cache_dir / f"celeba-{key}.lock"
    with held(lock, wait_limit_s, "while it builds the same cache", LOCK_ADVICE, unwritable):
        damage = damage_of(final, shape)
        if damage is None:
            return final  # built by the process we waited for
        if damage != "missing":
            print(f"The cache file {final} is damaged ({damage}); rebuilding it.",
                  file=sys.stderr, flush=True)  # fmt: skip
            final.unlink()
        remove_abandoned_temporaries(cache_dir, key)
        tmp = cache_dir / f"celeba-{key}.npy.tmp-{os.getpid()}"
        try:
            allocate(tmp, shape)
            _decode_all(tmp, source, list(names), columns, workers, description, framing)
            os.replace(tmp, final)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            said = write_failure(err, cache_dir, len(names), shape)
            if said is None:
                raise
            raise said from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return final


def cache_shape(count: int, columns: Sequence[int]) -> tuple[int, int, int, int]:
    return (count, IMAGE_SHAPE[0], len(columns), IMAGE_SHAPE[2])


def _decode_all(
    tmp: Path,
    source: ImageSource,
    names: list[str],
    columns: list[int],
    workers: int | None,
    description: str,
    framing: Framing,
) -> None:
    chunks = [(i, names[i : i + _CHUNK]) for i in range(0, len(names), _CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    framed = "" if framing == "celeba" else f", framed by the {framing}"
    bar = tqdm(total=len(names), desc=f"Decoding {description} into the cache{framed}",
               unit="img")  # fmt: skip
    reframed = 0
    with bar:
        if workers <= 1:
            for start, chunk in chunks:
                done, moved = _decode_chunk(str(tmp), source, chunk, start, columns, framing)
                bar.update(done)
                reframed += moved
            say_unframed(len(names), reframed, framing, description)
            return
        # fork: the workers only need this module, and start in milliseconds.
        pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"),
                                   initializer=decoder_init,
                                   initargs=(os.getpid(),))  # fmt: skip
        try:
            futures = [
                pool.submit(_decode_chunk, str(tmp), source.for_names(chunk), chunk, start,
                            columns, framing)  # fmt: skip
                for start, chunk in chunks
            ]
            for future in futures:
                done, moved = future.result()
                bar.update(done)
                reframed += moved
        except BaseException:
            # Stopped (a signal, a bad image): do not decode the chunks still queued.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    say_unframed(len(names), reframed, framing, description)


def open_cache(path: Path, count: int, columns: Sequence[int]) -> np.ndarray:
    """The cache as a read-only memory map; checks that it holds what was asked for."""
    expected = cache_shape(count, columns)
    damage = damage_of(path, expected)
    if damage is None:
        with contextlib.suppress(OSError, ValueError):
            return np.load(path, mmap_mode="r")
        damage = "cannot be memory-mapped"
    raise CelebAError(
        f"The cache file {path} is damaged ({damage}); delete it and it will be rebuilt."
    )
