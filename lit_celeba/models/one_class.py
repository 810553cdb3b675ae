"""What an evaluation says when its images hold one class only of an attribute: balanced accuracy
and AUROC are undefined there (NaN, left out of the means), and the calibration keeps temperature
1 and threshold 0.5 for it (:func:`lit_celeba.methods.calibration.fit_calibration`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch_lightning.utilities import rank_zero_info


def one_class_names(attributes: Sequence[str], targets: torch.Tensor) -> list[str]:
    """``Name (all v)`` for each attribute of which ``targets`` (N, K) hold one class only."""
    single = (targets.amin(0) == targets.amax(0)).tolist() if len(targets) else []
    return [f"{a} (all {int(v)})" for a, s, v in zip(attributes, single, targets[0].tolist(),
                                                     strict=False) if s]  # fmt: skip


def one_class_note(stage: str, attributes: Sequence[str], targets: torch.Tensor) -> str | None:
    """A line naming the attributes of which the epoch's images (``targets``, (N, K)) hold one
    class only; None when every attribute has both."""
    named = one_class_names(attributes, targets)
    if not named:
        return None
    split = {"val": "validation", "test": "test"}.get(stage, stage)
    return (f"Note: the {split} images hold one class only of {', '.join(named)}: balanced "
            "accuracy and AUROC are undefined there (NaN, left out of the means); its "
            "temperature stays 1 and its threshold 0.5.")  # fmt: skip


def say_one_class(
    stage: str, attributes: Sequence[str], targets: torch.Tensor, said: set[str]
) -> None:
    """Says :func:`one_class_note` on rank 0, once per run (``said``: the notes said)."""
    note = one_class_note(stage, attributes, targets)
    if note is not None and note not in said:
        said.add(note)
        rank_zero_info(note)
