"""``LearningRateMonitor``: Lightning's, without a copy to the GPU in the steps it logs.

Lightning's puts each learning rate it logs into ``trainer.callback_metrics`` as
``torch.tensor(rate, device=<the training device>)``, at the start of every logged training step:
on a GPU that is a blocking host-to-device copy, a host synchronisation between two steps that
``torch.cuda.set_sync_debug_mode("error")`` rejects (``lit_celeba.callbacks.host_sync``; the CPU
probe of tests/test_host_sync.py found it at every logged step, pytorch-lightning 2.6.6), and no
argument turns it off. This one gives Lightning's public hooks a trainer whose root device is the
CPU, so those tensors are made on the host, where a rate read from the optimizer already is; what
it logs, and under which names (``lr-Adam``...), is Lightning's own.
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
    """The trainer as Lightning's ``LearningRateMonitor`` hooks read it, but for
    ``strategy.root_device``, the one strategy attribute they ask for."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self._trainer = trainer
        self.strategy = SimpleNamespace(root_device=_HOST)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)


class LearningRateMonitor(LightningLearningRateMonitor):
    # The two hooks that log (and copy) the rates; the others see the real trainer.
    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_start(_RootDeviceOnTheHost(trainer), *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        super().on_train_epoch_start(_RootDeviceOnTheHost(trainer), *args, **kwargs)
