"""Training throughput of the recipe's CNN, three ways, in one run on the same device:

(a) the model alone on tensors already in memory (the upper bound),
(b) the project's ``fit`` loop (decoded cache + batched augmentation on the device),
(c) a naive per-sample pipeline: PIL decode + torchvision transforms + DataLoader workers.

    python benchmarks/throughput.py                       # CPU or the GPU there is
    python benchmarks/throughput.py --precision 32-true --images 6400

The three are measured in turn, ``--rounds`` times over, and each keeps its best round: a shared
machine's noise (other jobs, a VM's stolen time) then lowers single rounds, not the ratios.
Prints images/s for each round and the best, the ratios b/a and b/c of the best figures (and the
median of each round's own ratios), the first epoch (which builds the cache) against a later one,
and last one JSON line with all figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from lit_celeba.base.allocator import retain_freed_memory
from lit_celeba.data.celeba import load_index
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.nets import RecipeCNN
from lit_celeba.speed.precision import supported_precision


def autocast(device: torch.device, precision: str) -> torch.autocast:
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def recipe_model() -> AttributeClassifier:
    """The recipe's network in base.yaml's module settings (channels-last)."""
    return AttributeClassifier(RecipeCNN(), channels_last=True)


def train_loop(model: AttributeClassifier, batches, device: torch.device, precision: str,
               warmup: int) -> float:  # fmt: skip
    """Plain PyTorch training steps; images/s after ``warmup`` steps."""
    model.to(device).train()
    optimizer = model.configure_optimizers()
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    seen, start = 0, None
    for step, (images, targets) in enumerate(batches):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            seen, start = 0, time.perf_counter()
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with autocast(device, precision):
            loss = F.binary_cross_entropy_with_logits(model(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        seen += len(images)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def model_only(args, device: torch.device) -> float:
    torch.manual_seed(0)
    data = [
        (torch.rand(args.batch_size, 3, 64, 64), torch.randint(0, 2, (args.batch_size, 1)).float())
        for _ in range(8)
    ]
    data = [(x.to(device), y.to(device)) for x, y in data]
    steps = args.images // args.batch_size
    batches = (data[i % len(data)] for i in range(steps + args.warmup))
    return train_loop(recipe_model(), batches, device, args.precision, args.warmup)


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.fit_start = 0.0
        self.epochs: list[tuple[float, float]] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append((time.perf_counter(), 0.0))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs[-1] = (self.epochs[-1][0], time.perf_counter())


def project_fit(args, root: Path, cache_dir: Path, accelerator: str) -> tuple[float, float, float]:
    """(images/s of the second epoch, first epoch's seconds incl. setup and any cache build, the
    second epoch's seconds)."""
    pl.seed_everything(0, verbose=False)
    data = CelebADataModule(root=str(root), subsets=Subsets(train=args.images, val=args.batch_size),
                            batch_size=args.batch_size, num_workers=args.fit_workers,
                            cache=True, cache_dir=str(cache_dir))  # fmt: skip
    timer = EpochTimer()
    trainer = pl.Trainer(accelerator=accelerator, devices=1, precision=args.precision,
                         max_epochs=2, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer])  # fmt: skip
    start = time.perf_counter()
    trainer.fit(recipe_model(), data)
    first = timer.epochs[0][1] - start  # setup (the cache build) and the first epoch
    later = timer.epochs[1][1] - timer.epochs[1][0]
    return args.images / later, first, later


