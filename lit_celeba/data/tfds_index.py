"""The index of a tfds ``celeb_a`` copy: each record's attributes, its frame's byte offset and
where its JPEG bytes lie, read from the TFRecord shards and kept in the cache folder.

Reading it checks both CRCs of every record (see :mod:`lit_celeba.data.tfrecord`) and reads only
the features it needs (the attributes and the image's place), in parallel over the shards with a
progress bar when there is much to read. With ``index_dir`` the result is kept there as one
``tfds-index-<hash of the folder>.npz`` and a later setup reads that instead of the records:

- it is used only while every shard has the path, size and modification time (ns) it had when
  it was read, and the format version is this module's; otherwise the records are read again and
  the file replaced;
- it holds a SHA-256 of its content: a damaged file is named and rebuilt, never trusted;
- it is written to a temporary name and renamed into place, so no process sees half of one (two
  processes that read the same copy at once both write the same index; the last rename wins).

The decoded cache reads a record's JPEG at the place the index gives without checking its CRC
again (see ``TFRecordSource._read_image``): a kept index stands for a read that checked every CRC,
and is dropped when a shard's size or time changes. A change that keeps both (bit rot, a file
rewritten and its time set back) goes unseen, as it would for the decoded cache, whose key holds
the same sizes and times.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lit_celeba.data import tfrecord
from lit_celeba.errors import CelebAError, UsageError
from lit_celeba.processes import pool_worker_init, remove_stale_temporaries, temporary_path

INDEX_VERSION = 1
# Below this many bytes of shards, reading takes a moment (about 0.2 s): no progress bar, and no
# processes, whose start would cost more than they save.
PARALLEL_FROM_BYTES = 32 << 20
_ARRAYS = ("counts", "offsets", "image_offsets", "image_lengths", "attributes")


@dataclass
class TfdsIndex:
    """The records of a copy's shards, shard after shard in tfds order."""

    attr_names: list[str]
    counts: np.ndarray  # (shards,) int64: records per shard
    offsets: np.ndarray  # (N,) int64: byte offset of each record's frame in its shard
    image_offsets: np.ndarray  # (N,) int64: where its JPEG bytes start; -1: no image feature
    image_lengths: np.ndarray  # (N,) int64
    attributes: np.ndarray  # (N, attributes) int8

    @classmethod
    def concatenate(cls, attr_names: list[str], parts: Sequence[TfdsIndex]) -> TfdsIndex:
        joined = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _ARRAYS}
        joined["attributes"] = joined["attributes"].reshape(-1, len(attr_names))
        return cls(attr_names, **joined)


def read_index(
    paths: Sequence[Path], index_dir: Path | None = None, workers: int | None = None
) -> TfdsIndex:
    """The index of the shards ``paths`` (in tfds order); kept in ``index_dir`` if given, and
    read from there while the shards are unchanged. ``workers``: processes (default: one per
    CPU)."""
    paths = [Path(p) for p in paths]
    if index_dir is None:
        return index_records(paths, workers)
    kept = index_dir / index_file_name(paths[0].parent)
    # Taken before the records are read: a shard written to meanwhile is read again next time.
    key = shard_key(paths)
    index = _load_kept(kept, key)
    if index is None:
        index = index_records(paths, workers)
        _keep(kept, key, index)
    return index


def index_file_name(folder: Path) -> str:
    """One index per tfds folder: a copy read again replaces its own."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return f"tfds-index-{digest}.npz"


def shard_key(paths: Sequence[Path]) -> list[list]:
    """What a kept index must have been read from: each shard's path, size and time."""
    key = []
    for path in paths:
        stat = path.stat()
        key.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return key


# --- reading the records -------------------------------------------------------------------------


