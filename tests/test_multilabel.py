"""The LightningModule with several target attributes and subgroups; the recipe's path unchanged."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn

from lit_celeba.base.errors import AttributeMismatchError
from lit_celeba.callbacks.test_tables import TestTables
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.data.synthetic import ATTRIBUTE_NAMES
from lit_celeba.methods.positive_weights import positive_weight_note, positive_weights
from lit_celeba.models.nets import count_parameters
from tests.conftest import recipe_model

THREE = ["Male", "Smiling", "Eyeglasses"]


def test_one_output_per_attribute() -> None:
    assert count_parameters(recipe_model()) == 388_673  # the recipe, as before
    model = recipe_model(target_attrs=list(ATTRIBUTE_NAMES)).eval()
    assert count_parameters(model) == 388_673 + 39 * (256 + 1)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 40)


def test_one_attribute_loss_is_exactly_the_recipes() -> None:
    torch.manual_seed(0)
    model = recipe_model().eval()
    images, targets = torch.rand(6, 3, 64, 64), torch.tensor([[1.0], [0.0]] * 3)
    loss = model.training_step((images, targets), 0)["loss"]
    assert torch.equal(loss, F.binary_cross_entropy_with_logits(model(images), targets))


def test_several_attributes_sum_their_losses() -> None:
    model = recipe_model(target_attrs=THREE)
    model.net = nn.Identity()  # the "images" are the logits
    logits, targets = torch.randn(5, 3), (torch.rand(5, 3) > 0.5).float()
    per_attribute = [
        F.binary_cross_entropy_with_logits(logits[:, k], targets[:, k]) for k in range(3)
    ]
    loss = model.training_step((logits, targets), 0)["loss"]
    assert loss == pytest.approx(sum(per_attribute).item())


def _trainer(log_dir: Path) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        limit_test_batches=3,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(log_dir, name="run"),
        callbacks=[TestTables()],  # as the CLI adds it
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def _data(root: Path, **kwargs) -> CelebADataModule:
    return CelebADataModule(
        root=str(root), subsets=Subsets(train=32, val=32, test=48), image_size=32, num_workers=0,
        batch_size=16, **kwargs,
    )  # fmt: skip


def test_one_attribute_logs_the_same_names_as_before(tiny_root: Path, tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    model = recipe_model(image_size=32)
    trainer.fit(model, datamodule=_data(tiny_root))
    # The recipe's names, and the means that the evaluation adds for every K.
    ranking = {"balanced_acc", "auroc", "ece"}
    assert set(trainer.callback_metrics) == {"train/loss", "train/acc", "val/loss", "val/acc"} | {
        f"val/{name}" for name in ranking
    }
    trainer.test(model, datamodule=_data(tiny_root))
    assert set(trainer.callback_metrics) == {"test/loss", "test/acc", "test/ece_uncalibrated"} | {
        f"test/{name}" for name in ranking
    }
    assert not list(tmp_path.rglob("test_attributes.csv"))  # no table for the recipe


def test_several_attributes_and_subgroups_log_per_attribute_and_per_group(
    tiny_root: Path, tmp_path: Path
) -> None:
    trainer = _trainer(tmp_path)
    model = recipe_model(image_size=32, target_attrs=THREE, subgroups=["Young"])
    data = _data(tiny_root, target_attr=THREE, subgroups=["Young"])
    trainer.fit(model, datamodule=data)
    logged = set(trainer.callback_metrics)
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/gap_max"} <= logged
    assert {f"{stage}/acc/{name}" for stage in ("train", "val") for name in THREE} <= logged
    assert {"val/acc/Male|Young=1", "val/acc/Male|Young=0", "val/gap/Male|Young"} <= logged
    assert not any("|" in name for name in logged if name.startswith("train/"))
    per_attribute = [trainer.callback_metrics[f"val/acc/{n}"] for n in THREE]
    assert trainer.callback_metrics["val/acc"] == pytest.approx(sum(per_attribute).item() / 3)

    trainer.test(model, datamodule=data)
    metrics = trainer.callback_metrics
    table = tmp_path / "run" / "version_0" / "test_attributes.csv"
    with open(table) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["attribute"] for r in rows] == THREE
    for row in rows:
        name = row["attribute"]
        assert float(row["accuracy"]) == pytest.approx(metrics[f"test/acc/{name}"].item(), abs=1e-6)
        for value in ("1", "0"):
            logged_acc = metrics[f"test/acc/{name}|Young={value}"].item()
            assert float(row[f"acc|Young={value}"]) == pytest.approx(logged_acc, abs=1e-6)
        gap = abs(float(row["acc|Young=1"]) - float(row["acc|Young=0"]))
        assert float(row["gap|Young"]) == pytest.approx(gap, abs=2e-6)
    gaps = [metrics[f"test/gap/{n}|Young"].item() for n in THREE]
    assert metrics["test/gap_max"].item() == pytest.approx(max(gaps))


def test_subgroups_are_not_saved_with_the_checkpoint() -> None:
    model = recipe_model(target_attrs=THREE, subgroups=["Young"])
    assert model.hparams["target_attrs"] == THREE and "subgroups" not in model.hparams


def test_checkpoint_for_other_attributes_is_one_clear_error() -> None:
    checkpoint = {"hyper_parameters": {"target_attrs": THREE}}
    with pytest.raises(AttributeMismatchError, match=r"trained to predict 3 attribute\(s\)"):
        recipe_model().on_load_checkpoint(checkpoint)
    recipe_model(target_attrs=THREE).on_load_checkpoint(checkpoint)  # the same: fine


def test_subgroups_without_their_values_in_the_batch() -> None:
    model = recipe_model(subgroups=["Young"])
    with pytest.raises(AttributeMismatchError, match="carry no subgroup values"):
        model.validation_step((torch.rand(2, 3, 64, 64), torch.ones(2, 1)), 0)


def test_one_attribute_with_subgroups_keeps_test_acc_and_adds_the_groups(
    tiny_root: Path, tmp_path: Path
) -> None:
    trainer = _trainer(tmp_path)
    model = recipe_model(image_size=32, subgroups=["Young"])
    trainer.test(model, datamodule=_data(tiny_root, subgroups=["Young"]))
    metrics = trainer.callback_metrics
    assert {"test/loss", "test/acc", "test/acc/Male|Young=1", "test/gap/Male|Young"} <= set(metrics)
    assert "test/acc/Male" not in metrics
    with open(tmp_path / "run" / "version_0" / "test_attributes.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["attribute"] == "Male"
    assert float(row["accuracy"]) == pytest.approx(metrics["test/acc"].item(), abs=1e-6)


def test_pos_weight_gives_each_attributes_positives_the_weight_of_its_negatives(
    tiny_root: Path, tmp_path: Path
) -> None:
    data = _data(tiny_root, target_attr=THREE)
    model = recipe_model(image_size=32, target_attrs=THREE, pos_weight=True)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1,
                         limit_val_batches=0, logger=False, default_root_dir=tmp_path,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    share = data.datasets["train"].targets.mean(0)  # Eyeglasses: no positive in these 32 faces
    expected_weights = torch.where(share > 0, (1 - share) / share.clamp(min=1e-9), 1.0)
    assert (share > 0).any() and torch.allclose(model.pos_weight, expected_weights)
    assert "pos_weight" in model.state_dict()  # checkpoints keep it
    weighted = recipe_model(target_attrs=THREE, pos_weight=True)
    weighted.pos_weight.copy_(torch.tensor([0.5, 2.0, 4.0]))
    weighted.net = nn.Identity()  # the "images" are the logits
    logits, targets = torch.randn(6, 3), (torch.rand(6, 3) > 0.5).float()
    expected = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weighted.pos_weight)
    loss = weighted.training_step((logits, targets), 0)["loss"]
    assert loss == pytest.approx(3 * expected.item())
    assert positive_weights(torch.tensor([0.0, 0.5, 1e-6])).tolist() == [1.0, 1.0, 100.0]
    # Issue 32, item 4: every training image positive is weight 1, not 0, and said.
    assert positive_weights(torch.tensor([1.0, 0.2])).tolist() == pytest.approx([1.0, 4.0])
    note = positive_weight_note(torch.tensor([1.0, 0.2, 0.0]), THREE)
    assert "leaves the weight of Male (every image), Eyeglasses (no image) at 1" in note
