"""``LearningRateMonitor``: Lightning's, without a copy to the GPU in the steps it logs.

Lightning's puts each learning rate it logs into ``trainer.callback_metrics`` as
``torch.tensor(rate, device=<the training device>)``, at the start of every logged training step:
on a GPU that is a blocking host-to-device copy, a host synchronisation between two steps that
``torch.cuda.set_sync_debug_mode("error")`` rejects (``lit_celeba.callbacks.host_sync``). This
one gives Lightning's code a trainer whose root device is the CPU, so those tensors are made on
the host, where a rate read from the optimizer already is; what it logs, and under which names
(``lr-Adam``...), is Lightning's own.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor as LightningLearningRateMonitor

# The name, not a torch.device: tests/sync_probe.py takes a literal "cpu" as a tensor kept on the
# host on purpose, as torch's Adam keeps its step counts.
_HOST = "cpu"


class _RootDeviceOnTheHost:
    """The trainer as Lightning's ``_extract_stats`` reads it, but for ``strategy.root_device``,
    the one strategy attribute it asks for."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self._trainer = trainer
        self.strategy = SimpleNamespace(root_device=_HOST)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)


class LearningRateMonitor(LightningLearningRateMonitor):
    def _extract_stats(self, trainer: pl.Trainer, interval: str) -> dict[str, float]:
        return super()._extract_stats(_RootDeviceOnTheHost(trainer), interval)
