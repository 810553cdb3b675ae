"""Plain ``nn.Module`` networks; the LightningModule in ``module.py`` trains any of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from lit_celeba.base.errors import SettingError

Pooling = Literal["gap", "flatten"]
Init = Literal["keras", "torch"]
ResNetArch = Literal["resnet18", "resnet34", "resnet50"]


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


class RecipeCNN(nn.Module):
    """The recipe's CNN: four 3x3 'same' convolutions with ReLU, max-pooling after the first three,
    dropout after the first two, global average pooling (or flatten) and one linear output per
    attribute, returning logits. At its defaults it has 388,673 parameters.

    ``batch_norm=True`` (off in the recipe) puts a ``BatchNorm2d`` between each convolution and
    its ReLU and drops the convolutions' biases, which the normalisation's shift replaces: 480
    fewer and 960 more parameters at the recipe's widths, 389,153 in all.

    ``init="keras"`` gives Keras' defaults (Glorot-uniform weights, zero biases) so that training
    follows the original; ``"torch"`` keeps PyTorch's own initialisation.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128, 256),
        dropout: float = 0.5,
        pooling: Pooling = "gap",
        image_size: int = 64,
        num_outputs: int = 1,
        init: Init = "keras",
        in_channels: int = 3,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) != 4 or any(c < 1 for c in channels):
            raise SettingError("channels", f"must be four positive widths, got {list(channels)}")
        if not 0.0 <= dropout < 1.0:
            raise SettingError("dropout", f"must be in [0, 1), got {dropout}")
        if pooling not in ("gap", "flatten"):
            raise SettingError("pooling", f"must be 'gap' or 'flatten', got {pooling!r}")
        if init not in ("keras", "torch"):
            raise SettingError("init", f"must be 'keras' or 'torch', got {init!r}")
        if image_size < 8:
            raise SettingError(
                "image_size", f"must be at least 8 for three 2x2 max-pools, got {image_size}"
            )
        c1, c2, c3, c4 = channels

        def conv(cin: int, cout: int) -> nn.Sequential:
            if not batch_norm:  # the recipe: the same modules and state-dict keys as before
                return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=3, padding=1))
            return nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(cout)
            )

        self.features = nn.Sequential(
            *conv(in_channels, c1), nn.ReLU(), nn.MaxPool2d(2), FastDropout(dropout),
            *conv(c1, c2), nn.ReLU(), nn.MaxPool2d(2), FastDropout(dropout),
            *conv(c2, c3), nn.ReLU(), nn.MaxPool2d(2),
            *conv(c3, c4), nn.ReLU(),
        )  # fmt: skip
        if pooling == "gap":
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            features = c4
        else:
            self.pool = nn.Flatten()
            features = c4 * (image_size // 8) ** 2
        self.classifier = nn.Linear(features, num_outputs)
        if init == "keras":
            self.apply(_keras_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def resnet(arch: ResNetArch = "resnet18", num_outputs: int = 1) -> nn.Module:
    """torchvision's ResNet with one linear output per attribute (logits), randomly initialised:
    no pretrained weights are ever downloaded. It downsamples by 32 before its global average
    pooling, so it takes any input size but suits 128x128 and larger; ResNet-18 has 11,177,025
    parameters with one output."""
    builders = {"resnet18": models.resnet18, "resnet34": models.resnet34,
                "resnet50": models.resnet50}  # fmt: skip
    if arch not in builders:
        raise SettingError("arch", f"must be one of {sorted(builders)}, got {arch!r}")
    return builders[arch](weights=None, num_classes=num_outputs)


def _keras_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:  # convolutions before batch norm have none
            nn.init.zeros_(module.bias)


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters, as Keras' ``model.summary()`` counts them."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
