"""``tf.train.Example``, the message a tfds record holds, read and written without TensorFlow
(the records' framing is :mod:`lit_celeba.data.tfrecord`).

An Example is ``features`` (field 1) holding a map ``feature`` (field 1) of string keys to a
``Feature``, which is one of ``bytes_list`` (1), ``float_list`` (2) or ``int64_list`` (3), each a
repeated ``value`` (field 1). tensorboard 2.21 no longer ships ``example_pb2``, so the messages
are built with protobuf's descriptor API and parsed by protobuf (a wire-format parser in Python
took 1.1 ms a record), and written here straight in the wire format (the synthetic tfds form).
:func:`parse_example` decodes every feature (0.12 ms for a CelebA record, most of it walking the
map in Python); :func:`feature_entries` hands out each feature still serialized, for the few that
are wanted (about 20 us).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

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
