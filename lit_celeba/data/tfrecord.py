"""TFRecord files, read and written without TensorFlow: the records' framing and CRCs. What a
tfds record holds, a ``tf.train.Example``, is :mod:`lit_celeba.data.tf_example`.

A TFRecord file is a sequence of records, each framed as::

    uint64 length | uint32 masked_crc32c(length) | payload | uint32 masked_crc32c(payload)

(little-endian).

Both CRCs are checked on every read; a mismatch or a truncated record raises
:class:`~lit_celeba.base.errors.CelebAError` naming the file, the record's number and its byte
offset.

CRC32C (Castagnoli) is not in the standard library; ``google-crc32c`` (Google's C library,
with the SSE4.2 / ARMv8 CRC instructions) computes it at about 1 us per 13 KB record. The numpy
version this module had before took 100 us, the larger part of reading a record. Where no wheel
of it fits the platform, the package falls back to pure Python and warns. It is the ``[tfds]``
extra: only a tfds copy (and the demo set's tfds form) needs it, so a run without it says which
install gives it when the first record is read or written.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from lit_celeba.base.errors import CelebAError, UsageError

try:
    import google_crc32c
except ImportError:  # the [tfds] extra: crc32c() names it when a record is read or written
    google_crc32c = None

NEEDS_TFDS_EXTRA = (
    "TFRecords (a tfds copy of CelebA, or the demo set's tfds form) need the google-crc32c "
    "package, the checksum of every record: pip install 'lit_celeba[tfds]'"
)

_MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes | memoryview) -> int:
    """CRC32C of ``data``."""
    if google_crc32c is None:
        raise UsageError(NEEDS_TFDS_EXTRA)
    # google_crc32c takes bytes only, not a memoryview: the copy costs under 1 us a record.
    return google_crc32c.value(data if isinstance(data, bytes) else bytes(data))


def mask(crc: int) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits and add a constant."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


_HEADER = struct.Struct("<QI")


def _bad(path: Path, number: int, offset: int, what: str) -> CelebAError:
    return CelebAError(
        f"{path}, record {number} (byte {offset}): {what}. The file is damaged; "
        "download or prepare the data set again."
    )


def frame(payload: bytes) -> bytes:
    """One record as a TFRecord file stores it."""
    length = struct.pack("<Q", len(payload))
    return b"".join(
        (
            length,
            struct.pack("<I", mask(crc32c(length))),
            payload,
            struct.pack("<I", mask(crc32c(payload))),
        )
    )


def write_records(path: str | os.PathLike, payloads: Iterable[bytes]) -> None:
    with open(path, "wb") as fh:
        for payload in payloads:
            fh.write(frame(payload))


def _check(path: Path, number: int, offset: int, data: bytes | memoryview, stored: int,
           what: str) -> None:  # fmt: skip
    if mask(crc32c(data)) != stored:
        raise _bad(path, number, offset, f"the {what} does not match its CRC")


def scan_records(path: str | os.PathLike) -> Iterator[tuple[int, memoryview]]:
    """Every record of the file as (byte offset of its frame, payload), both CRCs checked."""
    path = Path(path)
    data = memoryview(path.read_bytes())
    position, number = 0, 0
    while position < len(data):
        if len(data) - position < _HEADER.size:
            raise _bad(path, number, position, "the file ends inside a record header (truncated)")
        length, length_crc = _HEADER.unpack_from(data, position)
        _check(path, number, position, data[position : position + 8], length_crc, "record length")
        end = position + _HEADER.size + length + 4
        if end > len(data):
            raise _bad(path, number, position, "the file ends inside the record (truncated)")
        payload = data[position + _HEADER.size : end - 4]
        _check(path, number, position, payload, struct.unpack_from("<I", data, end - 4)[0], "data")
        yield position, payload
        position, number = end, number + 1


def read_framed(
    path: Path, fh, locations: Sequence[tuple[int, int]]
) -> list[memoryview]:  # fmt: skip
    """The payloads of records at ``locations`` ((record number, byte offset) pairs) of the
    open file ``fh``, both CRCs checked."""
    payloads = []
    for number, offset in locations:
        fh.seek(offset)
        header = fh.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise _bad(path, number, offset, "the file ends inside a record header (truncated)")
        length, length_crc = _HEADER.unpack(header)
        # Checked before reading on: a damaged length could ask for any number of bytes.
        _check(path, number, offset, header[:8], length_crc, "record length")
        body = fh.read(length + 4)
        if len(body) < length + 4:
            raise _bad(path, number, offset, "the file ends inside the record (truncated)")
        payload = memoryview(body)[:length]
        _check(path, number, offset, payload, struct.unpack_from("<I", body, length)[0], "data")
        payloads.append(payload)
    return payloads
