"""SubgroupAccuracy against a direct count, including an empty subgroup value."""

from __future__ import annotations

import math

import pytest
import torch

from lit_celeba.models.metrics import SubgroupAccuracy


def _direct(probs, targets, groups, g: int, value: int, k: int) -> float:
    members = [i for i in range(len(probs)) if groups[i][g] == value]
    if not members:
        return math.nan
    hits = sum(int(probs[i][k] > 0.5) == targets[i][k] for i in members)
    return hits / len(members)


def test_subgroup_accuracy_equals_a_direct_count_over_batches() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(70, 3, generator=gen)
    targets = (torch.rand(70, 3, generator=gen) > 0.5).long()
    groups = (torch.rand(70, 2, generator=gen) > 0.7).long()
    groups[:, 1] = 1  # the second subgroup attribute is 1 everywhere: its value 0 is empty
    metric = SubgroupAccuracy(num_labels=3, num_groups=2)
    for start in range(0, 70, 32):  # uneven batches
        stop = start + 32
        metric.update(probs[start:stop], targets[start:stop], groups[start:stop])
    result = metric.compute()
    assert result["accuracy"].shape == (2, 2, 3)
    p, t, g = probs.tolist(), targets.tolist(), groups.tolist()
    for group in range(2):
        for value in (0, 1):
            for k in range(3):
                expected = _direct(p, t, g, group, value, k)
                got = result["accuracy"][group, value, k].item()
                assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected)
    young = sum(row[0] for row in g)
    assert result["count"].tolist() == [[70 - young, young], [0, 70]]
    metric.reset()
    metric.update(probs[:4], targets[:4], groups[:4])
    assert metric.compute()["count"].sum().item() == 8  # reset forgot the earlier batches


def test_subgroup_accuracy_needs_labels_and_groups() -> None:
    with pytest.raises(ValueError, match="num_groups=0"):
        SubgroupAccuracy(num_labels=2, num_groups=0)
