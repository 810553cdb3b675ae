"""Label smoothing of the binary targets (``model.label_smoothing``, 0 by default: the recipe)."""

from __future__ import annotations

import torch

from lit_celeba.base.errors import SettingError


def smoothed_targets(targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Label smoothing for binary targets: 1 becomes ``1 - eps/2`` and 0 becomes ``eps/2`` (the
    two-class form of ``CrossEntropyLoss(label_smoothing=eps)``). It keeps the logits from
    growing without bound on easy faces, which mostly improves calibration."""
    if label_smoothing == 0.0:
        return targets
    return targets * (1.0 - label_smoothing) + 0.5 * label_smoothing


def check_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing < 1.0:
        raise SettingError("label_smoothing", f"must be in [0, 1), got {label_smoothing}")
