"""The TFRecord reader (:mod:`lit_celeba.data.tfrecord`, :mod:`lit_celeba.data.tf_example`)
against an independent writer: protobuf's own ``tf.train.Example`` (built from a descriptor
here, since tensorboard ships no ``example_pb2``) framed by TensorBoard's own ``RecordWriter``,
with its own pure-Python CRC32C."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.summary.writer.record_writer import RecordWriter

from lit_celeba.base.errors import CelebAError
from lit_celeba.data import tf_example, tfrecord


def _example_class():
    """tf.train.Example from tensorflow/core/example/{example,feature}.proto, field by field."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="example_test.proto", package="tftest")

    def message(name, *fields, map_entry=False):
        msg = file.message_type.add(name=name)
        if map_entry:
            msg.options.map_entry = True
        for number, (field, kind, label, type_name) in enumerate(fields, start=1):
            msg.field.add(name=field, number=number, type=kind, label=label, type_name=type_name)
        return msg

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", ("value", F.TYPE_BYTES, rep, None))
    packed_float = message("FloatList", ("value", F.TYPE_FLOAT, rep, None))
    packed_int = message("Int64List", ("value", F.TYPE_INT64, rep, None))
    packed_float.field[0].options.packed = True
    packed_int.field[0].options.packed = True
    feature = message("Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate(
        (("bytes_list", ".tftest.BytesList"), ("float_list", ".tftest.FloatList"),
         ("int64_list", ".tftest.Int64List")), start=1,
    ):  # fmt: skip
        feature.field.add(name=name, number=number, type=F.TYPE_MESSAGE, label=opt,
                          type_name=type_name, oneof_index=0)  # fmt: skip
    entry_type = ".tftest.Features.FeatureEntry"
    features = message("Features", ("feature", F.TYPE_MESSAGE, rep, entry_type))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt,
                    type_name=".tftest.Feature")  # fmt: skip
    message("Example", ("features", F.TYPE_MESSAGE, opt, ".tftest.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tftest.Example"))


Example = _example_class()


def _proto_example(image: bytes, male: int, nose_x: int, score: float) -> bytes:
    example = Example()
    feature = example.features.feature
    feature["image"].bytes_list.value.append(image)
    feature["attributes/Male"].int64_list.value.append(male)
    feature["landmarks/nose_x"].int64_list.value.append(nose_x)
    feature["score"].float_list.value.extend([score, -score])
    return example.SerializeToString()


def _write_with_tensorboard(path: Path, payloads: list[bytes]) -> None:
    with open(path, "wb") as fh:
        writer = RecordWriter(fh)
        for payload in payloads:
            writer.write(payload)
        writer.flush()


@pytest.fixture
def records(tmp_path: Path) -> tuple[Path, list[bytes], list[tuple]]:
    rng = np.random.default_rng(0)
    values = [(rng.bytes(int(n)), i % 2, int(n) - 5000, i / 4) for i, n in
              enumerate(rng.integers(0, 9000, 40))]  # fmt: skip
    payloads = [_proto_example(*v) for v in values]
    path = tmp_path / "celeb_a-train.tfrecord-00000-of-00001"
    _write_with_tensorboard(path, payloads)
    return path, payloads, values


def test_crc32c_matches_the_definition_and_tensorboard() -> None:
    assert tfrecord.crc32c(b"123456789") == 0xE3069283  # the CRC32C check value (RFC 3720)
    rng = np.random.default_rng(1)
    data = [rng.bytes(int(n)) for n in [0, 1, 2, 3, 4, 5, 63, 64, 65, 130, 4096, 10007]]
    # TensorBoard's pure-Python CRC32C is an independent implementation of the same definition.
    assert [tfrecord.mask(tfrecord.crc32c(d)) for d in data] == [masked_crc32c(d) for d in data]
    assert [tfrecord.crc32c(memoryview(b"x" + d)[1:]) for d in data] == [
        tfrecord.crc32c(d) for d in data
    ]


def test_reads_tensorboard_framed_protobuf_examples(records) -> None:
    path, payloads, values = records
    read = list(tfrecord.scan_records(path))
    assert [bytes(p) for _, p in read] == payloads
    for (_, payload), (image, male, nose_x, score) in zip(read, values, strict=True):
        features = tf_example.parse_example(payload)
        assert features["image"] == image
        assert features["attributes/Male"] == [male]
        assert features["landmarks/nose_x"] == [nose_x]  # negative int64s too
        assert features["score"] == pytest.approx([score, -score])
    # Reading single records at their offsets gives the same payloads.
    with open(path, "rb") as fh:
        places = [(n, offset) for n, (offset, _) in enumerate(read)][::5]
        picked = tfrecord.read_framed(path, fh, places)
    assert [bytes(p) for p in picked] == payloads[::5]


