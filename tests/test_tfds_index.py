"""The index of a tfds copy: the same as a full parse of every record, read in parallel over the
shards, and kept in the cache folder: reused while the shards are unchanged, read again when one
changes, and rebuilt (saying so) when the kept file is damaged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from lit_celeba.base.errors import CelebAError, UsageError
from lit_celeba.data import tf_example, tfds_index, tfds_records, tfrecord
from lit_celeba.data.copies import load_copy
from lit_celeba.data.sources import TFDS_SPLITS
from lit_celeba.data.synthetic.forms import write_form
from tests.conftest import TINY_SIZES

SIZES = (TINY_SIZES["train"], TINY_SIZES["valid"], TINY_SIZES["test"])


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_form(tmp_path_factory.mktemp("tfds") / "tfds", "tfds", *SIZES, seed=3,
                      progress=False)  # fmt: skip


@pytest.fixture
def root(generated: Path, tmp_path: Path) -> Path:
    """A copy of the generated tfds data dir that a test may change."""
    return Path(shutil.copytree(generated, tmp_path / "tfds"))


def _folder(root: Path) -> Path:
    return root / "celeb_a" / "2.1.0"


def _shard(root: Path, split: str = "validation") -> Path:
    return next(_folder(root).glob(f"celeb_a-{split}.tfrecord-*"))


def _summary(copy) -> tuple:
    """Everything a copy's index holds, in comparable form."""
    places = {name: (p.file, p.number, p.offset, p.image) for name, p in copy.source.places.items()}
    attributes = {name: copy.index.attributes[:, i].tolist()
                  for i, name in enumerate(copy.index.attr_names)}  # fmt: skip
    return (copy.index.image_names, attributes, copy.index.partition.tolist(), places,
            [str(f) for f in copy.source.files])  # fmt: skip


def _full_parse(root: Path) -> dict[str, tuple]:
    """Each record by name, read with the general parser: (partition, attributes, image)."""
    records = {}
    for path in sorted(_folder(root).glob("celeb_a-*.tfrecord-*")):
        split = path.name.split(".")[0].removeprefix("celeb_a-")
        for number, (_, payload) in enumerate(tfrecord.scan_records(path)):
            features = tf_example.parse_example(payload)
            attributes = {key.removeprefix("attributes/"): value[0]
                          for key, value in features.items()
                          if key.startswith("attributes/")}  # fmt: skip
            records[f"{path.name}#{number}"] = (TFDS_SPLITS[split], attributes, features["image"])
    return records


