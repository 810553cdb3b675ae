"""CelebADataModule on generated data: subsets, targets, both layouts, and the bad cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lit_celeba.data.celeba import load_index
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.errors import CelebAError, SettingError
from tests.conftest import TINY_SIZES


def datamodule(root: Path, **kwargs) -> CelebADataModule:
    settings = dict(
        root=str(root),
        train_size=40,
        val_size=20,
        test_size=None,
        num_workers=0,
        batch_size=8,
        cache=False,
    )
    return CelebADataModule(**{**settings, **kwargs})


def test_subsets_are_the_first_images_in_file_order(tiny_root: Path) -> None:
    dm = datamodule(tiny_root)
    dm.setup("fit")
    dm.setup("test")
    assert dm.datasets["train"].image_names == [f"{i:06d}.jpg" for i in range(1, 41)]
    first_valid = TINY_SIZES["train"] + 1
    assert dm.datasets["val"].image_names[0] == f"{first_valid:06d}.jpg"
    assert len(dm.datasets["val"]) == 20
    assert len(dm.datasets["test"]) == TINY_SIZES["test"]  # test_size None: the whole split


@pytest.mark.parametrize("attr", ["Male", "Young"])
def test_targets_are_the_named_column(tiny_root: Path, attr: str) -> None:
    dm = datamodule(tiny_root, target_attr=attr)
    dm.setup("fit")
    index = load_index(tiny_root)
    column = index.attributes[:40, index.attr_names.index(attr)]
    assert dm.datasets["train"].targets.reshape(-1).tolist() == column.tolist()


def test_batches_have_the_recipe_shape_and_range(tiny_root: Path) -> None:
    dm = datamodule(tiny_root)
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert targets.shape == (8, 1) and set(targets.unique().tolist()) <= {0.0, 1.0}
    val_images, _ = next(iter(dm.val_dataloader()))
    again, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(val_images, again)  # eval transform has no randomness


def test_cached_batches_equal_the_per_sample_path(tiny_root: Path, tmp_path: Path) -> None:
    exact, cached = datamodule(tiny_root), datamodule(tiny_root, cache=True, cache_dir=tmp_path)
    exact.setup("fit")
    cached.setup("fit")
    raw_images, raw_targets = next(iter(cached.val_dataloader()))
    assert raw_images.dtype == torch.uint8 and raw_images.shape == (8, 218, 128, 3)
    images, targets = cached.on_after_batch_transfer((raw_images, raw_targets), 0)
    expected_images, expected_targets = next(iter(exact.val_dataloader()))
    assert images.shape == expected_images.shape == (8, 3, 64, 64)
    torch.testing.assert_close(images, expected_images, atol=1e-6, rtol=0)
    assert torch.equal(targets, expected_targets)


def test_kaggle_layout_loads_the_same_data(tmp_path: Path, tiny_root: Path) -> None:
    generate_celeba(tmp_path, 96, 48, 48, seed=3, layout="kaggle", progress=False)
    official, kaggle = datamodule(tiny_root), datamodule(tmp_path)
    official.setup("fit")
    kaggle.setup("fit")
    assert kaggle.datasets["train"].image_dir.parts[-2:] == ("img_align_celeba", "img_align_celeba")
    assert torch.equal(official.datasets["val"][3][0], kaggle.datasets["val"][3][0])
    assert torch.equal(official.datasets["train"].targets, kaggle.datasets["train"].targets)


def _copy(tiny_root: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_root, copy)
    return copy


def test_missing_image_is_named(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path)
    (root / "celeba" / "img_align_celeba" / "000007.jpg").unlink()
    with pytest.raises(CelebAError, match=r"1 image\(s\) of the 'train' subset.*000007\.jpg"):
        datamodule(root).setup("fit")


def test_missing_image_folder_is_named(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path)
    shutil.rmtree(root / "celeba" / "img_align_celeba")
    with pytest.raises(CelebAError, match=r"image folder .*img_align_celeba is missing"):
        datamodule(root).setup("fit")


@pytest.mark.parametrize("cache", [False, True])
def test_unreadable_image_is_named(tiny_root: Path, tmp_path: Path, cache: bool) -> None:
    root = _copy(tiny_root, tmp_path)
    bad = root / "celeba" / "img_align_celeba" / "000003.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    dm = datamodule(root, cache=cache, cache_dir=tmp_path / "cache")
    with pytest.raises(CelebAError, match=r"Cannot read image .*000003\.jpg"):
        dm.setup("fit")  # the cache decodes every image while it is built
        dm.datasets["train"][2]  # without a cache, the image is decoded on access


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"train_size": -5}, "train_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"image_size": 4}, "image_size"),
    ],
)
def test_invalid_settings(tiny_root: Path, kwargs, message) -> None:
    # In the data module's own terms: its argument name; the CLI adds "data.".
    with pytest.raises(SettingError) as refused:
        datamodule(tiny_root, **kwargs)
    assert refused.value.setting == message and str(refused.value).startswith(f"{message} ")


def test_synthetic_generates_on_first_use_only(tmp_path: Path) -> None:
    dm = datamodule(tmp_path / "demo", synthetic=True, train_size=24, val_size=8, test_size=8)
    dm.prepare_data()
    jpgs = sorted((tmp_path / "demo" / "celeba" / "img_align_celeba").glob("*.jpg"))
    assert len(jpgs) == 40
    stamp = jpgs[0].stat().st_mtime_ns
    dm.prepare_data()  # second run reuses the generated set
    assert jpgs[0].stat().st_mtime_ns == stamp
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 24


def test_synthetic_never_overwrites_real_data(tiny_root: Path, tmp_path: Path) -> None:
    root = _copy(tiny_root, tmp_path)
    for marker in root.rglob("SYNTHETIC.json"):
        marker.unlink()  # now it looks like a user's real copy
    before = sorted(p.name for p in (root / "celeba" / "img_align_celeba").iterdir())
    dm = datamodule(root, synthetic=True, train_size=24, val_size=8, test_size=8)
    with pytest.raises(CelebAError, match="data.synthetic is true but"):
        dm.prepare_data()
    assert sorted(p.name for p in (root / "celeba" / "img_align_celeba").iterdir()) == before