class NaiveImages(Dataset):
    """The usual PyTorch way: open each JPEG with PIL and transform it in the worker."""

    def __init__(self, paths: list[Path], targets: torch.Tensor) -> None:
        self.paths, self.targets = paths, targets
        self.transform = v2.Compose([
            v2.PILToTensor(),
            v2.RandomCrop((178, 178)),
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize((64, 64), antialias=False),
            v2.RandomHorizontalFlip(),
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB")), self.targets[i]


def naive(args, root: Path, device: torch.device, workers: int) -> float:
    index = load_index(root)
    rows = index.split_indices("train", args.images)
    paths = [index.files.image_dir / index.image_names[i] for i in rows]
    targets = torch.as_tensor(index.attributes[rows, index.attr_column("Male")]).float()[:, None]
    loader = DataLoader(NaiveImages(paths, targets), batch_size=args.batch_size, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                        drop_last=True)  # fmt: skip
    torch.manual_seed(0)
    return train_loop(recipe_model(), iter(loader), device, args.precision, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3200, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="bf16-mixed",
                        choices=["32-true", "bf16-mixed", "16-mixed"],
                        help="bf16-mixed (the configs' choice) becomes 32-true or 16-mixed where "
                             "the hardware only emulates bfloat16, as in the CLI")  # fmt: skip
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps of (a) and (c)")
    parser.add_argument(
        "--fit-workers",
        type=int,
        default=0,
        help="DataLoader workers of the project's fit (0: the main process)",
    )
    parser.add_argument("--root", help="a CelebA copy to use instead of generated faces")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times each of (a), (b), (c) is measured, in turn; each keeps its "
                             "best")  # fmt: skip
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    # As the CLI does; for all three ways alike (the naive pipeline's workers inherit it).
    retain_freed_memory()

    gpu = torch.cuda.is_available() and args.accelerator != "cpu"
    device = torch.device("cuda" if gpu else "cpu")
    accelerator = "gpu" if gpu else "cpu"
    args.precision = supported_precision(args.precision, accelerator)
    name = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    # The naive pipeline's usual best settings: as many worker processes as help, up to a core each.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = [w for w in (1, 2, 4, 8, 16) if w <= (cores or 1)]
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else Path(tmp) / "data"
        if not args.root:
            generate_celeba(root, args.images, args.batch_size, args.batch_size, seed=0)
        for r in range(args.rounds):
            figures = {"a": model_only(args, device)}
            # The first round's fit builds the cache; later rounds find it.
            figures["b"], first, later = project_fit(args, root, Path(tmp) / "cache", accelerator)
            if r == 0:
                first_vs_later = first / later
            figures |= {f"c{w}": naive(args, root, device, w) for w in workers}
            rounds.append(figures)
            shown = ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
            print(f"round {r + 1}/{args.rounds} (img/s): {shown}", flush=True)
    best = {k: max(f[k] for f in rounds) for k in rounds[0]}
    a, b = best["a"], best["b"]
    best_workers = max(workers, key=lambda w: best[f"c{w}"])
    c = best[f"c{best_workers}"]
    tried = ", ".join(f"{w} workers {best[f'c{w}']:.1f}" for w in workers)
    print(f"best of {args.rounds} rounds:")
    print(f"(a) model alone, tensors in memory: {a:8.1f} img/s")
    print(f"(b) lit_celeba fit (cached):        {b:8.1f} img/s")
    print(f"(c) naive PIL pipeline, best of [{tried}]: {c:8.1f} img/s")
    print(f"b/a = {b / a:.3f}   b/c = {b / c:.3f}")
    # The same ratios within each round, for the spread that a drifting machine gives them.
    round_b_a = statistics.median(f["b"] / f["a"] for f in rounds)
    round_b_c = statistics.median(f["b"] / max(f[f"c{w}"] for w in workers) for f in rounds)
    print(f"median of the rounds' own ratios: b/a = {round_b_a:.3f}   b/c = {round_b_c:.3f}")
    print(f"first epoch incl. cache build {first_vs_later:.2f}x a later epoch (round 1)")
    print(json.dumps({
        "model_only_img_s": round(a, 1), "fit_img_s": round(b, 1), "naive_img_s": round(c, 1),
        "fit_vs_model_only": round(b / a, 3), "fit_vs_naive": round(b / c, 3),
        "first_epoch_vs_later": round(first_vs_later, 3), "naive_workers": best_workers,
        "device": name, "precision": args.precision, "batch_size": args.batch_size,
        "images": args.images, "rounds": args.rounds,
        "fit_vs_model_only_round_median": round(round_b_a, 3),
        "fit_vs_naive_round_median": round(round_b_c, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