def index_records(paths: Sequence[Path], workers: int | None = None) -> TfdsIndex:
    """Read every record of ``paths``; the attributes are those of the first record."""
    attr_names = attribute_names(paths)
    sizes = [path.stat().st_size for path in paths]
    total = sum(sizes)
    workers = min(workers or os.cpu_count() or 1, len(paths))
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="Indexing the tfds records",
               disable=total < PARALLEL_FROM_BYTES)  # fmt: skip
    with bar:
        if workers <= 1 or total < PARALLEL_FROM_BYTES:
            parts = [index_shard(path, attr_names, bar.update) for path in paths]
        else:
            parts = _index_in_parallel(paths, sizes, attr_names, workers, bar)
    return TfdsIndex.concatenate(attr_names, parts)


def _index_in_parallel(
    paths: Sequence[Path], sizes: Sequence[int], attr_names: list[str], workers: int, bar
) -> list[TfdsIndex]:
    # fork: the workers need only this module, and start in milliseconds.
    pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"),
                               initializer=pool_worker_init, initargs=(os.getpid(),))  # fmt: skip
    try:
        # The largest first, so that no big shard is left to run alone at the end.
        largest_first = sorted(range(len(paths)), key=lambda i: -sizes[i])
        futures = {i: pool.submit(index_shard, paths[i], attr_names) for i in largest_first}
        parts = []
        for i in range(len(paths)):  # in shard order: a damaged copy names its first bad shard
            parts.append(futures[i].result())
            bar.update(sizes[i])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return parts


def attribute_names(paths: Sequence[Path]) -> list[str]:
    """The ``attributes/...`` features of the first record, in the order it stores them."""
    for path in paths:
        if path.stat().st_size == 0:
            continue
        with open(path, "rb") as fh:
            (payload,) = tfrecord.read_framed(path, fh, [(0, 0)])
        names = [key.removeprefix("attributes/") for key in _entries(path, 0, payload)
                 if key.startswith("attributes/")]  # fmt: skip
        if not names:
            raise CelebAError(
                f"{path}, record 0: no attributes/... features; is this tfds celeb_a?"
            )
        return names
    return []  # no records at all: dataset_info.json's counts tell what is missing


def index_shard(
    path: Path, attr_names: Sequence[str], progress: Callable[[int], object] | None = None
) -> TfdsIndex:
    """One shard's records, both CRCs of each checked; ``progress`` is told the bytes read, now
    and then."""
    keys = [f"attributes/{name}" for name in attr_names]
    offsets, image_offsets, image_lengths, rows = [], [], [], []
    told = 0
    for number, (offset, payload) in enumerate(tfrecord.scan_records(path)):
        if progress is not None and number % 1024 == 0:
            progress(offset - told)
            told = offset
        entries = _entries(path, number, payload)
        rows.append(_attribute_row(path, number, entries, keys))
        start, length = _image_place(path, number, payload, entries)
        offsets.append(offset)
        # The payload starts after the frame's 8-byte length and its 4-byte CRC.
        image_offsets.append(-1 if start < 0 else offset + 12 + start)
        image_lengths.append(length)
    if progress is not None:
        progress(path.stat().st_size - told)
    return TfdsIndex(
        list(attr_names),
        np.array([len(offsets)], np.int64),
        np.array(offsets, np.int64),
        np.array(image_offsets, np.int64),
        np.array(image_lengths, np.int64),
        np.array(rows, np.int8).reshape(len(offsets), len(keys)),
    )


def _entries(path: Path, number: int, payload: memoryview) -> dict[str, bytes]:
    try:
        return tfrecord.feature_entries(payload)
    except ValueError as err:
        raise CelebAError(f"{path}, record {number}: {err}.") from None


def _attribute_row(
    path: Path, number: int, entries: dict[str, bytes], keys: Sequence[str]
) -> list[int]:
    try:
        row = tfrecord.first_ints([entries[key] for key in keys])
    except KeyError as err:
        raise CelebAError(
            f"{path}, record {number}: lacks the attribute {err.args[0]} of record 0."
        ) from None
    except ValueError as err:
        raise CelebAError(f"{path}, record {number}: {err}.") from None
    if None in row:
        key = keys[row.index(None)]
        raise CelebAError(f"{path}, record {number}: the attribute {key} holds no int64 value.")
    return row  # type: ignore[return-value]