class _Counter:
    """Counts the records a test lets the index read; with ``forbid``, reading any record (or
    parsing one) fails the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records = 0
        self.forbid = False
        scan, framed = tfrecord.scan_records, tfrecord.read_framed
        entries = tf_example.feature_entries

        def counted(path, *args, **kwargs):
            self._check(path)
            for record in scan(path, *args, **kwargs):
                self.records += 1
                yield record

        def read_framed(path, *args, **kwargs):
            self._check(path)
            return framed(path, *args, **kwargs)

        def feature_entries(payload):
            self._check("a record")
            return entries(payload)

        monkeypatch.setattr(tfrecord, "scan_records", counted)
        monkeypatch.setattr(tfrecord, "read_framed", read_framed)
        monkeypatch.setattr(tf_example, "feature_entries", feature_entries)

    def _check(self, what) -> None:
        if self.forbid:
            raise AssertionError(f"{what} was read although its index is kept")


def test_the_index_is_what_a_full_parse_of_every_record_gives(root) -> None:
    copy = load_copy(root)
    expected = _full_parse(root)
    assert sorted(copy.index.image_names) == sorted(expected)
    assert len(copy.index.image_names) == sum(SIZES)
    for row, name in enumerate(copy.index.image_names):
        partition, attributes, image = expected[name]
        assert copy.index.partition[row] == partition
        assert dict(zip(copy.index.attr_names, copy.index.attributes[row].tolist(),
                        strict=True)) == attributes  # fmt: skip
        # The JPEG's place: its bytes read straight from the file are the record's image.
        assert copy.source.read(name) == image
    # Places are made on request, for the names the copy has and no other.
    name = copy.index.image_names[-1]
    for other in ("000001.jpg", f"{name}0", name.replace("#", "#0"), f"{name[:-2]}#-1"):
        assert other not in copy.source.places
    assert len(copy.source.places) == len(copy.index.image_names)
    # The attributes in the order the records store them (the generator's: CelebA's order).
    assert copy.index.attr_names[:3] == ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive"]


def test_a_kept_index_is_read_without_reading_a_record(root, tmp_path, monkeypatch) -> None:
    uncached = _summary(load_copy(root))
    counter = _Counter(monkeypatch)
    first = load_copy(root, tmp_path / "cache")
    assert counter.records == sum(SIZES)
    (kept,) = (tmp_path / "cache").glob("tfds-index-*.npz")
    counter.forbid = True
    second = load_copy(root, tmp_path / "cache")
    assert _summary(first) == _summary(second) == uncached
    assert list((tmp_path / "cache").iterdir()) == [kept]  # no temporary left behind


def test_a_changed_shard_is_read_again(root, tmp_path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    load_copy(root, cache)
    shard = _shard(root)
    # Rewrite the shard with record 0's Male attribute flipped (a shard prepared again).
    payloads = [bytes(p) for _, p in tfrecord.scan_records(shard)]
    features = tf_example.parse_example(payloads[0])
    features["attributes/Male"] = [1 - features["attributes/Male"][0]]
    payloads[0] = tf_example.encode_example(features)
    tfrecord.write_records(shard, payloads)
    counter = _Counter(monkeypatch)
    copy = load_copy(root, cache)
    assert counter.records == sum(SIZES)
    assert f"{shard.resolve()} has changed" in capsys.readouterr().err
    row = copy.index.image_names.index(f"{shard.name}#0")
    assert copy.index.attributes[row, copy.index.attr_column("Male")] == features[
        "attributes/Male"][0]  # fmt: skip
    assert _summary(copy) == _summary(load_copy(root))
    # Only the time changed (the same bytes written again): read again too.
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    counter.records = 0
    load_copy(root, cache)
    assert counter.records == sum(SIZES)
    counter.forbid = True
    load_copy(root, cache)  # and kept again


def test_a_shard_damaged_after_it_was_indexed_is_named(root, tmp_path) -> None:
    cache = tmp_path / "cache"
    load_copy(root, cache)
    shard = _shard(root)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))  # a write changes the file's time
    with pytest.raises(CelebAError, match=rf"{shard.name}, record \d+ .*CRC"):
        load_copy(root, cache)
    shard.unlink()
    with pytest.raises(CelebAError, match=rf"lacks {shard.name}|no celeb_a-validation"):
        load_copy(root, cache)


def _rewrite_kept(kept: Path, change, fix_digest: bool) -> None:
    with np.load(kept) as arrays:
        content = {name: arrays[name] for name in arrays.files}
    change(content)
    if fix_digest:
        content["digest"] = np.array(tfds_index._digest(content))
    with open(kept, "wb") as fh:
        np.savez(fh, **content)


def _flip_attribute(content: dict) -> None:
    content["attributes"] = content["attributes"].copy()
    content["attributes"][0, 0] ^= 1


def _other_version(content: dict) -> None:
    meta = json.loads(str(content["meta"]))
    meta["version"] = 0
    content["meta"] = np.array(json.dumps(meta))


def _flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda kept: kept.write_bytes(kept.read_bytes()[: kept.stat().st_size // 2]),
    "header-flipped": lambda kept: _flip(kept, 400),  # an array's header
    "data-flipped": lambda kept: _flip(kept, kept.stat().st_size // 2),  # the zip's CRC-32 tells
    "not-an-index": lambda kept: kept.write_bytes(b"not a zip file at all"),
    "content-changed": lambda kept: _rewrite_kept(kept, _flip_attribute, fix_digest=False),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=str)
def test_a_damaged_index_is_named_and_rebuilt(root, tmp_path, monkeypatch, capsys,
                                              damage) -> None:  # fmt: skip
    cache = tmp_path / "cache"
    expected = _summary(load_copy(root, cache))
    (kept,) = cache.glob("tfds-index-*.npz")
    DAMAGE[damage](kept)
    counter = _Counter(monkeypatch)
    assert _summary(load_copy(root, cache)) == expected
    assert counter.records == sum(SIZES)
    message = capsys.readouterr().err
    assert f"rebuild their index {kept}: it is damaged" in message
    assert "pickle" not in message
    counter.forbid = True
    assert _summary(load_copy(root, cache)) == expected  # the rebuilt index is whole


def test_an_index_of_another_format_version_is_rebuilt(root, tmp_path, monkeypatch,
                                                       capsys) -> None:  # fmt: skip
    cache = tmp_path / "cache"
    load_copy(root, cache)
    (kept,) = cache.glob("tfds-index-*.npz")
    _rewrite_kept(kept, _other_version, fix_digest=True)
    counter = _Counter(monkeypatch)
    load_copy(root, cache)
    assert counter.records == sum(SIZES)
    assert f"it has format 0, this version reads {tfds_index.INDEX_VERSION}" in (
        capsys.readouterr().err
    )


def test_an_index_folder_that_cannot_be_written_is_named(root, tmp_path) -> None:
    # Tests run as root, who may write anywhere: a folder under a regular file stands in.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    with pytest.raises(UsageError, match=rf"tfds records in {blocker / 'cache'}: Not a directory"):
        load_copy(root, blocker / "cache")


def test_reading_in_parallel_gives_the_same_index(root, monkeypatch, capsys) -> None:
    expected = _summary(load_copy(root))
    assert "Indexing the tfds records" not in capsys.readouterr().err  # a moment: no bar
    monkeypatch.setattr(tfds_records, "PARALLEL_FROM_BYTES", 0)
    folder = _folder(root)
    from lit_celeba.data.copies import _load_tfds

    assert _summary(_load_tfds(folder, workers=3)) == expected
    assert "Indexing the tfds records" in capsys.readouterr().err
    # A damaged shard read by a worker process is named as in one process.
    shard = _shard(root, "train")
    offsets = [offset for offset, _ in tfrecord.scan_records(shard)]
    data = bytearray(shard.read_bytes())
    data[offsets[5] + 100] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CelebAError, match=rf"{shard.name}, record 5 \(byte {offsets[5]}\)"):
        _load_tfds(folder, workers=3)


def _rewrite_shard(shard: Path, change) -> None:
    payloads = [bytes(p) for _, p in tfrecord.scan_records(shard)]
    records = [tf_example.parse_example(p) for p in payloads]
    change(records)
    tfrecord.write_records(shard, [tf_example.encode_example(r) for r in records])


def test_records_without_the_attributes_are_named(root) -> None:
    shard = _shard(root, "test")

    def drop_smiling(records):
        del records[3]["attributes/Smiling"]

    _rewrite_shard(shard, drop_smiling)
    with pytest.raises(CelebAError, match=rf"{shard.name}, record 3: lacks the attribute "
                                          "attributes/Smiling of record 0"):  # fmt: skip
        load_copy(root)

    def smiling_as_text(records):
        records[3]["attributes/Smiling"] = b"yes"

    _rewrite_shard(shard, smiling_as_text)
    with pytest.raises(CelebAError, match=r"record 3: the attribute attributes/Smiling holds "
                                          "no int64 value"):  # fmt: skip
        load_copy(root)
    first = next(_folder(root).glob("celeb_a-train.tfrecord-00000-*"))

    def no_attributes(records):
        records[0] = {"image": records[0]["image"]}

    _rewrite_shard(first, no_attributes)
    with pytest.raises(CelebAError, match=rf"{first.name}, record 0: no attributes/"):
        load_copy(root)


def test_the_datamodule_keeps_the_index_with_its_cache(generated, tmp_path) -> None:
    from lit_celeba.data.datamodule import CelebADataModule
    from lit_celeba.data.settings import Subsets

    for cache in (False, True):
        folder = tmp_path / f"cache-{cache}"
        dm = CelebADataModule(root=str(generated), subsets=Subsets(train=8, val=4, order="tfds"),
                              batch_size=4,
                              num_workers=0, cache=cache,
                              cache_dir=str(folder))  # fmt: skip
        dm.setup("validate")
        kept = list(folder.glob("tfds-index-*.npz")) if folder.exists() else []
        # With the cache off, nothing is written: the records are read at every setup.
        assert len(kept) == int(cache)
