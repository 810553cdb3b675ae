"""Every form CelebA comes in (unpacked, official zip, Kaggle's archive, tfds TFRecords) gives the
same subsets, labels and pixels, image by image, and the clear errors of a broken copy."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lit_celeba.base.errors import CelebAError
from lit_celeba.data.cache import build_cache
from lit_celeba.data.celeba import label_arrays
from lit_celeba.data.copies import find_copy, load_copy
from lit_celeba.data.order import subset_rows, tfds_key, tfds_sorted
from lit_celeba.data.synthetic.forms import write_form
from lit_celeba.data.transforms import columns_read
from tests.conftest import CONFIGS, REPO, TINY_SIZES, cli_in_process, tiny_overrides

SIZES = (TINY_SIZES["train"], TINY_SIZES["valid"], TINY_SIZES["test"])
FORMS = ("zip", "kaggle-zip", "tfds")
COLUMNS = columns_read(64)


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same generated set (seed 3, as tiny_root) in every form, plus the official download
    kept in Google Drive's Anno/ Eval/ Img/ folders and Kaggle's archive unpacked."""
    base = tmp_path_factory.mktemp("forms")
    roots = {form: write_form(base / form, form, *SIZES, seed=3, progress=False)
             for form in ("unpacked", *FORMS)}  # fmt: skip
    drive = base / "drive"
    for folder in ("Anno", "Eval", "Img"):
        (drive / folder).mkdir(parents=True)
    shutil.copy(roots["zip"] / "list_attr_celeba.txt", drive / "Anno")
    shutil.copy(roots["zip"] / "list_eval_partition.txt", drive / "Eval")
    shutil.copy(roots["zip"] / "img_align_celeba.zip", drive / "Img")
    roots["drive"] = drive
    kaggle = base / "kaggle-unpacked"
    with zipfile.ZipFile(roots["kaggle-zip"] / "archive.zip") as archive:
        archive.extractall(kaggle)
    roots["kaggle-unpacked"] = kaggle
    roots["kaggle-archive-file"] = roots["kaggle-zip"] / "archive.zip"
    return roots


EXPECTED_FORM = {
    "unpacked": "official",
    "zip": "official zip",
    "drive": "official zip",
    "kaggle-zip": "kaggle zip",
    "kaggle-archive-file": "kaggle zip",
    "kaggle-unpacked": "kaggle",
    "tfds": "tfds",
}


@pytest.mark.parametrize("form", EXPECTED_FORM, ids=str)
def test_each_form_matches_the_unpacked_set_image_by_image(forms, form, tmp_path) -> None:
    assert find_copy(forms[form]) == EXPECTED_FORM[form]
    copy, unpacked = load_copy(forms[form]), load_copy(forms["unpacked"])
    attrs = unpacked.index.attr_names
    for split, size in (("train", 50), ("valid", None), ("test", 7)):
        rows = subset_rows(copy.index, split, size, "tfds", copy.source.tfds_order_only)
        expected = subset_rows(unpacked.index, split, size, "tfds")
        assert len(rows) == len(expected) == (size or SIZES[1])
        names = [copy.index.image_names[r] for r in rows]
        expected_names = [unpacked.index.image_names[r] for r in expected]
        # The very same JPEG bytes in the same order (tfds stores no names: match by content).
        assert copy.source.read_many(names) == unpacked.source.read_many(expected_names)
        targets, groups = label_arrays(copy.index, rows, attrs, ["Smiling"])
        expected_targets, expected_groups = label_arrays(unpacked.index, expected, attrs,
                                                         ["Smiling"])  # fmt: skip
        assert np.array_equal(targets, expected_targets)
        assert np.array_equal(groups, expected_groups)
        cache = build_cache(copy.source, names, tmp_path, COLUMNS, workers=2)
        reference = build_cache(unpacked.source, expected_names, tmp_path, COLUMNS, workers=1)
        assert np.array_equal(np.load(cache), np.load(reference))
        if form != "unpacked":
            assert cache != reference  # the source is part of the key: caches never mix


def test_file_order_is_the_same_in_every_form_that_has_names(forms) -> None:
    unpacked = load_copy(forms["unpacked"])
    expected = subset_rows(unpacked.index, "train", 30, "file")
    assert [unpacked.index.image_names[r] for r in expected[:3]] == [
        "000001.jpg", "000002.jpg", "000003.jpg"]  # fmt: skip
    copy = load_copy(forms["kaggle-zip"])
    rows = subset_rows(copy.index, "train", 30, "file")
    assert [copy.index.image_names[r] for r in rows] == [
        unpacked.index.image_names[r] for r in expected
    ]


