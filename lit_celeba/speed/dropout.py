"""The recipe's dropout, faster on CPUs (docs/speed.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with the same distribution, keep probability ``1 - p`` and ``1 / (1 - p)``
    scaling, drawing its mask on CPUs from ``rand_like`` instead of ``bernoulli_``.

    PyTorch draws CPU Bernoulli numbers one by one (pytorch/pytorch#138199): measured here, a
    (32, 32, 32, 32) mask takes 17 ms with ``bernoulli_`` and 3.7 ms with ``rand_like``, and the
    recipe's two dropouts were about a sixth of a CPU training step. ``torch.compile`` makes the
    same substitution on CPUs (pytorch/pytorch#97002). GPUs keep PyTorch's fused kernel. The
    module type, its ``p`` and the state dict are ``nn.Dropout``'s, so checkpoints don't change.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or not self.training
            or self.p == 0.0
            or self.p == 1.0
            or self.inplace
        ):
            return F.dropout(x, self.p, self.training, self.inplace)
        # Uniform numbers in float32 whatever x's dtype: a bfloat16 uniform has too few values
        # to hit p exactly. rand_like keeps x's memory format (channels-last stays so).
        keep = torch.rand_like(x, dtype=torch.float32) >= self.p
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))
