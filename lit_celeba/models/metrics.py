"""Metrics torchmetrics lacks in the form a training step needs (the evaluation epochs' metrics are
:mod:`lit_celeba.models.evaluation`), and the ratio every metric there divides by."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric


class DeviceMean(MeanMetric):
    """``MeanMetric`` whose ``update`` reads nothing back to the host.

    torchmetrics checks every value for NaN with ``if nans.any()``, which waits for the GPU at
    every step; with ``nan_strategy="disable"`` it skips the check but also drops the weights (as of
    torchmetrics 1.9). Here a NaN loss makes the epoch's mean NaN, which is what should show.
    ``update(value, weight)``: a tensor (its elements each weigh ``weight``), detached.
    """

    def update(self, value: torch.Tensor, weight: float = 1.0) -> None:  # type: ignore[override]
        value = value.detach()
        self.mean_value += value.sum().to(self.mean_value.dtype) * weight
        self.weight += weight * value.numel()


def ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator as float64, NaN where the denominator is 0."""
    denominator = denominator.double()
    return torch.where(denominator > 0, numerator.double() / denominator.clamp(min=1), torch.nan)
