"""Where a CelebA copy's JPEGs come from: a folder, a zip archive, or tfds TFRecords.

An :class:`ImageSource` lists names and reads the bytes of a name; it never unpacks anything.
The decoded cache, the on-the-fly dataset and the augmentation preview read through it, so every
form of CelebA on disk gives the same pixels. :func:`load_copy` detects the form at a data root
(see :data:`lit_celeba.data.celeba` for the list a wrong root prints) and returns its
annotations with its source.

Sources are used from forked worker processes: each process opens its own file handles (a
shared descriptor would share one file offset between processes).
"""

from __future__ import annotations

import copy
import json
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lit_celeba.data import tfds_index, tfrecord
from lit_celeba.data.celeba import (
    CelebAFiles,
    CelebAIndex,
    find_files,
    read_index,
)
from lit_celeba.errors import CelebAError

TFDS_SPLITS = {"train": 0, "validation": 1, "test": 2}  # tfds' split names -> partition


class ImageSource:
    """The JPEG bytes of a CelebA copy, by image name."""

    #: True when the copy stores its images in tfds order and knows no file names.
    tfds_order_only = False

    def read_many(self, names: Sequence[str]) -> list[bytes]:
        return [self.read(name) for name in names]

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def where(self, name: str) -> str:
        """The image's place, for messages."""
        raise NotImplementedError

    def identity(self) -> str:
        """What tells this copy from any other: the start of the cache key."""
        raise NotImplementedError

    def key_lines(self, names: Sequence[str]) -> Iterable[str]:
        """One line per image that changes when the image does (size, date or CRC)."""
        raise NotImplementedError

    def check(self, names: Sequence[str], split: str, attr_file: Path) -> None:
        """Raise naming the images of ``names`` that this source lacks."""

    def for_names(self, names: Sequence[str]) -> ImageSource:
        """This source reduced to ``names``: what a decoding process needs to be sent."""
        return self


class FolderSource(ImageSource):
    """An unpacked ``img_align_celeba`` folder."""

    def __init__(self, image_dir: Path, layout: str = "official") -> None:
        self.image_dir = Path(image_dir)
        self.layout = layout

    def read(self, name: str) -> bytes:
        path = self.image_dir / name
        try:
            return path.read_bytes()
        except OSError as err:
            raise CelebAError(
                f"Cannot read image {path}: {err}. Replace the file from a fresh copy of CelebA."
            ) from None

    def where(self, name: str) -> str:
        return str(self.image_dir / name)

    def identity(self) -> str:
        return str(self.image_dir.resolve())  # the cache key of a folder is unchanged

    def key_lines(self, names: Sequence[str]) -> Iterable[str]:
        for name in names:
            stat = (self.image_dir / name).stat()
            yield f"{name} {stat.st_size} {stat.st_mtime_ns}"

    def check(self, names: Sequence[str], split: str, attr_file: Path) -> None:
        if not self.image_dir.is_dir():
            raise CelebAError(
                f"The image folder {self.image_dir} is missing (the annotation files were found "
                f"in the {self.layout} layout). Unpack img_align_celeba there, or put "
                "img_align_celeba.zip beside the annotation files."
            )
        on_disk = set(os.listdir(self.image_dir))
        missing = [n for n in names if n not in on_disk]
        if missing:
            raise CelebAError(
                f"{len(missing)} image(s) of the {split!r} subset listed in {attr_file} are "
                f"missing from {self.image_dir}: {_shown(missing)}. "
                "Unpack the complete img_align_celeba archive there."
            )


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


# Open handles by (process, what they open), kept for the process's life: a decoding process
# gets a fresh copy of the source with every chunk of images, and opening the archive again
# for each (reading a 200,000-member zip's directory) cost more than decoding the chunk.
_OPEN: dict[tuple[int, str], Any] = {}