def test_tfds_order_is_md5_of_split_and_name() -> None:
    # tfds' Hasher: md5 seeded with the split name (the salt), updated with the key, as an int.
    salted = hashlib.md5(b"train")
    salted.update(b"000001.jpg")
    assert tfds_key("train", "000001.jpg") == int(salted.hexdigest(), 16)
    assert tfds_key("validation", "162771.jpg") == int(
        hashlib.md5(b"validation162771.jpg").hexdigest(), 16
    )
    # The issue's check with tfds' own builder: a generated train split (of 3,000 files) comes
    # out as 000370, 002055, 001220, 001428, 001014, ...
    names = [f"{i:06d}.jpg" for i in range(1, 3001)]
    first = [names[i] for i in tfds_sorted("train", names)[:5]]
    assert first == ["000370.jpg", "002055.jpg", "001220.jpg", "001428.jpg", "001014.jpg"]


def test_a_tfds_copy_has_no_file_order(forms) -> None:
    copy = load_copy(forms["tfds"])
    with pytest.raises(CelebAError, match="stores no file names.*subsets.order tfds"):
        subset_rows(copy.index, "train", 10, "file", copy.source.tfds_order_only)


def test_the_preview_and_the_uncached_dataset_read_through_the_source(forms, tmp_path) -> None:
    from lit_celeba.callbacks.pictures import raw_train_images
    from lit_celeba.data.datamodule import CelebADataModule
    from lit_celeba.data.settings import Subsets

    images = {}
    for form in ("unpacked", "kaggle-zip", "tfds"):
        dm = CelebADataModule(root=str(forms[form]), subsets=Subsets(train=20, val=5, order="tfds"),
                              batch_size=4,
                              num_workers=0, cache=False,
                              cache_dir=str(tmp_path))  # fmt: skip
        dm.setup("fit")
        preview = raw_train_images(dm, 3)
        first, *_ = dm.datasets["val"][0]  # decoded on access, as the transforms read it
        images[form] = (preview, first)
    for form in ("kaggle-zip", "tfds"):
        assert all(a.equal(b) for a, b in zip(images[form][0], images["unpacked"][0], strict=True))
        assert images[form][1].equal(images["unpacked"][1])


# --- a broken copy: one clear error naming the archive and the member ----------------------------


def _copy_form(forms, form: str, tmp_path: Path) -> Path:
    target = tmp_path / form
    shutil.copytree(forms[form], target)
    return target


def _without_member(archive: Path, member: str) -> None:
    kept = archive.with_suffix(".tmp")
    with zipfile.ZipFile(archive) as old, zipfile.ZipFile(kept, "w") as new:
        for info in old.infolist():
            if info.filename != member:
                new.writestr(info, old.read(info))
    kept.replace(archive)


def test_a_member_missing_from_the_zip_is_named(forms, tmp_path) -> None:
    root = _copy_form(forms, "zip", tmp_path)
    _without_member(root / "img_align_celeba.zip", "img_align_celeba/000003.jpg")
    copy = load_copy(root)
    rows = subset_rows(copy.index, "train", 10, "file")
    names = [copy.index.image_names[r] for r in rows]
    with pytest.raises(CelebAError) as err:
        copy.source.check(names, "train", copy.index.files.attr_file)
    message = str(err.value)
    assert "img_align_celeba.zip" in message and "img_align_celeba/000003.jpg" in message
    with pytest.raises(CelebAError, match="has no member img_align_celeba/000003.jpg"):
        copy.source.read("000003.jpg")


def test_a_truncated_zip_is_named(forms, tmp_path) -> None:
    root = _copy_form(forms, "kaggle-zip", tmp_path)
    archive = root / "archive.zip"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(CelebAError, match=r"archive\.zip.*incomplete download"):
        load_copy(root)


def test_a_damaged_member_is_named(forms, tmp_path) -> None:
    root = _copy_form(forms, "zip", tmp_path)
    archive = root / "img_align_celeba.zip"
    with zipfile.ZipFile(archive) as members:
        info = members.getinfo("img_align_celeba/000005.jpg")
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    copy = load_copy(root)
    with pytest.raises(CelebAError, match=r"img_align_celeba/000005\.jpg from the archive"):
        copy.source.read("000005.jpg")


def test_an_annotation_file_missing_is_named(forms, tmp_path) -> None:
    root = _copy_form(forms, "kaggle-zip", tmp_path)
    _without_member(root / "archive.zip", "list_eval_partition.csv")
    with pytest.raises(CelebAError, match=r"archive\.zip has no list_eval_partition\.csv"):
        load_copy(root)
    drive = _copy_form(forms, "drive", tmp_path)
    (drive / "Eval" / "list_eval_partition.txt").unlink()
    with pytest.raises(CelebAError, match=r"Anno/list_attr_celeba\.txt but not .*Eval"):
        find_copy(drive)


