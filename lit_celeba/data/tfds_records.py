"""A tfds ``celeb_a`` copy's records read into their index, :class:`TfdsIndex`: each record's
attributes, its frame's byte offset and where its JPEG bytes lie.

Reading checks both CRCs of every record (see :mod:`lit_celeba.data.tfrecord`) and decodes only
the features it needs (the attributes and the image's place), in parallel over the shards with a
progress bar when there is much to read. :mod:`lit_celeba.data.tfds_index` keeps the result in
the cache folder, so that a later setup reads it instead of the records.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lit_celeba.base.errors import CelebAError
from lit_celeba.base.processes import pool_worker_init
from lit_celeba.data import tf_example, tfrecord

# Below this many bytes of shards, reading takes a moment (about 0.2 s): no progress bar, and no
# processes, whose start would cost more than they save.
PARALLEL_FROM_BYTES = 32 << 20
# The index's arrays, in the order TfdsIndex lists them; tfds_index keeps each in its file.
ARRAYS = ("counts", "offsets", "image_offsets", "image_lengths", "attributes")


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
        joined = {name: np.concatenate([getattr(p, name) for p in parts]) for name in ARRAYS}
        joined["attributes"] = joined["attributes"].reshape(-1, len(attr_names))
        return cls(attr_names, **joined)


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
        return tf_example.feature_entries(payload)
    except ValueError as err:
        raise CelebAError(f"{path}, record {number}: {err}.") from None


def _attribute_row(
    path: Path, number: int, entries: dict[str, bytes], keys: Sequence[str]
) -> list[int]:
    try:
        row = tf_example.first_ints([entries[key] for key in keys])
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
        image = None if feature is None else tf_example.first_bytes(feature)
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
