"""TFRecord files and ``tf.train.Example`` protos, read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length | uint32 masked_crc32c(length) | payload | uint32 masked_crc32c(payload)

(little-endian).

Both CRCs are checked on every read; a mismatch or a truncated record raises
:class:`~lit_celeba.errors.CelebAError` naming the file, the record's number and its byte offset.

CRC32C (Castagnoli) is not in the standard library; ``google-crc32c`` (Google's C library,
with the SSE4.2 / ARMv8 CRC instructions) computes it at about 1 us per 13 KB record. The numpy
version this module had before took 100 us, the larger part of reading a record. Where no wheel
of it fits the platform, the package falls back to pure Python and warns.

``tf.train.Example``: an Example is ``features`` (field 1) holding a map ``feature`` (field 1) of
string keys to a ``Feature``, which is one of ``bytes_list`` (1), ``float_list`` (2) or
``int64_list`` (3), each a repeated ``value`` (field 1). tensorboard 2.21 no longer ships
``example_pb2``, so the messages are built with protobuf's descriptor API and parsed by
protobuf (a wire-format parser in Python took 1.1 ms a record), and written here straight in the
wire format (the synthetic tfds form). :func:`parse_example` decodes every feature (0.12 ms for
a CelebA record, most of it walking the map in Python); :func:`feature_entries` hands out each
feature still serialized, for the few that are wanted (about 20 us).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from lit_celeba.errors import CelebAError

_MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes | memoryview) -> int:
    """CRC32C of ``data``."""
    # google_crc32c takes bytes only, not a memoryview: the copy costs under 1 us a record.
    return google_crc32c.value(data if isinstance(data, bytes) else bytes(data))


def mask(crc: int) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits and add a constant."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --- framing -------------------------------------------------------------------------------------

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


# --- tf.train.Example ----------------------------------------------------------------------------

Feature = bytes | list[int] | list[float]


def _example_pool() -> descriptor_pool.DescriptorPool:
    """``tf.train.Example`` (tensorflow/core/example/{example,feature}.proto) built with
    protobuf's descriptor API, so that protobuf's compiled parser reads it; and two other readings
    of the same wire format for :func:`feature_entries`."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="lit_celeba_example.proto", package="lc")
    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    for name, kind in (("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT),
                       ("Int64List", F.TYPE_INT64)):  # fmt: skip
        field = file.message_type.add(name=name).field.add(name="value", number=1, type=kind,
                                                           label=rep)  # fmt: skip
        if kind != F.TYPE_BYTES:
            field.options.packed = True
    feature = file.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), start=1):
        type_name = ".lc." + name.title().replace("_", "")
        feature.field.add(name=name, number=number, type=F.TYPE_MESSAGE, label=opt,
                          type_name=type_name, oneof_index=0)  # fmt: skip
    features = file.message_type.add(name="Features")
    features.field.add(name="feature", number=1, type=F.TYPE_MESSAGE, label=rep,
                       type_name=".lc.Features.FeatureEntry")  # fmt: skip
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt,
                    type_name=".lc.Feature")  # fmt: skip
    file.message_type.add(name="Example").field.add(
        name="features", number=1, type=F.TYPE_MESSAGE, label=opt, type_name=".lc.Features"
    )
    # The map's entries declared as ONE message whose key and value are repeated: protobuf
    # merges the repeated occurrences of a singular message field, concatenating their repeated
    # fields, so one parse gives every key and every serialized Feature, in the order of the
    # wire, without a Python object per entry (the map took 0.1 ms a record to walk).
    entries = file.message_type.add(name="Entries")
    entries.field.add(name="key", number=1, type=F.TYPE_STRING, label=rep)
    entries.field.add(name="value", number=2, type=F.TYPE_BYTES, label=rep)
    file.message_type.add(name="EntriesFeatures").field.add(
        name="feature", number=1, type=F.TYPE_MESSAGE, label=opt, type_name=".lc.Entries"
    )
    file.message_type.add(name="EntriesExample").field.add(
        name="features", number=1, type=F.TYPE_MESSAGE, label=opt,
        type_name=".lc.EntriesFeatures",
    )
    # And each entry as bytes, to count them: the two lists pair up only if every entry has
    # one key and one value.
    file.message_type.add(name="RawFeatures").field.add(
        name="feature", number=1, type=F.TYPE_BYTES, label=rep
    )
    file.message_type.add(name="RawExample").field.add(
        name="features", number=1, type=F.TYPE_MESSAGE, label=opt, type_name=".lc.RawFeatures"
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool


def _message(name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"lc.{name}"))


