"""How much the dashboards slow an epoch: a demo-sized fit with and without them, same seed.

    python benchmarks/dashboard_overhead.py --root data/demo --epochs 3 --repeats 2

Runs alternate (off, on, off, on, ...) so that a change in machine load hits both alike. Prints, per
variant, the epoch's wall time (training + validation: mean, median, minimum) and the CPU time of
the training process per epoch (the data loader's worker not included), then the ratios; and the
time spent inside ``TensorBoardDashboards``' own hooks as a share of the epochs' wall time. On a
shared machine the wall times swing by tens of percent from one epoch to the next; the CPU times
and the time inside the hooks are what other processes' load does not blur.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from lit_celeba.callbacks.dashboards import TensorBoardDashboards
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.demo_set import DemoSet
from lit_celeba.data.settings import Subsets
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.nets import RecipeCNN

HOOKS = (
    "setup",
    "on_fit_start",
    "on_train_batch_end",
    "on_validation_epoch_start",
    "on_validation_batch_end",
    "on_validation_epoch_end",
    "teardown",
)


class EpochTimer(Callback):
    """Wall and CPU time of each training epoch, its validation included (it runs before the epoch
    ends)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])


def timed_dashboards() -> tuple[TensorBoardDashboards, dict[str, float]]:
    """The callback with every hook wrapped in a stopwatch."""
    callback, spent = TensorBoardDashboards(), {"seconds": 0.0}
    for name in HOOKS:
        hook = getattr(callback, name)

        @functools.wraps(hook)
        def timed(*args: Any, _hook=hook, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                spent["seconds"] += time.perf_counter() - start

        setattr(callback, name, timed)
    return callback, spent


def fit_once(root: str, epochs: int, dashboards: bool, log_dir: str) -> tuple[EpochTimer, float]:
    pl.seed_everything(1, verbose=False)
    data = CelebADataModule(
        root=root,
        synthetic=DemoSet(),
        subsets=Subsets(train=3000, val=500, test=500),
        batch_size=32,
        num_workers=1,
    )
    timer = EpochTimer()
    callbacks: list[Callback] = [ModelCheckpoint(monitor="val/acc", mode="max", save_last=True)]
    spent = {"seconds": 0.0}
    if dashboards:
        callback, spent = timed_dashboards()
        callbacks += [LearningRateMonitor(), callback]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        log_every_n_steps=20,
        logger=TensorBoardLogger(log_dir, name="bench", default_hp_metric=False),
        callbacks=[*callbacks, timer],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(AttributeClassifier(RecipeCNN()), datamodule=data)
    return timer, spent["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/demo", help="the demo data (generated if absent)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    in_callback = 0.0
    with tempfile.TemporaryDirectory() as log_dir:
        for repeat in range(args.repeats):
            for dashboards in (False, True):
                timer, spent = fit_once(args.root, args.epochs, dashboards, log_dir)
                wall[dashboards] += timer.wall
                cpu[dashboards] += timer.cpu
                in_callback += spent
                label = "with" if dashboards else "without"
                pairs = zip(timer.wall, timer.cpu, strict=True)
                times = ", ".join(f"{w:.2f} ({c:.2f} CPU)" for w, c in pairs)
                print(f"run {repeat + 1} {label} dashboards: epochs {times} s", flush=True)
    for dashboards in (False, True):
        label = "with   " if dashboards else "without"
        w, c = wall[dashboards], cpu[dashboards]
        print(
            f"{label} dashboards, {len(w)} epochs: wall mean {statistics.mean(w):.2f} s, median "
            f"{statistics.median(w):.2f} s, min {min(w):.2f} s; CPU mean {statistics.mean(c):.2f} s"
        )
    for name, stat in (("mean", statistics.mean), ("median", statistics.median), ("min", min)):
        print(
            f"wall time ratio with / without ({name}): {stat(wall[True]) / stat(wall[False]):.4f}"
        )
    cpu_ratio = statistics.mean(cpu[True]) / statistics.mean(cpu[False])
    print(f"CPU time ratio with / without (mean): {cpu_ratio:.4f}")
    share = in_callback / sum(wall[True])
    print(f"time inside TensorBoardDashboards' hooks: {in_callback:.2f} s, {share:.2%} of epochs")


if __name__ == "__main__":
    main()