class _PerProcess:
    """Opens a handle lazily in each process, once; a pickled copy carries none."""

    def __init__(self) -> None:
        pass

    def _open(self):
        raise NotImplementedError

    def _opens(self) -> str:
        """What :meth:`_open` opens: copies that open the same thing share the handle."""
        raise NotImplementedError

    def handle(self):
        key = (os.getpid(), self._opens())
        if key not in _OPEN:
            _OPEN[key] = self._open()
        return _OPEN[key]


def open_zip(archive: Path) -> zipfile.ZipFile:
    """The archive, or an error saying it is not a complete zip file."""
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CelebAError(
            f"Cannot open the archive {archive}: {err}. It is probably an incomplete download "
            "(its end, where a zip file lists its members, is missing); download it again."
        ) from None


class ZipSource(_PerProcess, ImageSource):
    """The JPEGs inside a zip archive under the folder ``prefix``, read in place."""

    def __init__(self, archive: Path, prefix: str) -> None:
        super().__init__()
        self.archive = Path(archive)
        self.prefix = prefix
        stat = self.archive.stat()
        self._stat = (stat.st_size, stat.st_mtime_ns)
        self._key = self.identity()

    def _open(self) -> zipfile.ZipFile:
        return open_zip(self.archive)

    def _opens(self) -> str:
        return self._key

    def read(self, name: str) -> bytes:
        member = self.prefix + name
        try:
            return self.handle().read(member)
        except KeyError:
            raise CelebAError(
                f"The archive {self.archive} has no member {member}; download the complete "
                "archive again."
            ) from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise CelebAError(
                f"Cannot read {member} from the archive {self.archive}: {err}. The archive is "
                "damaged or truncated; download it again."
            ) from None

    def where(self, name: str) -> str:
        return f"{self.archive}:{self.prefix}{name}"

    def identity(self) -> str:
        return f"zip {self.archive.resolve()} {self._stat[0]} {self._stat[1]} {self.prefix}"

    def key_lines(self, names: Sequence[str]) -> Iterable[str]:
        members = self.handle()
        for name in names:
            info = members.getinfo(self.prefix + name)
            yield f"{name} {info.file_size} {info.CRC}"

    def check(self, names: Sequence[str], split: str, attr_file: Path) -> None:
        present = set(self.handle().namelist())
        missing = [n for n in names if self.prefix + n not in present]
        if missing:
            raise CelebAError(
                f"{len(missing)} image(s) of the {split!r} subset listed in {attr_file} are "
                f"missing from the archive {self.archive} (looked for "
                f"{self.prefix}{missing[0]}): {_shown(missing)}. Download the complete archive "
                "again."
            )


@dataclass(frozen=True)
class RecordPlace:
    file: int  # index into TFRecordSource.files
    number: int  # the record's number in its file
    offset: int  # byte offset of its frame
    # Where its JPEG bytes lie in the file (offset, length), found when the index was read.
    image: tuple[int, int] | None = None


class RecordPlaces(Mapping[str, RecordPlace]):
    """The places of a tfds copy's records by name, ``<file>#<number>``, each made when asked
    for: making all 200,000 of CelebA when the index is read took 0.5 s of every setup."""

    def __init__(self, paths: Sequence[Path], records: tfds_index.TfdsIndex) -> None:
        self._file = {path.name: i for i, path in enumerate(paths)}
        self._counts = records.counts.tolist()
        self._starts = np.cumsum([0, *self._counts[:-1]]).tolist()
        self._offsets = records.offsets
        self._image_offsets = records.image_offsets
        self._image_lengths = records.image_lengths
        self.names: list[str] = []
        for path, count in zip(paths, self._counts, strict=True):
            self.names.extend(f"{path.name}#{number}" for number in range(count))

    def __getitem__(self, name: str) -> RecordPlace:
        file, _, digits = name.rpartition("#")
        index = self._file.get(file)
        number = int(digits) if digits.isdigit() and digits == str(int(digits)) else -1
        if index is None or not 0 <= number < self._counts[index]:
            raise KeyError(name)
        row = self._starts[index] + number
        image = int(self._image_offsets[row])
        span = None if image < 0 else (image, int(self._image_lengths[row]))
        return RecordPlace(index, number, int(self._offsets[row]), span)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