def test_a_corrupted_or_truncated_tfrecord_is_named(forms, tmp_path) -> None:
    root = _copy_form(forms, "tfds", tmp_path)
    shard = root / "celeb_a" / "2.1.0" / "celeb_a-validation.tfrecord-00000-of-00001"
    original = shard.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CelebAError, match=rf"{shard.name}, record \d+ .*CRC"):
        load_copy(root)
    shard.write_bytes(original[: len(original) - 100])
    with pytest.raises(CelebAError, match=rf"{shard.name}, record 47 .*truncated"):
        load_copy(root)
    shard.write_bytes(original)
    # Cut at a record boundary: only dataset_info.json's count tells.
    copy = load_copy(root)
    last = copy.source.places[f"{shard.name}#47"].offset
    shard.write_bytes(original[:last])
    with pytest.raises(CelebAError, match="holds 47 records, but .*dataset_info.json says 48"):
        load_copy(root)


def test_a_root_of_none_of_the_forms_lists_them_all(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CelebAError) as err:
        find_copy(tmp_path / "empty")
    for form in ("ROOT/celeba/list_attr_celeba.txt", "ROOT/list_attr_celeba.csv",
                 "img_align_celeba.zip", "archive.zip", "Anno/list_attr_celeba.txt",
                 "celeb_a/<version>"):  # fmt: skip
        assert form in str(err.value)


# --- end to end: one tiny epoch from each form through the CLI -----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("form", ["unpacked", *FORMS], ids=str)
def test_cli_trains_from_each_form(forms, form, tmp_path) -> None:
    work = tmp_path / "run"
    work.mkdir()
    result = cli_in_process(  # in this process: the caches it builds are the test
        "fit", "--config", str(CONFIGS / "base.yaml"), *tiny_overrides(forms[form], work / "logs"),
        "--model.net.channels=[8, 16, 16, 16]", "--data.image_size=32", "--data.batch_size=32",
        "--trainer.max_epochs=1", cwd=work,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    caches = sorted((work / "cache").glob("celeba-*.npy"))
    assert len(caches) == 2  # train and valid
    # The same pixels as the unpacked set's subsets in tfds order (base.yaml's subsets.order).
    unpacked = load_copy(forms["unpacked"])
    expected = []
    for split, size in (("train", SIZES[0]), ("valid", SIZES[1])):
        rows = subset_rows(unpacked.index, split, size, "tfds")
        names = [unpacked.index.image_names[r] for r in rows]
        expected.append(np.load(build_cache(unpacked.source, names, tmp_path / "ref",
                                            columns_read(32), workers=1)))  # fmt: skip
    arrays = sorted((np.load(p) for p in caches), key=len)
    assert np.array_equal(arrays[1], expected[0]) and np.array_equal(arrays[0], expected[1])


# -- the official image archive, or the image folder, given as the root ----------------------------


def test_the_official_image_zip_as_the_root_is_named_as_such(tmp_path: Path) -> None:
    root = write_form(tmp_path / "zipped", "zip", 8, 4, 4, progress=False)
    with pytest.raises(CelebAError) as caught:
        find_copy(root / "img_align_celeba.zip")
    message = str(caught.value)
    assert "an archive of images only (CelebA's official img_align_celeba.zip" in message
    assert f"{root} has them: pass --data.root {root}" in message and "Kaggle's archive" in message
    assert zipfile.is_zipfile(root / "img_align_celeba.zip")


def test_the_image_folder_as_the_root_names_the_folder_above(tiny_root: Path) -> None:
    with pytest.raises(CelebAError, match=r"looks like CelebA's image folder.*--data.root "
                       rf"{tiny_root / 'celeba'}"):  # fmt: skip
        find_copy(tiny_root / "celeba" / "img_align_celeba")


def test_a_tfds_copy_without_the_tfds_extra_names_it(forms, tmp_path, monkeypatch) -> None:
    """google-crc32c is the ``[tfds]`` extra (issue 33): lit_celeba imports without it, and a
    tfds copy read without it is one line that names the install."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "google_crc32c.py").write_text("raise ImportError('not installed')\n")
    check = "import lit_celeba.data.tfrecord as t; assert t.google_crc32c is None"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(blocked)])}
    imported = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    from lit_celeba.data import tfrecord

    monkeypatch.setattr(tfrecord, "google_crc32c", None)  # the forked index readers see it too
    result = cli_in_process(
        "fit", "--config", str(CONFIGS / "base.yaml"), *tiny_overrides(forms["tfds"], tmp_path),
        "--trainer.max_epochs=1", "--data.cache=false", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert ("TFRecords (a tfds copy of CelebA, or the demo set's tfds form) need the "
            "google-crc32c package, the checksum of every record: pip install "
            "'lit_celeba[tfds]'") in result.stderr  # fmt: skip
