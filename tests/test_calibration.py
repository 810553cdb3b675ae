"""``test/ece``: the expected calibration error that ``test`` reports next to the accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.models.module import RecipeClassifier
from tests.conftest import TINY_SIZES


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """By hand: 15 equal-width bins of the probability, |share of positives - mean probability|
    in each, weighted by the bin's share of the images."""
    which = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap = abs(targets[members].mean() - probs[members].mean())
            total += gap * members.mean()
    return total


def test_test_split_reports_the_expected_calibration_error(tiny_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    # PyTorch's own initialisation spreads the untrained probabilities over several bins.
    model = RecipeClassifier(channels=(8, 8, 16, 16), init="torch", dropout=0.0).eval()
    data = CelebADataModule(
        root=str(tiny_root),
        test_size=TINY_SIZES["test"],
        num_workers=0,
        batch_size=16,
        cache=False,  # JPEGs decoded on access: no cache file written for this test
    )
    # Without a logger a run's files go to default_root_dir, the working folder by default.
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    assert {"test/acc", "test/loss", "test/ece"} <= set(metrics)

    probs, targets = [], []
    with torch.no_grad():
        for batch in data.test_dataloader():
            images, batch_targets = data.on_after_batch_transfer(batch, 0)  # as the trainer does
            probs.append(torch.sigmoid(model(images)).reshape(-1))
            targets.append(batch_targets.reshape(-1))
    probs_np, targets_np = torch.cat(probs).numpy(), torch.cat(targets).numpy()
    expected = expected_calibration_error(probs_np, targets_np)
    assert expected > 0.01  # not a degenerate case where anything would pass
    assert metrics["test/ece"] == pytest.approx(expected, abs=1e-5)
