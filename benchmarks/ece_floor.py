"""How low a test ECE can be on a test set of this size: the ECE that a perfectly calibrated
network with the same probabilities would show, against the one measured.

ECE is computed from a finite test set, so even probabilities that are exactly right show a
positive ECE (each bin's observed share of positives is a sample). This script reads the
``predictions.csv`` of ``predict`` on a CelebA split (``prob_<a>`` and ``true_<a>`` columns),
computes each attribute's ECE as ``test/ece`` does (torchmetrics, 15 equal-width bins), then draws
the labels again from the predicted probabilities ``--draws`` times, as a perfectly calibrated
network's labels would fall, and prints the mean ECE over the attributes for both and their ratio.

    python -m lit_celeba predict --config CONFIG --ckpt_path CKPT \\
        --prediction.output predictions.csv --data.root PATH
    python benchmarks/ece_floor.py predictions.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
from torchmetrics.functional.classification import binary_calibration_error

BINS = 15  # as test/ece (lit_celeba.models.evaluation)


def read_predictions(path: Path) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Attribute names, probabilities (N, K) and true labels (N, K) of a predictions file."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = [c[len("prob_") :] for c in (rows[0] if rows else {}) if c.startswith("prob_")]
    if not names or any(f"true_{n}" not in rows[0] for n in names):
        raise SystemExit(
            f"{path} has no prob_<attribute> and true_<attribute> columns: give the predictions "
            "of predict on a CelebA split (not on photos, which have no true labels)."
        )
    probabilities = torch.tensor([[float(r[f"prob_{n}"]) for n in names] for r in rows])
    truth = torch.tensor([[int(r[f"true_{n}"]) for n in names] for r in rows])
    return names, probabilities, truth


def mean_ece(probabilities: torch.Tensor, truth: torch.Tensor) -> float:
    columns = range(probabilities.shape[1])
    return torch.stack([
        binary_calibration_error(probabilities[:, k].contiguous(), truth[:, k].contiguous(),
                                 n_bins=BINS)
        for k in columns
    ]).mean().item()  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", type=Path, help="predict's CSV on a CelebA split")
    parser.add_argument("--draws", type=int, default=200, help="label draws (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names, probabilities, truth = read_predictions(args.predictions)
    measured = mean_ece(probabilities, truth)
    generator = torch.Generator().manual_seed(args.seed)
    floor = torch.tensor([
        mean_ece(probabilities, (torch.rand(probabilities.shape, generator=generator)
                                 < probabilities).long())
        for _ in range(args.draws)
    ])  # fmt: skip
    low, high = floor.quantile(0.05).item(), floor.quantile(0.95).item()
    print(f"{len(probabilities)} images, {len(names)} attribute(s), {BINS} bins")
    print(f"measured mean ECE: {measured:.4f}")
    print(f"perfectly calibrated, same probabilities: {floor.mean():.4f} "
          f"(5-95 %: {low:.4f}-{high:.4f})")  # fmt: skip
    print(f"measured / perfectly calibrated: {measured / floor.mean().item():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
