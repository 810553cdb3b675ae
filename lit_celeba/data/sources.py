"""A CelebA copy's JPEGs read in place from a zip archive or from tfds TFRecords: the
:class:`~lit_celeba.data.images.ImageSource` kinds besides an unpacked folder
(:mod:`lit_celeba.data.images`). :func:`lit_celeba.data.copies.load_copy` detects the form at a
data root and returns its annotations with one of them.

Sources are used from forked worker processes: each process opens its own file handles (a
shared descriptor would share one file offset between processes), kept for the process's life.
"""

from __future__ import annotations

import copy
import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lit_celeba.base.errors import CelebAError
from lit_celeba.data.images import ImageSource, shown_names

if TYPE_CHECKING:
    from lit_celeba.data import tfds_records

# The TFRecord reader (tfrecord: google_crc32c; tf_example: protobuf) is imported where a tfds
# copy is read, not with this module: a folder or zip copy never needs it, as timm's
# reader_factory defers tensorflow.

TFDS_SPLITS = {"train": 0, "validation": 1, "test": 2}  # tfds' split names -> partition


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
                f"{self.prefix}{missing[0]}): {shown_names(missing)}. Download the complete "
                "archive again."
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

    def __init__(self, paths: Sequence[Path], records: tfds_records.TfdsIndex) -> None:
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
            from lit_celeba.data import tfrecord  # deferred: see the imports

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
    from lit_celeba.data import tf_example  # deferred: see the imports

    try:
        image = tf_example.parse_example(payload).get("image")
    except ValueError as err:
        raise CelebAError(f"{path}, record {number}: {err}.") from None
    if not isinstance(image, bytes):
        raise CelebAError(
            f"{path}, record {number}: no 'image' feature; is this a tfds celeb_a data dir?"
        )
    return image
