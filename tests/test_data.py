"""CelebADataModule on generated data: subsets, targets, both layouts, and the bad cases."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lit_celeba.base.errors import CelebAError, SettingError
from lit_celeba.data.celeba import load_index
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.demo_set import DemoSet
from lit_celeba.data.settings import Subsets
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.methods.colour import ColourChanges
from tests.conftest import TINY_SIZES


def datamodule(root: Path, **kwargs) -> CelebADataModule:
    settings = dict(
        root=str(root),
        subsets=Subsets(train=40, val=20, test=None),
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
    assert len(dm.datasets["test"]) == TINY_SIZES["test"]  # subsets.test None: the whole split


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
    raw, targets = next(iter(dm.train_dataloader()))
    # JPEGs decoded on access come in the decoded cache's layout, and are transformed as one
    # batch after the transfer to the device.
    assert raw.shape == (8, 218, 128, 3) and raw.dtype == torch.uint8
    images, _ = dm.on_after_batch_transfer((raw, targets), 0)
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert targets.shape == (8, 1) and set(targets.unique().tolist()) <= {0.0, 1.0}
    val_images, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    again, _ = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert torch.equal(val_images, again)  # eval transform has no randomness


def _transformed_batches(dm: CelebADataModule, stage: str, seed: int) -> list[tuple]:
    """Every batch of ``stage`` as the model gets it, ``seed_everything``-style seeded."""
    loader = dm.train_dataloader() if stage == "train" else dm.val_dataloader()
    # What the hook asks the trainer: its state, and its precision's input conversion (none here).
    identity = SimpleNamespace(convert_input=lambda images: images)
    dm.trainer = SimpleNamespace(training=stage == "train", precision_plugin=identity)
    torch.manual_seed(seed)
    try:
        return [dm.on_after_batch_transfer(batch, 0) for batch in loader]
    finally:
        dm.trainer = None


def test_uncached_batches_equal_the_cached_ones(tiny_root: Path, tmp_path: Path) -> None:
    # Colour on: the whole training transform, with its extra random draws.
    colour = dict(brightness=0.3, contrast=0.2, saturation=0.2)
    decoded = datamodule(tiny_root, colour=ColourChanges(**colour))
    cached = datamodule(tiny_root, cache=True, cache_dir=tmp_path, colour=ColourChanges(**colour))
    decoded.setup("fit")
    cached.setup("fit")
    assert torch.equal(decoded.datasets["train"][5][0], cached.datasets["train"][5][0])
    for stage in ("train", "val"):
        for seed in (0, 1):
            ours = _transformed_batches(decoded, stage, seed)
            theirs = _transformed_batches(cached, stage, seed)
            assert len(ours) == len(theirs) == (5 if stage == "train" else 3)
            for (images, targets, *_), (images_c, targets_c, *_) in zip(ours, theirs, strict=True):
                assert images.dtype == torch.float32 and images.shape[1:] == (3, 64, 64)
                torch.testing.assert_close(images, images_c, atol=1e-6, rtol=0)
                assert torch.equal(targets, targets_c)
    # The seed does decide the training batches (the comparison above is not of constants).
    first, other = (_transformed_batches(decoded, "train", s)[0][0] for s in (0, 1))
    assert not torch.equal(first, other)


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
        ({"subsets": Subsets(train=-5)}, "subsets.train"),
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
    demo = Subsets(train=24, val=8, test=8)
    dm = datamodule(tmp_path / "demo", synthetic=DemoSet(), subsets=demo)
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
    dm = datamodule(root, synthetic=DemoSet(), subsets=Subsets(train=24, val=8, test=8))
    with pytest.raises(CelebAError, match="data.synthetic is set but"):
        dm.prepare_data()
    assert sorted(p.name for p in (root / "celeba" / "img_align_celeba").iterdir()) == before
