"""``model.pos_weight``: each attribute's positive images weighed as much as its negatives in the
training set (BCE's ``pos_weight``), for attributes far from half positive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.base.errors import UsageError

# A positive weighs at most this many negatives: an attribute with a handful of positives in the
# training subset would otherwise put nearly all its loss on them.
MAX_POSITIVE_WEIGHT = 100.0


def positive_weights(positive_share: torch.Tensor | None) -> torch.Tensor:
    """BCE's ``pos_weight`` that gives each attribute's positives the weight of its negatives in
    the training set: negatives / positives, (K,), at most :data:`MAX_POSITIVE_WEIGHT`; 1 for an
    attribute of one class only (no positives: nothing to weigh; no negatives: weight 0 would
    leave only the pull of label smoothing's negative part, towards "no")."""
    if positive_share is None:
        raise UsageError("model.pos_weight needs the training set's share of positives per "
                         "attribute, which CelebADataModule counts in setup('fit')")  # fmt: skip
    share = torch.as_tensor(positive_share, dtype=torch.float32)
    weights = (1 - share) / share.clamp(min=1e-12)
    both = (share > 0) & (share < 1)
    return torch.where(both, weights.clamp(max=MAX_POSITIVE_WEIGHT), 1.0)


def positive_weight_note(positive_share: torch.Tensor, attributes: Sequence[str]) -> str | None:
    """A line naming the attributes that ``model.pos_weight`` leaves at 1 because the training
    images hold one class of them only; None when there is none."""
    share = torch.as_tensor(positive_share, dtype=torch.float32).tolist()
    named = [f"{a} ({'every' if s >= 1 else 'no'} image)" for a, s in
             zip(attributes, share, strict=True) if s <= 0 or s >= 1]  # fmt: skip
    if not named:
        return None
    return (f"Note: model.pos_weight leaves the weight of {', '.join(named)} at 1: the training "
            "images hold one class of it only, so there is nothing to balance.")


def fill_positive_weights(module: Any, datamodule: object) -> None:
    """At the start of a fit, the positive weights into ``module``'s ``pos_weight`` buffer when it
    has one, saying which attributes they leave at 1."""
    if not hasattr(module, "pos_weight"):
        return
    share = getattr(datamodule, "train_positive_share", None)
    module.pos_weight.copy_(positive_weights(share))
    note = positive_weight_note(share, module.target_attrs)
    if note is not None:
        rank_zero_info(note)
