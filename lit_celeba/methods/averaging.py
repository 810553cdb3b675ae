"""Weight averaging for short runs: Lightning's ``WeightAveraging`` with a warm-up EMA decay."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging
from torch.optim.swa_utils import AveragedModel

from lit_celeba.base.errors import SettingError
from lit_celeba.base.lightning_internals import averaged_model, use_averaged_model


def check_ema_decay(ema_decay: float | None) -> None:
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise SettingError("ema_decay", f"must be in (0, 1) or null, got {ema_decay}")


def warmup_ema_avg_fn(decay: float) -> Callable[..., torch.Tensor]:
    """An ``AveragedModel`` ``avg_fn`` whose decay after ``n`` averaged steps is
    ``min(decay, (1 + n) / (10 + n))``, as TensorFlow's ``ExponentialMovingAverage(num_updates)``
    and timm's ``ModelEmaV2`` warm-up do.

    A fixed decay near 1 starts from the weights after the first step and forgets them slowly:
    at 0.999 they still weigh 0.78 after 250 steps, one epoch of 8,000 faces, and on real faces
    such an average stayed at the initial validation accuracy for four epochs. With the warm-up
    the average always spans about the last tenth of the steps taken, until that reaches the
    horizon ``1 / (1 - decay)`` steps.
    """

    def avg_fn(
        averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor | int
    ) -> torch.Tensor:
        n = torch.as_tensor(num_averaged, dtype=torch.float32, device=averaged.device)
        step_decay = torch.clamp((1.0 + n) / (10.0 + n), max=decay)
        return step_decay * averaged + (1.0 - step_decay) * current

    return avg_fn


class HostCountedAverage(AveragedModel):
    """torch's ``AveragedModel`` with an ``update_parameters`` that reads nothing back from the
    device.

    torch's asks ``bool(n_averaged == 0)`` and ``n_averaged > 0`` of its count, a tensor on the
    model's device, in every update: two host synchronisations per training step on a GPU,
    which ``set_sync_debug_mode("error")`` rejects. Here the host also knows whether any update
    happened yet (set again whenever a state dict is loaded, which is outside the steps); the
    count itself stays on the device and goes to ``avg_fn`` as before, so the averages are the
    very same. Only the form :class:`WarmupEMA` uses (a per-tensor ``avg_fn``, buffers averaged
    too) is written here; any other goes to torch's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._updated_before = False
        self.register_load_state_dict_post_hook(HostCountedAverage._read_count)

    @staticmethod
    def _read_count(module: HostCountedAverage, incompatible_keys: Any) -> None:
        module._updated_before = bool(module.n_averaged > 0)  # at load time: one read, no step

    def update_parameters(self, model: torch.nn.Module) -> None:
        if self.avg_fn is None or self.multi_avg_fn is not None or not self.use_buffers:
            super().update_parameters(model)
            self._updated_before = True
            return
        averaged = itertools.chain(self.module.parameters(), self.module.buffers())
        current = itertools.chain(model.parameters(), model.buffers())
        for p_averaged, p_model in zip(averaged, current, strict=False):  # as torch's
            p_averaged, p_model = p_averaged.detach(), p_model.detach().to(p_averaged.device)
            if self._updated_before:
                p_averaged.copy_(self.avg_fn(p_averaged, p_model, self.n_averaged))
            else:
                p_averaged.copy_(p_model)
        self.n_averaged += 1
        self._updated_before = True


class WarmupEMA(WeightAveraging):
    """Lightning's ``WeightAveraging`` (validation on the averaged weights, the averaged weights in
    the checkpoint's ``state_dict`` and the raw ones in ``current_model_state``, both restored on
    resume) with :func:`warmup_ema_avg_fn`, kept in a :class:`HostCountedAverage` on the model's
    device. ``AttributeClassifier(net, ema_decay=...)`` adds it.

    Averaged after every optimizer step (``WeightAveraging``'s default, as in
    ``EMAWeightAveraging``), buffers too (batch-norm statistics).
    """

    def __init__(self, decay: float = 0.99) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.avg_fn = warmup_ema_avg_fn(decay)
        super().__init__(use_buffers=True, avg_fn=self.avg_fn)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # WeightAveraging.setup, with HostCountedAverage for AveragedModel. Its warning about a
        # configure_model hook (that layers are not sharded) does not apply: this module's only
        # compiles the network.
        if stage == "fit":
            pl_module.configure_model()
            average = HostCountedAverage(
                model=pl_module, device=pl_module.device, use_buffers=True, avg_fn=self.avg_fn
            )
            use_averaged_model(self, average)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if averaged_model(self) is None:
            # test / validate / predict: the checkpoint's state_dict already holds the averaged
            # weights, which is what they should evaluate; nothing to restore, nothing to warn.
            return
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
