"""Which CelebA copy a data root holds: the official files (unpacked or zipped, also in Google
Drive's folders), the Kaggle archive or layout, or a tfds data dir. :func:`find_copy` names the
form from file names alone; :func:`load_copy` reads the annotations and returns them with the
copy's :class:`~lit_celeba.data.images.ImageSource` (see :data:`lit_celeba.data.celeba` for the
list a wrong root prints).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lit_celeba.base.errors import CelebAError
from lit_celeba.data.celeba import CelebAFiles, CelebAIndex, find_files, read_index
from lit_celeba.data.images import FolderSource, ImageSource
from lit_celeba.data.sources import (
    TFDS_SPLITS,
    RecordPlaces,
    TFRecordSource,
    ZipSource,
    open_zip,
)


@dataclass(frozen=True)
class CelebACopy:
    """One CelebA copy: its annotations, where its images come from, and what form it is in."""

    form: str
    index: CelebAIndex
    source: ImageSource


_SHARD = re.compile(r"celeb_a-(train|validation|test)\.tfrecord-(\d{5})-of-(\d{5})$")
_VERSION = re.compile(r"\d+\.\d+\.\d+$")


def tfds_dir(root: Path) -> Path | None:
    """The ``celeb_a/<version>`` folder of a tfds data dir at ``root`` (also when ``root`` is
    ``celeb_a`` or the version folder itself); the highest version if several."""
    for base in (root / "celeb_a", root):
        if (base / "dataset_info.json").is_file() and any(base.glob("celeb_a-*.tfrecord-*")):
            return base
        candidates = base.iterdir() if base.is_dir() else ()
        versions = [
            d for d in candidates if _VERSION.match(d.name) and (d / "dataset_info.json").is_file()
        ]
        if versions:
            return max(versions, key=lambda d: tuple(int(p) for p in d.name.split(".")))
    return None


def _drive_files(root: Path) -> CelebAFiles | None:
    """The official files as Google Drive holds them: ``Anno/``, ``Eval/`` and ``Img/``."""
    attr, part = root / "Anno" / "list_attr_celeba.txt", root / "Eval" / "list_eval_partition.txt"
    if not (attr.is_file() or part.is_file()):
        return None
    if not (attr.is_file() and part.is_file()):
        present, missing = (attr, part) if attr.is_file() else (part, attr)
        raise CelebAError(
            f"Found {present} but not {missing}: the official download needs both annotation files."
        )
    for images in (root / "Img" / "img_align_celeba", root / "img_align_celeba"):
        if images.is_dir():
            return CelebAFiles("official", images, attr, part)
    for archive in (root / "Img" / "img_align_celeba.zip", root / "img_align_celeba.zip"):
        if archive.is_file():
            return CelebAFiles("official", archive, attr, part)
    return CelebAFiles("official", root / "img_align_celeba", attr, part)


def find_copy(root: str | os.PathLike) -> str:
    """Check that ``root`` holds CelebA in one of the forms lit_celeba reads, touching only file
    names; return the form. Raises :class:`CelebAError` listing the forms otherwise."""
    root = Path(root).expanduser()
    if tfds_dir(root) is not None:
        return "tfds"
    if _kaggle_archive(root) is not None:
        return "kaggle zip"
    files = _drive_files(root) if root.is_dir() else None
    files = files or find_files(root)
    return _form_of(files)


def _form_of(files: CelebAFiles) -> str:
    zipped = files.image_dir.suffix == ".zip" or (
        not files.image_dir.is_dir() and _zip_beside(files) is not None
    )
    return f"{files.layout} zip" if zipped else files.layout


def _kaggle_archive(root: Path) -> Path | None:
    if root.is_file() and root.suffix.lower() == ".zip":
        _refuse_image_archive(root)
        return root
    archive = root / "archive.zip"
    unpacked = (root / "list_attr_celeba.csv").is_file()
    return archive if archive.is_file() and not unpacked else None


def _refuse_image_archive(archive: Path) -> None:
    """A data root that is a zip file must be Kaggle's archive.zip, which holds the annotations;
    the official img_align_celeba.zip holds the images only, and belongs in a folder beside them."""
    with open_zip(archive) as members:
        names = [name.rpartition("/")[2] for name in members.namelist()]
    if "list_attr_celeba.csv" in names or not any(n.lower().endswith(".jpg") for n in names):
        return  # Kaggle's, or no images at all: _load_kaggle_zip names what is missing
    folder = archive.parent
    wanted = ("list_attr_celeba.txt", "list_eval_partition.txt")
    missing = [name for name in wanted if not (folder / name).is_file()]
    beside = (
        f"{folder} has them: pass --data.root {folder}"
        if not missing
        else f"{folder} lacks {' and '.join(missing)}: put them there, then pass "
        f"--data.root {folder}"
    )
    raise CelebAError(
        f"The data root {archive} is an archive of images only (CelebA's official "
        "img_align_celeba.zip, not Kaggle's archive.zip with its .csv files): data.root is the "
        f"folder that holds it beside list_attr_celeba.txt and list_eval_partition.txt. {beside}."
    )


def _zip_beside(files: CelebAFiles) -> Path | None:
    folder = files.attr_file.parent
    for archive in (folder / "img_align_celeba.zip", folder / "Img" / "img_align_celeba.zip"):
        if archive.is_file():
            return archive
    return None


def load_copy(root: str | os.PathLike, index_dir: Path | None = None) -> CelebACopy:
    """Find and read the CelebA copy at ``root``, in any form :func:`find_copy` accepts.

    ``index_dir``: where a tfds copy's index of its records is kept between calls (the cache
    folder; see :mod:`lit_celeba.data.tfds_index`); without it every record is read each time.
    The other forms need no index.
    """
    root = Path(root).expanduser()
    tfds = tfds_dir(root)
    if tfds is not None:
        return _load_tfds(tfds, index_dir)
    archive = _kaggle_archive(root)
    if archive is not None:
        return _load_kaggle_zip(archive)
    files = (_drive_files(root) if root.is_dir() else None) or find_files(root)
    archive = files.image_dir if files.image_dir.suffix == ".zip" else None
    if archive is None and not files.image_dir.is_dir():
        archive = _zip_beside(files)
    if archive is None:
        source = FolderSource(files.image_dir, files.layout)
        return CelebACopy(files.layout, read_index(files), source)
    files = CelebAFiles(files.layout, archive, files.attr_file, files.partition_file)
    return CelebACopy(
        "official zip", read_index(files), ZipSource(archive, _image_prefix(archive, ".jpg"))
    )


def _image_prefix(archive: Path, suffix: str) -> str:
    """The folder of the archive that holds the JPEGs (``img_align_celeba/`` in the official
    zip, ``img_align_celeba/img_align_celeba/`` in Kaggle's)."""
    with open_zip(archive) as members:
        for name in members.namelist():
            if name.lower().endswith(suffix):
                return name.rpartition("/")[0] + "/" if "/" in name else ""
    raise CelebAError(f"The archive {archive} holds no {suffix} images.")


def _load_kaggle_zip(archive: Path) -> CelebACopy:
    texts = {}
    with open_zip(archive) as members:
        present = {n.rpartition("/")[2]: n for n in members.namelist()}
        for wanted in ("list_attr_celeba.csv", "list_eval_partition.csv"):
            if wanted not in present:
                raise CelebAError(
                    f"The archive {archive} has no {wanted}: Kaggle's CelebA archive holds "
                    "list_attr_celeba.csv, list_eval_partition.csv and img_align_celeba/. "
                    "Download it again."
                )
            try:
                texts[wanted] = members.read(present[wanted]).decode("utf-8-sig")
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise CelebAError(
                    f"Cannot read {present[wanted]} from the archive {archive}: {err}. "
                    "Download it again."
                ) from None
    # Messages about the annotations name the archive and the member.
    files = CelebAFiles(
        "kaggle",
        archive,
        Path(f"{archive}:{present['list_attr_celeba.csv']}"),
        Path(f"{archive}:{present['list_eval_partition.csv']}"),
    )
    index = read_index(files, texts["list_attr_celeba.csv"], texts["list_eval_partition.csv"])
    return CelebACopy("kaggle zip", index, ZipSource(archive, _image_prefix(archive, ".jpg")))


def _shards(folder: Path) -> list[tuple[str, Path]]:
    """The TFRecord shards of a tfds celeb_a folder in tfds order, checking none is missing."""
    found: dict[str, dict[int, Path]] = {}
    counts: dict[str, int] = {}
    for path in folder.iterdir():
        match = _SHARD.match(path.name)
        if match:
            split, number, total = match.group(1), int(match.group(2)), int(match.group(3))
            found.setdefault(split, {})[number] = path
            counts[split] = total
    shards = []
    for split in TFDS_SPLITS:
        if split not in found:
            raise CelebAError(
                f"{folder} has no celeb_a-{split}.tfrecord-* files; tfds writes one set per "
                "split (train, validation, test). Prepare the data set again."
            )
        for number in range(counts[split]):
            if number not in found[split]:
                raise CelebAError(
                    f"{folder} lacks celeb_a-{split}.tfrecord-{number:05d}-of-"
                    f"{counts[split]:05d}; prepare the data set again."
                )
            shards.append((split, found[split][number]))
    return shards


def _shard_lengths(folder: Path) -> dict[str, list[int]]:
    """Records per shard as ``dataset_info.json`` states them (empty if it does not)."""
    try:
        info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CelebAError(f"Cannot read {folder / 'dataset_info.json'}: {err}.") from None
    lengths = {}
    for split in info.get("splits", []) if isinstance(info, dict) else []:
        if isinstance(split, dict) and "shardLengths" in split:
            lengths[split.get("name")] = [int(n) for n in split["shardLengths"]]
    return lengths


def _load_tfds(
    folder: Path, index_dir: Path | None = None, workers: int | None = None
) -> CelebACopy:
    shards = _shards(folder)
    paths = [path for _, path in shards]
    # Deferred to a tfds copy: its reader imports google_crc32c and protobuf (sources.py says why).
    from lit_celeba.data import tfds_index

    records = tfds_index.read_index(paths, index_dir, workers)
    _check_counts(folder, shards, records.counts.tolist())
    places = RecordPlaces(paths, records)
    names = places.names
    partition = np.repeat([TFDS_SPLITS[split] for split, _ in shards], records.counts)
    files = CelebAFiles("tfds", folder, folder / "features.json", folder / "dataset_info.json")
    index = CelebAIndex(files, names, records.attr_names, records.attributes,
                        partition.astype(np.int8))  # fmt: skip
    return CelebACopy(f"tfds {folder.name}", index, TFRecordSource(paths, places))


def _check_counts(folder: Path, shards: Sequence[tuple[str, Path]], counts: list[int]) -> None:
    """Raise if a shard's record count is not the one ``dataset_info.json`` states (a file cut at
    a record's end passes every CRC)."""
    expected = _shard_lengths(folder)
    per_split: dict[str, int] = {}
    for (split, path), count in zip(shards, counts, strict=True):
        shard = per_split.get(split, 0)
        per_split[split] = shard + 1
        stated = expected.get(split)
        if stated is not None and shard < len(stated) and stated[shard] != count:
            raise CelebAError(
                f"{path} holds {count} records, but {folder / 'dataset_info.json'} says "
                f"{stated[shard]}: the file is truncated. Prepare the data set again."
            )