def test_written_records_are_what_tensorboard_and_protobuf_read(tmp_path: Path) -> None:
    features = {"image": b"\xff\xd8 not really", "attributes/Male": [1], "landmarks/x": [-7, 300]}
    payload = tf_example.encode_example(features)
    parsed = Example.FromString(payload).features.feature
    assert parsed["image"].bytes_list.value == [features["image"]]
    assert list(parsed["landmarks/x"].int64_list.value) == [-7, 300]
    expected = io.BytesIO()
    RecordWriter(expected).write(payload)
    assert tfrecord.frame(payload) == expected.getvalue()


def _flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_corrupted_record_is_named(records) -> None:
    path, payloads, _ = records
    offsets = [offset for offset, _ in tfrecord.scan_records(path)]
    _flip(path, offsets[13] + 12 + len(payloads[13]) // 2)  # inside record 13's payload
    with pytest.raises(CelebAError) as err:
        list(tfrecord.scan_records(path))
    assert f"{path}, record 13 (byte {offsets[13]})" in str(err.value)
    assert "does not match its CRC" in str(err.value)
    with open(path, "rb") as fh, pytest.raises(CelebAError, match="record 13"):
        tfrecord.read_framed(path, fh, [(12, offsets[12]), (13, offsets[13])])


def test_a_corrupted_length_and_a_truncated_file_are_named(records) -> None:
    path, payloads, _ = records
    offsets = [offset for offset, _ in tfrecord.scan_records(path)]
    original = path.read_bytes()
    _flip(path, offsets[3] + 1)
    with pytest.raises(CelebAError, match=r"record 3 .*length does not match its CRC"):
        list(tfrecord.scan_records(path))
    path.write_bytes(original[: offsets[39] + 20])
    with pytest.raises(CelebAError, match=r"record 39 .*truncated"):
        list(tfrecord.scan_records(path))
    path.write_bytes(original[: offsets[39] + 5])
    with pytest.raises(CelebAError, match=r"record 39 .*inside a record header"):
        list(tfrecord.scan_records(path))


def test_feature_entries_read_each_feature_as_protobuf_does(records) -> None:
    _, payloads, values = records
    for payload, (image, male, nose_x, _) in zip(payloads, values, strict=True):
        entries = tf_example.feature_entries(memoryview(payload))
        assert set(entries) == set(tf_example.parse_example(payload))
        assert tf_example.first_bytes(entries["image"]) == image
        ints = tf_example.first_ints([entries["attributes/Male"], entries["landmarks/nose_x"]])
        assert ints == [male, nose_x]  # negative int64s too
        # Another kind of list: no int, no bytes.
        assert tf_example.first_ints([entries["score"]]) == [None]
        assert tf_example.first_bytes(entries["attributes/Male"]) is None
    # Twice in a row: the second answer comes from the remembered features.
    assert tf_example.first_ints([entries["attributes/Male"]]) == [values[-1][1]]


def test_feature_entries_follow_the_maps_rules() -> None:
    entry = tf_example._delimited  # (field number, body) -> one length-delimited field
    male = entry(3, entry(1, b"\x01"))  # Feature{int64_list{value: 1}}
    female = entry(3, entry(1, b"\x00"))
    twice = entry(1, entry(1, entry(1, b"attributes/Male") + entry(2, male))
                     + entry(1, entry(1, b"attributes/Male") + entry(2, female)))  # fmt: skip
    assert tf_example.first_ints([tf_example.feature_entries(twice)["attributes/Male"]]) == [0]
    assert tf_example.parse_example(twice)["attributes/Male"] == [0]  # the last one wins
    # An entry that has no value (protobuf's writer always writes one): an empty Feature.
    no_value = entry(1, entry(1, entry(1, b"attributes/Male")) + entry(1, entry(2, male)))
    entries = tf_example.feature_entries(no_value)
    assert set(entries) == {"attributes/Male", ""}
    assert tf_example.first_ints([entries["attributes/Male"]]) == [None]
    assert tf_example.first_ints([entries[""]]) == [1]
    with pytest.raises(ValueError, match="not a tf.train.Example"):
        tf_example.feature_entries(b"\x0a\x05ab")
    with pytest.raises(ValueError, match="not a tf.train.Feature"):
        tf_example.first_ints([b"\x1a\x05\x0a"])
