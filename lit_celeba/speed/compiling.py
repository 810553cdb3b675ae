"""``torch.compile`` of the network (``model.compile``): the modes, and the callback that marks
CUDA-graph steps and times the first training step, where compilation happens."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.base.errors import SettingError

# ``compile``: false, true (torch.compile's default mode) or one of its modes by name. A plain
# ``bool | str`` rather than a Literal, so that a misspelt mode gets the list of valid ones.
CompileMode = bool | str
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune")


def check_compile_mode(mode: object) -> None:
    if mode not in COMPILE_MODES:
        shown = ", ".join(str(choice).lower() for choice in COMPILE_MODES)
        raise SettingError("compile", f"must be one of {shown}; got {mode!r}")


def compile_in_place(net: torch.nn.Module, mode: CompileMode) -> None:
    """Compiles ``net`` in place, so a checkpoint's keys stay the plain ones; "reduce-overhead"
    captures the steps in CUDA graphs, one launch per step instead of one per kernel."""
    net.compile(mode=None if mode is True else mode)


class CompiledSteps(Callback):
    """Marks each training step as a new CUDA-graph iteration under "reduce-overhead" (the last
    step's outputs may then be reused), and says how long the first training step took, so that
    an epoch's time is not mistaken for the network's speed (``first_step_seconds``)."""

    def __init__(self, mode: CompileMode) -> None:
        self.mode = mode
        self.first_step_seconds: float | None = None
        self._started: float | None = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        if self._started is None:
            self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        if self.first_step_seconds is not None or self._started is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # once, at the first step
        self.first_step_seconds = time.perf_counter() - self._started
        mode = "default" if self.mode is True else self.mode
        rank_zero_info(f"torch.compile (mode {mode}): the first training step took "
                       f"{self.first_step_seconds:.1f} s, compilation included.")  # fmt: skip
