"""The evaluation epochs' metrics against direct counts: per subgroup value (including an empty
one), per group, and per attribute (balanced accuracy, AUROC, F1, the majority baseline)."""

from __future__ import annotations

import math

import pytest
import torch

from lit_celeba.methods.group_metrics import group_accuracy, subgroup_accuracy
from lit_celeba.models.evaluation import attribute_metrics


def _direct(predictions, targets, groups, g: int, value: int, k: int) -> float:
    members = [i for i in range(len(predictions)) if groups[i][g] == value]
    if not members:
        return math.nan
    return sum(predictions[i][k] == targets[i][k] for i in members) / len(members)


def test_subgroup_accuracy_equals_a_direct_count() -> None:
    gen = torch.Generator().manual_seed(0)
    predictions = (torch.rand(70, 3, generator=gen) > 0.5).long()
    targets = (torch.rand(70, 3, generator=gen) > 0.5).long()
    groups = (torch.rand(70, 2, generator=gen) > 0.7).long()
    groups[:, 1] = 1  # the second subgroup attribute is 1 everywhere: its value 0 is empty
    accuracy, counts = subgroup_accuracy(predictions, targets, groups)
    assert accuracy.shape == (2, 2, 3)
    p, t, g = predictions.tolist(), targets.tolist(), groups.tolist()
    for group in range(2):
        for value in (0, 1):
            for k in range(3):
                expected = _direct(p, t, g, group, value, k)
                got = accuracy[group, value, k].item()
                assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected)
    young = sum(row[0] for row in g)
    assert counts.tolist() == [[70 - young, young], [0, 70]]


def test_group_accuracy_equals_a_count() -> None:
    torch.manual_seed(0)
    predictions, targets = torch.randint(0, 2, (200, 1)), torch.randint(0, 2, (200, 1))
    groups = torch.randint(0, 3, (200,))  # group 3 stays empty
    accuracy, counts = group_accuracy(predictions, groups, targets, 4)
    right = predictions == targets
    for g in range(3):
        member = groups == g
        assert counts[g] == member.sum()
        assert accuracy[g].item() == pytest.approx(right[member].float().mean().item())
    assert counts[3] == 0 and accuracy[3].isnan()
    # The groups' accuracies, weighted by their sizes, make up the overall accuracy.
    overall = (accuracy[:3] * counts[:3]).sum() / counts.sum()
    assert overall.item() == pytest.approx(right.float().mean().item())


def _auroc_by_pairs(scores: list[float], labels: list[int]) -> float:
    """The share of (positive, negative) pairs ranked right, ties counting half."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_attribute_metrics_equal_direct_counts() -> None:
    gen = torch.Generator().manual_seed(1)
    probabilities = torch.rand(60, 3, generator=gen)
    targets = (torch.rand(60, 3, generator=gen) > 0.8).long()  # rare positives
    targets[:, 2] = 0  # an attribute no test image has
    predictions = (probabilities > 0.6).long()
    metrics = attribute_metrics(probabilities, predictions, targets)
    for k in range(2):
        y, d = targets[:, k], predictions[:, k]
        tp = int(((d == 1) & (y == 1)).sum())
        tn = int(((d == 0) & (y == 0)).sum())
        fp, fn = int(((d == 1) & (y == 0)).sum()), int(((d == 0) & (y == 1)).sum())
        share = (tp + fn) / 60
        assert metrics["accuracy"][k] == pytest.approx((tp + tn) / 60)
        balanced = (tp / (tp + fn) + tn / (tn + fp)) / 2
        assert metrics["balanced_accuracy"][k] == pytest.approx(balanced)
        assert metrics["f1"][k] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert metrics["positive_share"][k] == pytest.approx(share)
        assert metrics["majority_baseline"][k] == pytest.approx(max(share, 1 - share))
        expected = _auroc_by_pairs(probabilities[:, k].tolist(), y.tolist())
        assert metrics["auroc"][k] == pytest.approx(expected, abs=1e-6)
    # Without positives: balanced accuracy, AUROC and average precision are undefined; F1 is 0
    # once anything is predicted positive, and undefined only when nothing is.
    for name in ("balanced_accuracy", "auroc", "average_precision"):
        assert math.isnan(metrics[name][2]), name
    assert predictions[:, 2].any() and metrics["f1"][2] == 0.0
    nothing = attribute_metrics(probabilities[:, 2:], torch.zeros(60, 1).long(), targets[:, 2:])
    assert math.isnan(nothing["f1"][0]) and nothing["accuracy"][0] == 1.0
    assert metrics["majority_baseline"][2] == 1.0
