"""A callback for the no-host-sync tests: records, while training (see ``HostReadProbe``), each
operation that makes a GPU wait for the host: a tensor read as a Python number, bool or list, an
op whose output size depends on the data (``nonzero``, ``masked_select``, ``unique``...), or
Python data made into a tensor on the model's device (``torch.tensor(values, device=...)``: a
blocking copy to the GPU, which ``set_sync_debug_mode`` rejects as well).

On the CPU nothing waits, but the same calls happen, so recording them there finds what
``torch.cuda.set_sync_debug_mode("error")`` would stop on a GPU. Tensors on the CPU while the
model is on a GPU (Adam's step counts, say) would not sync there: the test passes the names it
allows for those.
"""

from __future__ import annotations

import json
import os
import traceback
from collections import Counter
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

READS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "cpu"}
FROM_HOST = {"tensor", "as_tensor"}  # a sync where the data is Python's and the device a GPU
DATA_DEPENDENT = {"nonzero", "masked_select", "unique", "_unique2", "unique_dim", "bincount",
                  "repeat_interleave"}


_PLUMBING = ("torch/overrides.py", "torch/utils/_python_dispatch.py", "torch/_tensor.py")
_PROBE = ("_where", "__torch_function__", "__torch_dispatch__")


_PACKAGES = ("lit_celeba", "torch", "torchmetrics", "pytorch_lightning", "lightning_fabric")
CHECKOUT = Path(__file__).resolve().parents[1]


def short_path(filename: str, checkout: Path = CHECKOUT) -> str:
    """``package/path.py`` of a frame's file: relative to the checkout for this project's own
    files (whatever the checkout's folder is called: a clone named ``lit_celeba`` too), else
    from the installed package's folder on."""
    path = Path(filename)
    if path.is_relative_to(checkout):
        return path.relative_to(checkout).as_posix()
    parts = path.as_posix().split("site-packages/")[-1].split("/")
    start = next((i for i, part in enumerate(parts) if part in _PACKAGES), 0)
    return "/".join(parts[start:])


def _where() -> str:
    """The innermost caller that is not this probe or torch's dispatch plumbing, as
    ``package/path.py:line`` (``torch/optim/adam.py:...``, ``lit_celeba/models/module.py:...``)."""
    for frame in reversed(traceback.extract_stack()):
        path = frame.filename.replace("\\", "/")
        probe = path.endswith("sync_probe.py") and frame.name in _PROBE
        if not probe and not any(path.endswith(p) for p in _PLUMBING):
            return f"{short_path(path)}:{frame.lineno}"
    return "?"


class _Reads(TorchFunctionMode):
    def __init__(self, seen: Counter) -> None:
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        kwargs = kwargs or {}
        if name in READS:
            self.seen[f"{name} at {_where()}"] += 1
        elif name in FROM_HOST and kwargs.get("device") not in (None, "cpu"):
            # A device taken from a tensor or the model (the CPU in this run, a GPU in another);
            # the literal "cpu" keeps a tensor on the host on purpose (Adam's step counts).
            if not (args and isinstance(args[0], torch.Tensor)):
                self.seen[f"{name} from host data at {_where()}"] += 1
        return func(*args, **kwargs)


class _Ops(TorchDispatchMode):
    def __init__(self, seen: Counter) -> None:
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in DATA_DEPENDENT:
            self.seen[f"{name} at {_where()}"] += 1
        return func(*args, **(kwargs or {}))


class HostReadProbe(pl.Callback):
    """Records from the first ``on_train_batch_start`` of each epoch to its
    ``on_train_batch_end``... of the last batch, i.e. everything between the steps too (Lightning's
    loop, the callbacks, the next batch's fetch), until ``on_train_epoch_end``; validation is left
    out. Writes what it saw to the JSON file named by ``$HOST_READ_PROBE_OUT`` at the end of fit.
    """

    def __init__(self) -> None:
        self.seen: Counter = Counter()
        self._modes: list = []
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps += 1
        if not self._modes:
            self._modes = [_Reads(self.seen), _Ops(self.seen)]
            for mode in self._modes:
                mode.__enter__()

    def _stop(self) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(None, None, None)
        self._modes = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._stop()  # validation inside an epoch (val_check_interval < 1)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop()

    def on_fit_end(self, trainer, pl_module) -> None:
        out = os.environ.get("HOST_READ_PROBE_OUT")
        if out:
            with open(out, "w") as f:
                json.dump({"steps": self.steps, "seen": dict(self.seen)}, f, indent=1)


class ReadsTheLoss(pl.Callback):
    """A host read in every step, for the test that the probe catches one."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        float(outputs["loss"].item())