def _image_place(
    path: Path, number: int, payload: memoryview, entries: dict[str, bytes]
) -> tuple[int, int]:
    """Where the ``image`` feature's bytes start in ``payload`` and their length; (-1, 0) for a
    record without one (reading it then raises, naming the record)."""
    feature = entries.get("image")
    try:
        image = None if feature is None else tfrecord.first_bytes(feature)
    except ValueError as err:
        raise CelebAError(f"{path}, record {number}: {err}.") from None
    if image is None:
        return -1, 0
    return _find(bytes(payload), image), len(image)


def _find(payload: bytes, part: bytes) -> int:
    """Where ``part``, a bytes field of ``payload`` (protobuf copies them verbatim), starts."""
    # Searching for the whole 14 KB image took 21 us; for its first bytes, then comparing, 2 us.
    head = part[:64]
    start = payload.find(head)
    while start >= 0 and not payload.startswith(part, start):
        start = payload.find(head, start + 1)
    return start


# --- the kept index ------------------------------------------------------------------------------


def _digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        if name != "digest":
            array = np.ascontiguousarray(arrays[name])
            digest.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def _keep(path: Path, key: list[list], index: TfdsIndex) -> None:
    """Write ``index`` to ``path`` whole or not at all."""
    arrays = {name: getattr(index, name) for name in _ARRAYS}
    meta = {"version": INDEX_VERSION, "shards": key, "attr_names": index.attr_names}
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["digest"] = np.array(_digest(arrays))
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        # No fsync: a file the system lost part of in a crash fails its digest and is rebuilt.
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UsageError(
            f"Cannot keep the index of the tfds records in {path.parent}: "
            f"{err.strerror or err}. Choose a writable folder with --data.cache_dir, or set "
            "--data.cache false (the records are then read at every setup)."
        ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _load_kept(path: Path, key: list[list]) -> TfdsIndex | None:
    """The index kept at ``path`` if it is whole and was read from the shards ``key`` names;
    None (saying why, unless there is none) if the records must be read again."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
    except (FileNotFoundError, NotADirectoryError):
        return None  # none kept yet
    except OSError as err:
        return _rebuild(path, f"it cannot be read ({err.strerror or err})")
    with fh:
        if fh.read(4) != b"PK\x03\x04":  # np.load would take anything else for a pickle
            return _rebuild(path, "it is damaged (not a .npz file)")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as kept:
                arrays = {name: kept[name] for name in kept.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            return _rebuild(path, f"it is damaged ({err})")
    if "digest" not in arrays or str(arrays["digest"]) != _digest(arrays):
        return _rebuild(path, "it is damaged (its content does not match its SHA-256)")
    try:
        meta = json.loads(str(arrays["meta"]))
        version, shards, attr_names = meta["version"], meta["shards"], meta["attr_names"]
        fields = {name: arrays[name] for name in _ARRAYS}
    except (KeyError, TypeError, ValueError) as err:
        return _rebuild(path, f"it lacks {err}; it was written by another version")
    if version != INDEX_VERSION:
        return _rebuild(path, f"it has format {version}, this version reads {INDEX_VERSION}")
    if shards != key:
        return _rebuild(path, _change(shards, key))
    return TfdsIndex(list(attr_names), **fields)


def _change(kept: list[list], key: list[list]) -> str:
    """Which shard differs from the ones the kept index was read from."""
    before = {entry[0]: entry[1:] for entry in kept}
    for name, *stat in key:
        if name not in before:
            return f"it was read without {name}"
        if before[name] != stat:
            return f"{name} has changed (size or time) since it was read"
    return "it was read from other shards"


def _rebuild(path: Path, why: str) -> None:
    print(f"Reading the tfds records again to rebuild their index {path}: {why}.",
          file=sys.stderr, flush=True)  # fmt: skip
    return None
