"""What the exports save: a trained network with its flip TTA and calibration, as ``predict``
gives it (:mod:`lit_celeba.models.outputs` computes the same)."""

from __future__ import annotations

import torch
from torch import nn

from lit_celeba.methods.flip import flip_averaged_logit
from lit_celeba.models.outputs import Calibration, decide


class Predictor(nn.Module):
    """A trained network as a user gets it from ``predict``: images (N, 3, S, S) in [0, 1] to
    ``(probability, prediction)``, each (N, K), flip TTA and calibration included. What the
    exports save; TorchScript, ``torch.export`` and ONNX take it as it is."""

    def __init__(self, net: nn.Module, calibration: Calibration, tta_flip: bool = False) -> None:
        super().__init__()
        self.net = net
        self.tta_flip = tta_flip
        self.register_buffer("temperature", calibration.temperature.detach().clone().float())
        self.register_buffer("threshold", calibration.threshold.detach().clone().float())
        self.register_buffer("bias", calibration.bias.detach().clone().float())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # flip.final_logits computes the same from a Python callable, which torch.jit.script
        # cannot compile: the two lines are written out here.
        logits = self.net(images)
        if self.tta_flip:
            logits = flip_averaged_logit(logits, self.net(images.flip(-1)))
        return decide(logits, self.temperature, self.threshold, self.bias)
