"""Training throughput of ``fit`` on 1 or N devices with Lightning's DDP strategy, to compare:

    python benchmarks/ddp_scaling.py --devices 1
    python benchmarks/ddp_scaling.py --devices 2 --strategy ddp      # Lightning starts rank 1
    python benchmarks/ddp_scaling.py --devices 8 --model resnet18 --image-size 128 --root CELEBA

Each run trains ``--epochs`` epochs on ``--images`` training images (generated CelebA-format faces
unless ``--root`` is given) with the decoded cache; the first epoch (which builds the cache and
warms up) is left out. ``--batch-size`` is per process, so the global batch grows with the number
of devices, as in a real DDP run. Rank 0 prints the best later epoch's seconds and images/s and
one JSON line. Under torchrun or SLURM (processes started outside Lightning) pass ``--root``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.nets import RecipeCNN, ResNet


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def _sync(self, trainer: pl.Trainer) -> None:
        if torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        trainer.strategy.barrier()  # an epoch ends when the slowest rank is done

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync(trainer)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._sync(trainer)
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--strategy", default="auto", help="auto, ddp, ...")
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--model", default="recipe", choices=["recipe", "resnet18"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=4096, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per process")
    parser.add_argument("--root", help="a CelebA copy to use instead of generated faces")
    parser.add_argument("--work-dir", help="data and cache folder (default: a new temporary one)")
    args = parser.parse_args()

    # Every rank runs this script and must use the same folder: the first process picks it and
    # the ranks that Lightning starts inherit it. Under torchrun or SLURM give --root/--work-dir.
    if not args.work_dir and "DDP_SCALING_DIR" not in os.environ:
        os.environ["DDP_SCALING_DIR"] = tempfile.mkdtemp(prefix="ddp_scaling-")
    work = Path(args.work_dir or os.environ["DDP_SCALING_DIR"])
    root = Path(args.root) if args.root else work / "data"
    if not args.root and not (root / "celeba").exists() and os.environ.get("LOCAL_RANK") is None:
        generate_celeba(root, args.images, args.batch_size, args.batch_size, seed=0)
    pl.seed_everything(0, verbose=False)
    data = CelebADataModule(root=str(root), subsets=Subsets(train=args.images, val=args.batch_size),
                            image_size=args.image_size, batch_size=args.batch_size,
                            num_workers=args.workers, cache=True,
                            cache_dir=str(work / "cache"))  # fmt: skip
    net = RecipeCNN(image_size=args.image_size) if args.model == "recipe" else ResNet()
    model = AttributeClassifier(net, channels_last=True)
    timer = EpochTimer()
    trainer = pl.Trainer(accelerator=args.accelerator, devices=args.devices,
                         num_nodes=args.num_nodes, strategy=args.strategy,
                         precision=args.precision, max_epochs=args.epochs, limit_val_batches=0,
                         num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer])  # fmt: skip
    trainer.fit(model, data)
    if not trainer.is_global_zero:
        return
    later = min(timer.seconds[1:])
    device = torch.cuda.get_device_name() if trainer.strategy.root_device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads per process"
    )  # fmt: skip
    print(f"{trainer.world_size} process(es), global batch {args.batch_size * trainer.world_size}: "
          f"later epoch {later:.2f} s, {args.images / later:.1f} img/s ({device})")  # fmt: skip
    print(json.dumps({
        "world_size": trainer.world_size, "seconds_per_epoch": round(later, 3),
        "img_s": round(args.images / later, 1), "first_epoch_s": round(timer.seconds[0], 3),
        "model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
        "precision": args.precision, "images": args.images, "device": device,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
