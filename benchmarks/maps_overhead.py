"""What the activation maps cost each epoch: the time spent keeping the candidates at every
validation batch and drawing their maps at the end of the validation, against the epoch.

    python benchmarks/maps_overhead.py --root data/demo [--epochs 2] [--attributes 1|40]
        [--model recipe|batch_norm|resnet18] [--train_size 3000] [--val_size 500]

A demo-sized fit (generated faces, created under ``--root`` if absent) with the dashboards as
configured (``maps_per_kind: 4``), on the CPU; ``MapCandidates.update`` and
``EvaluationPictures._publish_maps`` are timed from the inside. Prints, per epoch, the epoch's
wall time (training and validation) and the maps' time, then their share of the epochs.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger

from lit_celeba.callbacks import evaluation_pictures
from lit_celeba.callbacks.dashboards import TensorBoardDashboards
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.demo_set import DemoSet
from lit_celeba.data.settings import Subsets
from lit_celeba.data.synthetic.faces import ATTRIBUTE_NAMES
from lit_celeba.explain import candidates
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.nets import RecipeCNN, ResNet

SPENT = {"seconds": 0.0}


def stopwatch(owner: Any, name: str) -> None:
    method = getattr(owner, name)

    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            SPENT["seconds"] += time.perf_counter() - start

    setattr(owner, name, timed)


class EpochTimer(Callback):
    """Each training epoch's wall time (its validation included) and the maps' share of it."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._maps = time.perf_counter(), SPENT["seconds"]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows.append((time.perf_counter() - self._start, SPENT["seconds"] - self._maps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/demo")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--attributes", type=int, choices=(1, 40), default=1)
    parser.add_argument("--model", choices=("recipe", "batch_norm", "resnet18"), default="recipe")
    parser.add_argument("--train_size", type=int, default=3000)
    parser.add_argument("--val_size", type=int, default=500)
    args = parser.parse_args()
    stopwatch(candidates.MapCandidates, "update")
    stopwatch(evaluation_pictures.EvaluationPictures, "_publish_maps")
    pl.seed_everything(1, verbose=False)
    targets = "Male" if args.attributes == 1 else list(ATTRIBUTE_NAMES)
    size = 128 if args.model == "resnet18" else 64
    data = CelebADataModule(
        root=args.root, synthetic=DemoSet(), target_attr=targets,
        subsets=Subsets(train=args.train_size, val=args.val_size, test=args.val_size),
        image_size=size, batch_size=32,
        num_workers=1,
    )  # fmt: skip
    if args.model == "resnet18":
        net = ResNet(num_outputs=len(data.target_attrs))
    else:
        net = RecipeCNN(batch_norm=args.model == "batch_norm", num_outputs=len(data.target_attrs))
    model = AttributeClassifier(net, target_attrs=data.target_attrs)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_epochs=args.epochs, num_sanity_val_steps=0,
            logger=TensorBoardLogger(log_dir, name="bench", default_hp_metric=False),
            callbacks=[TensorBoardDashboards(), timer], enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(model, datamodule=data)
    for epoch, (wall, maps) in enumerate(timer.rows, start=1):
        print(f"epoch {epoch}: {wall:.2f} s, maps {maps:.3f} s ({maps / wall:.2%})", flush=True)
    wall = sum(w for w, _ in timer.rows)
    maps = sum(m for _, m in timer.rows)
    print(f"{args.model}, {args.attributes} attribute(s), {args.train_size} training and "
          f"{args.val_size} validation faces: maps {maps:.3f} s of {wall:.2f} s, "
          f"{maps / wall:.2%} of the epochs")  # fmt: skip


if __name__ == "__main__":
    main()
