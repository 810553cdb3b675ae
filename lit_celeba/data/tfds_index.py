"""The index of a tfds ``celeb_a`` copy (each record's attributes, its frame's byte offset and
where its JPEG bytes lie), read from the TFRecord shards (:mod:`lit_celeba.data.tfds_records`)
and kept in the cache folder. With ``index_dir`` the index is kept there as one
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

import hashlib
import json
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lit_celeba.base.errors import UsageError
from lit_celeba.base.files import atomic_write
from lit_celeba.data.tfds_records import ARRAYS, TfdsIndex, index_records

INDEX_VERSION = 1


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
    arrays = {name: getattr(index, name) for name in ARRAYS}
    meta = {"version": INDEX_VERSION, "shards": key, "attr_names": index.attr_names}
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["digest"] = np.array(_digest(arrays))
    try:
        # No fsync: a file the system lost part of in a crash fails its digest and is rebuilt.
        with atomic_write(path, "wb", fsync=False) as fh:
            np.savez(fh, **arrays)
    except OSError as err:
        raise UsageError(
            f"Cannot keep the index of the tfds records in {path.parent}: "
            f"{err.strerror or err}. Choose a writable folder with --data.cache_dir, or set "
            "--data.cache false (the records are then read at every setup)."
        ) from None


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
        fields = {name: arrays[name] for name in ARRAYS}
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
