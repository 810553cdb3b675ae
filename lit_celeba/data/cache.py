"""The decoded-image cache: a subset's JPEGs decoded once into one uint8 ``.npy`` file.

Images are stored as decoded (height x width x RGB, uint8) at full height, keeping only the source
columns that the recipe's resize reads (``transforms.columns_read``: 128 of 178 at 64x64, all 178
from 90x90 on). Nothing
is resampled, so every transform computed from the cache equals the exact recipe transform. The
file is memory-mapped: the operating system keeps it in RAM when there is room (the recipe's
17,000 images take 1.42 GB at 64x64) and pages it from disk when there is not (the full train
split takes 13.6 GB).

The file name is a hash of everything that decides its content (the image source: a folder, an
archive's path, size and date, or TFRecord files and offsets; each image's name, size and
modification time or CRC; the columns kept, the format version), so a changed subset, image size or
data set never reuses a stale cache, and caches of two copies never mix. It is written under a lock
to a temporary name and renamed into place, so two processes (DDP ranks, two runs) never see a
half-written cache, and a build that was killed leaves nothing that looks complete.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from tqdm.auto import tqdm

from lit_celeba.data.sources import FolderSource, ImageSource
from lit_celeba.errors import CelebAError

CACHE_VERSION = 1
IMAGE_SHAPE = (218, 178, 3)  # CelebA's aligned faces: height, width, RGB
_CHUNK = 256


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lit_celeba"


def as_source(images: ImageSource | os.PathLike | str) -> ImageSource:
    """An image source; a plain path is an unpacked folder."""
    return images if isinstance(images, ImageSource) else FolderSource(Path(images))


def cache_key(
    images: ImageSource | Path, names: Sequence[str], columns: Sequence[int]
) -> str:
    """A hash of the cache's content: source, columns kept, names, each image's size and date
    (or CRC, or record offset)."""
    source = as_source(images)
    header = f"v{CACHE_VERSION} {IMAGE_SHAPE} {list(columns)} {source.identity()}\n"
    digest = hashlib.sha256(header.encode())
    for line in source.key_lines(names):
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()[:24]


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel if this process dies
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def decode_bytes(data: bytes, where: str) -> torch.Tensor:
    """JPEG (or PNG) bytes as uint8 3xHxW RGB; ``where`` names the image in the error."""
    try:
        # bytearray: torch.frombuffer warns about read-only buffers; the copy is 10 KB.
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                            mode=ImageReadMode.RGB)  # fmt: skip
    except (RuntimeError, OSError, ValueError) as err:
        raise CelebAError(
            f"Cannot read image {where}: {err}. Replace the file from a fresh copy of CelebA."
        ) from None


def _decode_chunk(
    tmp_path: str, source: ImageSource, names: list[str], start: int, columns: list[int]
) -> int:
    array = np.load(tmp_path, mmap_mode="r+")
    for offset, (name, data) in enumerate(zip(names, source.read_many(names), strict=True)):
        path = source.where(name)
        image = decode_bytes(data, path)
        if tuple(image.shape) != (3, *IMAGE_SHAPE[:2]):
            raise CelebAError(
                f"Image {path} is {image.shape[2]}x{image.shape[1]}, not CelebA's aligned "
                "178x218; the decoded cache needs the aligned images (or set data.cache false)."
            )
        array[start + offset] = image.permute(1, 2, 0)[:, columns].numpy()
    array.flush()
    return len(names)


def _allocate(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.uint8, shape=shape)
    offset, size = array.offset, array.nbytes
    del array
    # Reserve the blocks now: a memory-mapped write to a full disk would kill the process with
    # SIGBUS instead of raising an error that can name the folder.
    with open(tmp_path, "r+b") as fh:
        os.posix_fallocate(fh.fileno(), 0, offset + size)


def build_cache(
    images: ImageSource | Path,
    names: Sequence[str],
    cache_dir: Path,
    columns: Sequence[int],
    workers: int | None = None,
    description: str = "images",
) -> Path:
    """Decode ``names`` from ``images`` (a source, or an unpacked folder) into
    ``cache_dir/<key>.npy`` unless it exists, keeping the source ``columns`` of each image."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    columns = [int(c) for c in columns]
    source = as_source(images)
    key = cache_key(source, names, columns)
    final = cache_dir / f"celeba-{key}.npy"
    with _locked(cache_dir / f"celeba-{key}.lock"):
        if final.exists():
            return final
        for stale in cache_dir.glob(f"celeba-{key}.npy.tmp-*"):
            stale.unlink()  # left by a build that was killed; we hold the lock, nobody owns it
        tmp = cache_dir / f"celeba-{key}.npy.tmp-{os.getpid()}"
        try:
            _allocate(tmp, cache_shape(len(names), columns))
            _decode_all(tmp, source, list(names), columns, workers, description)
            os.replace(tmp, final)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                need = np.prod(cache_shape(len(names), columns)) / 1e9
                raise CelebAError(
                    f"The cache folder {cache_dir} is full: the decoded cache of {len(names)} "
                    f"images needs {need:.2f} GB. Free space there, point data.cache_dir at "
                    "another disk, or set data.cache false to decode the JPEGs on the fly. "
                    "Nothing else was changed."
                ) from None
            raise
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
) -> None:
    chunks = [(i, names[i : i + _CHUNK]) for i in range(0, len(names), _CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    bar = tqdm(total=len(names), desc=f"Decoding {description} into the cache", unit="img")
    with bar:
        if workers <= 1:
            for start, chunk in chunks:
                bar.update(_decode_chunk(str(tmp), source, chunk, start, columns))
            return
        # fork: the workers only need this module, and start in milliseconds.
        with ProcessPoolExecutor(workers, mp_context=get_context("fork"),
                                 initializer=_one_thread) as pool:  # fmt: skip
            futures = [
                pool.submit(_decode_chunk, str(tmp), source, chunk, start, columns)
                for start, chunk in chunks
            ]
            for future in futures:
                bar.update(future.result())


def _one_thread() -> None:
    # One decoder per pool process, the pool being the parallelism. Not in the main process (a
    # build without a pool), where it would slow the training that follows.
    torch.set_num_threads(1)


def open_cache(path: Path, count: int, columns: Sequence[int]) -> np.ndarray:
    """The cache as a read-only memory map; checks that it holds what was asked for."""
    array = np.load(path, mmap_mode="r")
    expected = cache_shape(count, columns)
    if array.shape != expected or array.dtype != np.uint8:
        raise CelebAError(
            f"The cache file {path} holds {array.shape} {array.dtype}, expected {expected} "
            "uint8; delete it and it will be rebuilt."
        )
    return array