class TFRecordSource(_PerProcess, ImageSource):
    """The ``image`` feature of tfds TFRecords; names are ``<file>#<record number>``, since
    tfds stores no file name."""

    tfds_order_only = True

    def __init__(self, files: Sequence[Path], places: Mapping[str, RecordPlace]) -> None:
        super().__init__()
        self.files = [Path(f) for f in files]
        self.places = places
        self._stats = [(f.stat().st_size, f.stat().st_mtime_ns) for f in self.files]
        self._key = self.identity()

    def _open(self) -> dict[int, object]:
        return {}

    def _opens(self) -> str:
        return self._key

    def _file(self, index: int):
        handles = self.handle()
        if index not in handles:
            handles[index] = open(self.files[index], "rb")  # noqa: SIM115 (kept per process)
        return handles[index]

    def read(self, name: str) -> bytes:
        return self.read_many([name])[0]

    def read_many(self, names: Sequence[str]) -> list[bytes]:
        places = [self.places[name] for name in names]
        if all(place.image is not None for place in places):
            return [self._read_image(place) for place in places]
        out: dict[str, bytes] = {}
        by_file: dict[int, list[str]] = {}
        for name in names:
            by_file.setdefault(self.places[name].file, []).append(name)
        for index, group in by_file.items():
            path = self.files[index]
            places = [(self.places[n].number, self.places[n].offset) for n in group]
            payloads = tfrecord.read_framed(path, self._file(index), places)
            for name, payload in zip(group, payloads, strict=True):
                out[name] = _image_of(path, self.places[name].number, payload)
        return [out[name] for name in names]

    def for_names(self, names: Sequence[str]) -> TFRecordSource:
        # Sent with every chunk of images to the decoders: the places of all records took
        # 0.07 s to pickle and unpickle per 18,000, for each chunk of 256 images.
        reduced = copy.copy(self)
        reduced.places = {name: self.places[name] for name in names}
        return reduced

    def _read_image(self, place: RecordPlace) -> bytes:
        # The record's CRCs were checked when the index was read: at this setup, or at an
        # earlier one whose kept index is used only while every shard keeps its size and time
        # (see tfds_index; the decoded cache's key holds them too). Reading the JPEG's own
        # bytes, as from a folder, spares parsing the whole record again (0.18 ms a record, a
        # third of a decode).
        offset, length = place.image  # type: ignore[misc]
        fh = self._file(place.file)
        fh.seek(offset)
        data = fh.read(length)
        if len(data) != length:
            path = self.files[place.file]
            raise CelebAError(
                f"{path}, record {place.number}: the file ends inside the record (truncated "
                "since it was read). Prepare the data set again."
            )
        return data

    def where(self, name: str) -> str:
        place = self.places[name]
        return f"{self.files[place.file]}, record {place.number}"

    def identity(self) -> str:
        stats = zip(self.files, self._stats, strict=True)
        parts = [f"{path.resolve()} {size} {mtime}" for path, (size, mtime) in stats]
        return "tfds " + " ".join(parts)

    def key_lines(self, names: Sequence[str]) -> Iterable[str]:
        for name in names:
            yield f"{name} {self.places[name].offset}"


def _image_of(path: Path, number: int, payload: memoryview) -> bytes:
    try:
        image = tfrecord.parse_example(payload).get("image")
    except ValueError as err:
        raise CelebAError(f"{path}, record {number}: {err}.") from None
    if not isinstance(image, bytes):
        raise CelebAError(
            f"{path}, record {number}: no 'image' feature; is this a tfds celeb_a data dir?"
        )
    return image


# --- detection -----------------------------------------------------------------------------------


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
