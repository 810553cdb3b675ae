"""Target and subgroup columns: name lists, the (N, K) and (N, G) arrays, and their batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lit_celeba.attributes import attribute_list
from lit_celeba.base.errors import CelebAError, SettingError
from lit_celeba.data.celeba import label_arrays, load_index
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from tests.conftest import TINY_SIZES


def test_attribute_list_normalises_one_name_or_many() -> None:
    assert attribute_list("Male") == ["Male"]
    assert attribute_list(("Male", "Young")) == ["Male", "Young"]
    assert attribute_list(None) == []
    with pytest.raises(SettingError, match="^target_attr names Male more than once$"):
        attribute_list(["Male", "Young", "Male"])
    with pytest.raises(SettingError, match="^subgroups must be attribute names") as refused:
        attribute_list(["Young", ""], "subgroups")
    assert refused.value.setting == "subgroups"


def test_label_arrays_take_the_named_columns_in_the_given_order(tiny_root: Path) -> None:
    index = load_index(tiny_root)
    rows = index.split_indices("valid")
    targets, groups = label_arrays(index, rows, ["Smiling", "Male"], ["Young"])
    assert targets.shape == (TINY_SIZES["valid"], 2) and targets.dtype == np.float32
    assert groups.shape == (TINY_SIZES["valid"], 1) and groups.dtype == np.int64
    column = index.attr_names.index
    assert targets[:, 0].tolist() == index.attributes[rows, column("Smiling")].tolist()
    assert targets[:, 1].tolist() == index.attributes[rows, column("Male")].tolist()
    assert groups[:, 0].tolist() == index.attributes[rows, column("Young")].tolist()
    with pytest.raises(CelebAError, match="Unknown attribute 'Gender'.*Valid names: 5_o_Clock"):
        label_arrays(index, rows, ["Male"], ["Gender"])


def _datamodule(root: Path, **kwargs) -> CelebADataModule:
    settings = dict(root=str(root), subsets=Subsets(train=16, val=16, test=16), num_workers=0)
    return CelebADataModule(**{**settings, "batch_size": 8, **kwargs})


def test_several_targets_make_n_by_k_targets(tiny_root: Path) -> None:
    names = ["Male", "Smiling", "Eyeglasses"]
    dm = _datamodule(tiny_root, target_attr=names)
    dm.setup("fit")
    index = load_index(tiny_root)
    expected = index.attributes[:16][:, [index.attr_names.index(n) for n in names]]
    assert dm.datasets["train"].targets.tolist() == expected.tolist()
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape[0] == 8 and targets.shape == (8, 3) and targets.dtype == torch.float32


def test_subgroup_values_come_with_training_and_evaluation_batches(tiny_root: Path) -> None:
    """With one target and subgroups every training and evaluation batch carries the groups
    (issue 33: derived, where the training batches had them only for a group objective); the
    predict batches stay (images, targets)."""
    dm = _datamodule(tiny_root, subgroups=["Young", "Eyeglasses"])
    for stage in ("fit", "test", "predict"):
        dm.setup(stage)
    index = load_index(tiny_root)
    for loader, split in ((dm.val_dataloader(), "valid"), (dm.test_dataloader(), "test")):
        images, targets, groups = next(iter(loader))
        rows = index.split_indices(split)[:8]
        assert targets.shape == (8, 1) and groups.shape == (8, 2) and groups.dtype == torch.long
        young, glasses = (index.attributes[rows, index.attr_names.index(n)] for n in dm.subgroups)
        assert groups[:, 0].tolist() == young.tolist()
        assert groups[:, 1].tolist() == glasses.tolist()
    train = next(iter(dm.train_dataloader()))
    assert len(train) == 3 and train[2].shape == (8, 2) and train[2].dtype == torch.long
    assert len(next(iter(dm.predict_dataloader()))) == 2


def test_without_subgroups_batches_stay_images_and_targets(tiny_root: Path) -> None:
    dm = _datamodule(tiny_root)
    dm.setup("fit")
    dm.setup("test")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        assert len(batch) == 2 and batch[1].shape == (8, 1)


def test_unknown_subgroup_fails_at_setup(tiny_root: Path) -> None:
    dm = _datamodule(tiny_root, subgroups=["Age"])
    with pytest.raises(CelebAError, match="Unknown attribute 'Age'"):
        dm.setup("validate")