_POOL = _example_pool()
_Example = _message("Example")
_Feature = _message("Feature")
_EntriesExample = _message("EntriesExample")
_RawExample = _message("RawExample")


def parse_example(payload: bytes | memoryview) -> dict[str, Feature]:
    """A serialized ``tf.train.Example`` as {feature name: bytes | list of ints | list of floats}
    (a bytes feature gives its first value: one image here).

    Raises ValueError on bytes that are not an Example.
    """
    try:
        example = _Example.FromString(bytes(payload))
    except DecodeError as err:
        raise ValueError(f"not a tf.train.Example ({err})") from None
    features: dict[str, Feature] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            values = feature.bytes_list.value
            features[key] = values[0] if values else b""
        elif kind == "int64_list":
            features[key] = list(feature.int64_list.value)
        elif kind == "float_list":
            features[key] = list(feature.float_list.value)
        else:
            features[key] = []
    return features


def feature_entries(payload: bytes | memoryview) -> dict[str, bytes]:
    """A serialized ``tf.train.Example`` as {feature name: the serialized ``Feature``}, decoded
    by :func:`first_ints` and :func:`first_bytes` for the features wanted. The same map as
    :func:`parse_example`'s: a key given twice keeps its last value.

    Raises ValueError on bytes that are not an Example.
    """
    try:
        entries = _EntriesExample.FromString(payload).features.feature
        count = len(_RawExample.FromString(payload).features.feature)
    except DecodeError as err:
        raise ValueError(f"not a tf.train.Example ({err})") from None
    keys, values = entries.key, entries.value
    if len(keys) == len(values) == count:
        return dict(zip(keys, values, strict=True))
    # An entry without its key or its value (protobuf's writers write both; this one left out
    # a default): the lists do not pair up, so read the map entry by entry.
    example = _Example.FromString(payload)
    return {key: value.SerializeToString() for key, value in example.features.feature.items()}


def _parse_feature(feature: bytes):
    try:
        return _Feature.FromString(feature)
    except DecodeError as err:
        raise ValueError(f"not a tf.train.Feature ({err})") from None


# Serialized Features seen -> their first int: a record's 40 attributes are a few distinct byte
# strings (0 or 1), and looking them up is 20 times faster than parsing each.
_FIRST_INT: dict[bytes, int | None] = {}


def first_ints(features: Sequence[bytes]) -> list[int | None]:
    """The first value of each serialized ``Feature`` holding an ``int64_list``; None for one
    that holds no int (another kind of list, or an empty one).

    Raises ValueError on bytes that are not a Feature.
    """
    try:
        return list(map(_FIRST_INT.__getitem__, features))
    except KeyError:
        return [_FIRST_INT[f] if f in _FIRST_INT else _remember_int(f) for f in features]


def _remember_int(feature: bytes) -> int | None:
    parsed = _parse_feature(feature)
    values = parsed.int64_list.value if parsed.WhichOneof("kind") == "int64_list" else ()
    value = int(values[0]) if len(values) else None
    if len(_FIRST_INT) > 4096:
        _FIRST_INT.clear()  # not attributes after all: keep the memory bounded
    _FIRST_INT[feature] = value
    return value


def first_bytes(feature: bytes) -> bytes | None:
    """The first value of a serialized ``Feature`` holding a ``bytes_list`` (``b""`` if the list
    is empty, as :func:`parse_example` gives); None if it holds another kind.

    Raises ValueError on bytes that are not a Feature.
    """
    parsed = _parse_feature(feature)
    if parsed.WhichOneof("kind") != "bytes_list":
        return None
    values = parsed.bytes_list.value
    return values[0] if values else b""


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _delimited(number: int, body: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(body)) + body


def encode_example(features: dict[str, Feature]) -> bytes:
    """Serialize {name: bytes | list of ints | list of floats} as a ``tf.train.Example``."""
    entries = []
    for key, value in features.items():
        if isinstance(value, bytes):
            feature = _delimited(1, _delimited(1, value))
        elif all(isinstance(v, int) for v in value):
            packed = b"".join(_encode_varint(v) for v in value)
            feature = _delimited(3, _delimited(1, packed))
        else:
            feature = _delimited(2, _delimited(1, np.asarray(value, "<f4").tobytes()))
        entries.append(_delimited(1, _delimited(1, key.encode()) + _delimited(2, feature)))
    return _delimited(1, b"".join(entries))
