r"""The networks: ``nn.Module``\ s that the LightningModule in ``module.py`` takes as ``net``
(``--model.net RecipeCNN`` or ``ResNet``, with ``--model.net.dropout 0.25`` and so on)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn
from torchvision import models

from lit_celeba.base.errors import SettingError
from lit_celeba.speed.dropout import FastDropout

Pooling = Literal["gap", "flatten"]
Init = Literal["keras", "torch"]
ResNetArch = Literal["resnet18", "resnet34", "resnet50"]


NETS_PACKAGE = __name__


class Net(nn.Module):
    """A network of lit_celeba's: it keeps the arguments it was built with (``settings``), from
    which a checkpoint rebuilds it (:meth:`config`, saved in the model's hyperparameters).

    Recorded here, not with Lightning's ``HyperparametersMixin.save_hyperparameters``: that walks
    the caller's frames and would also take the arguments of a LightningModule that builds its
    network inside its own ``__init__``."""

    settings: dict[str, Any]
    __jit_ignored_attributes__ = ["settings"]  # TorchScript (export) types no dict of Any

    def __new__(cls, *args: Any, **kwargs: Any) -> Net:
        net = super().__new__(cls)
        # Before nn.Module.__init__ runs, which its __setattr__ would need.
        object.__setattr__(net, "settings", cls.full_settings(*args, **kwargs))
        return net

    @classmethod
    def full_settings(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Every argument of ``cls(*args, **kwargs)``, defaults included, as plain values."""
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        bound.apply_defaults()
        return {k: _plain(v) for k, v in list(bound.arguments.items())[1:]}

    def config(self) -> dict[str, Any]:
        """``{"class_path": ..., "init_args": ...}``, as LightningCLI writes an injected module."""
        kind = type(self)
        return {"class_path": f"{kind.__module__}.{kind.__qualname__}",
                "init_args": dict(self.settings)}  # fmt: skip


def _plain(value: Any) -> Any:
    """Lists for tuples: a checkpoint's hyperparameters go into YAML files as well."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


class RecipeCNN(Net):
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


# The blocks and layers torchvision's resnet18/34/50 builders pass to its ResNet class.
_RESNET_LAYOUTS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (models.resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (models.resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (models.resnet.Bottleneck, [3, 4, 6, 3]),
}


class ResNet(Net, models.ResNet):
    """torchvision's ResNet (``arch``) with one linear output per attribute (logits), randomly
    initialised: no pretrained weights are ever downloaded. It is torchvision's class, built as
    ``torchvision.models.resnet18(weights=None, num_classes=num_outputs)`` builds it, so the
    weights' names and initialisation are torchvision's. It downsamples by 32 before its global
    average pooling, so it takes any input size but suits 128x128 and larger; ResNet-18 has
    11,177,025 parameters with one output."""

    def __init__(self, arch: ResNetArch = "resnet18", num_outputs: int = 1) -> None:
        if arch not in _RESNET_LAYOUTS:
            raise SettingError("arch", f"must be one of {sorted(_RESNET_LAYOUTS)}, got {arch!r}")
        block, layers = _RESNET_LAYOUTS[arch]
        super().__init__(block, layers, num_classes=num_outputs)


def _keras_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:  # convolutions before batch norm have none
            nn.init.zeros_(module.bias)


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters, as Keras' ``model.summary()`` counts them."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
