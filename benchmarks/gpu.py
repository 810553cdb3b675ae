"""The recipe on one GPU, in one run: how close ``fit`` comes to the network's own speed there.

    python benchmarks/gpu.py                  # on a GPU machine: about 6 minutes
    python benchmarks/gpu.py --train 512 --val 64 --epochs 2 --fit-epochs 2 --warmup 1 \\
        --compile-modes none --accelerator cpu          # a smoke test anywhere

Generates a CelebA-format set (16,000 + 1,000 faces, the recipe's subsets), then measures:

- (a) the network alone on tensors already on the device, at batch 32 and 512, eager and with
  each ``--compile-modes`` mode: images/s after a warm-up, and the first step's time (compilation);
- (b) ``python -m lit_celeba fit`` at batch 32 (``configs/base.yaml``) and at batch 512
  (``configs/fast.yaml``), each eager and compiled, ``--fit-epochs`` epochs: images/s of the
  training part of the later epochs (validation left out), seconds per 16,000-image epoch, the
  first step's time; b/a for each;
- the whole recipe, ``--epochs`` epochs of ``configs/base.yaml`` and of ``configs/fast.yaml``
  from a cold cache: wall time of the command (start-up, cache build and validation included)
  and the final validation accuracy.

Prints the GPU, torch and Lightning versions, a table, and last one JSON line with every figure.
The targets' stages run first and compilation last; ``--out`` holds every figure measured so far
after each stage, so a run cut short by a device call's time limit still has them.
The CLI runs in subprocesses, as a user runs it; ``benchmarks/epoch_times.py`` times their epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.nets import RecipeCNN
from lit_celeba.speed.precision import supported_precision

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {32: REPO / "configs" / "base.yaml", 512: REPO / "configs" / "fast.yaml"}
EPOCH_IMAGES = 16000  # the recipe's training subset: "seconds per epoch" is for this many


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_alone(batch: int, mode: str, device: torch.device, precision: str,
                steps: int, warmup: int) -> dict[str, float]:  # fmt: skip
    """Training steps of the recipe's network on random device tensors, with the optimizer of
    the config for that batch (Adam; fused at 512, as configs/fast.yaml)."""
    torch.manual_seed(0)
    compile_mode = False if mode == "none" else mode
    model = AttributeClassifier(RecipeCNN(), channels_last=True, compile=compile_mode)
    model = model.to(device).train()
    model.configure_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7,
                                 fused=batch >= 512 or None)  # fmt: skip
    data = [(torch.rand(batch, 3, 64, 64, device=device),
             torch.randint(0, 2, (batch, 1), device=device).float()) for _ in range(4)]  # fmt: skip
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
    first = 0.0
    for step in range(warmup + steps):
        if step in (0, warmup):
            _sync(device)
            start = time.perf_counter()
        images, targets = data[step % len(data)]
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # as AttributeClassifier does in fit
        with torch.autocast(device.type, dtype=dtype, enabled=precision == "bf16-mixed"):
            loss = F.binary_cross_entropy_with_logits(model(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == 0:
            _sync(device)
            first = time.perf_counter() - start
    _sync(device)
    return {"img_s": steps * batch / (time.perf_counter() - start), "first_step_s": first}


def cli_fit(config: Path, root: Path, work: Path, name: str, extra: list[str],
            accelerator: str, cache_dir: Path) -> dict[str, float | None]:  # fmt: skip
    """``python -m lit_celeba fit --config CONFIG`` in a subprocess, timed from outside (wall)
    and by ``epoch_times.EpochTimes`` inside."""
    out = work / f"{name}.json"
    env = {**os.environ, "EPOCH_TIMES_OUT": str(out), "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "benchmarks"),
                                          os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    command = [
        sys.executable, "-m", "lit_celeba", "fit", "--config", str(config),
        f"--data.root={root}", f"--data.cache_dir={cache_dir}",
        f"--trainer.accelerator={accelerator}", f"--trainer.logger.init_args.save_dir={work}",
        f"--trainer.logger.init_args.name={name}", "--trainer.enable_progress_bar=false",
        "--trainer.callbacks+=epoch_times.EpochTimes", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{name}: fit failed ({done.returncode}): {' '.join(command)}")
    times = json.loads(out.read_text())
    later = times["train_seconds"][1:] or times["train_seconds"]
    counts = times["images"][1:] or times["images"]
    steady = statistics.median(s / n for s, n in zip(later, counts, strict=True))  # s per image
    return {"wall_s": wall, "img_s": 1.0 / steady, "epoch_s": EPOCH_IMAGES * steady,
            "first_step_s": times["first_step_seconds"], "val_acc": times["val_acc"]}  # fmt: skip


class Stopped(BaseException):
    """SIGTERM (``timeout``'s signal): unlike a failed stage, it ends the run."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped(f"stopped by signal {signum}")


def write_figures(figures: dict, out: str | None, complete: bool) -> str:
    """The JSON line of every figure so far (``complete`` false until the last stage has run,
    ``failed`` the stages that did not finish), also written to ``out`` when given."""
    line = json.dumps({k: round(v, 4) if isinstance(v, float) else v
                       for k, v in {**figures, "complete": complete}.items()})  # fmt: skip
    if out:
        Path(out).write_text(line + "\n")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=16000, help="training faces to generate")
    parser.add_argument("--val", type=int, default=1000, help="validation (and test) faces")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the whole recipe")
    parser.add_argument("--fit-epochs", type=int, default=4,
                        help="epochs of each throughput run (the first is left out)")  # fmt: skip
    parser.add_argument("--compile-modes", default="default,reduce-overhead",
                        help="comma-separated torch.compile modes to try, or 'none'")  # fmt: skip
    parser.add_argument("--steps", type=int, default=300, help="timed steps of the model alone")
    parser.add_argument("--warmup", type=int, default=20,
                        help="untimed steps of the model alone before those")  # fmt: skip
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--root", help="a CelebA copy to use instead of generated faces")
    parser.add_argument("--out", help="also write the JSON line to this file")
    args = parser.parse_args()
    # As an exception, SIGTERM still removes the temporary folder and kills a running `fit`
    # (subprocess.run does on any exception), so a time limit leaves no process on the GPU.
    signal.signal(signal.SIGTERM, _stop)
    gpu = torch.cuda.is_available() and args.accelerator != "cpu"
    device = torch.device("cuda" if gpu else "cpu")
    accelerator = "gpu" if gpu else "cpu"
    precision = supported_precision("bf16-mixed", accelerator)
    name = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
    modes = ["none"] + [m for m in args.compile_modes.split(",") if m and m != "none"]
    print(f"device: {name}; torch {torch.__version__}, Lightning {pl.__version__}; "
          f"precision {precision}", flush=True)  # fmt: skip
    figures: dict[str, object] = {"device": name, "torch": torch.__version__,
                                  "lightning": pl.__version__}  # fmt: skip
    sizes = [f"--data.subsets.train={args.train}", f"--data.subsets.val={args.val}"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        root = Path(args.root) if args.root else generate_celeba(
            work / "data", args.train, args.val, args.val, seed=0)  # fmt: skip
        figures["generate_s"] = time.perf_counter() - start
        rows = []

        def throughput(batch: int, mode: str) -> None:
            alone = model_alone(batch, mode, device, precision, args.steps, args.warmup)
            extra = [*sizes, f"--trainer.max_epochs={args.fit_epochs}"]
            if mode != "none":
                extra.append(f"--model.compile={mode}")
            # A warm cache: the throughput runs share one (the recipe runs below build theirs).
            fit = cli_fit(CONFIGS[batch], root, work, f"fit{batch}_{mode}", extra,
                          accelerator, work / "cache")  # fmt: skip
            key = f"b{batch}_{mode}"
            figures.update({f"{key}_model_img_s": alone["img_s"], f"{key}_fit_img_s": fit["img_s"],
                            f"{key}_fit_vs_model": fit["img_s"] / alone["img_s"],
                            f"{key}_epoch_s": fit["epoch_s"],
                            f"{key}_model_first_step_s": alone["first_step_s"],
                            f"{key}_fit_first_step_s": fit["first_step_s"]})  # fmt: skip
            rows.append((f"batch {batch}, compile {mode}", alone, fit))
            print(f"batch {batch}, compile {mode}: model {alone['img_s']:.0f} img/s, fit "
                  f"{fit['img_s']:.0f} img/s (b/a {fit['img_s'] / alone['img_s']:.2f}), "
                  f"{fit['epoch_s']:.2f} s per {EPOCH_IMAGES} images", flush=True)  # fmt: skip

        def whole_recipe(batch: int, label: str) -> None:
            extra = [*sizes, f"--trainer.max_epochs={args.epochs}"]
            whole = cli_fit(CONFIGS[batch], root, work, label, extra, accelerator,
                            work / f"cold_cache_{label}")  # fmt: skip
            figures.update({f"{label}_{k}": whole[k] for k in ("wall_s", "val_acc", "epoch_s")})
            print(f"{label} ({CONFIGS[batch].name}), {args.epochs} epochs from a cold cache: "
                  f"{whole['wall_s']:.1f} s wall, val acc {whole['val_acc']:.4f}",
                  flush=True)  # fmt: skip

        # The targets first, compilation last; a stage that fails is reported and the
        # rest still run, and the JSON file is rewritten after each stage, so that one device
        # call that fails or runs out of time still brings back every figure measured.
        stages = {
            "b32_none": partial(throughput, 32, "none"),
            "recipe": partial(whole_recipe, 32, "recipe"),
            "b512_none": partial(throughput, 512, "none"),
            "fast": partial(whole_recipe, 512, "fast"),
        }
        stages |= {f"b{b}_{m}": partial(throughput, b, m) for m in modes[1:] for b in (32, 512)}
        failed: list[str] = []
        figures["failed"] = failed
        for label, stage in stages.items():
            try:
                stage()
            except (Exception, SystemExit) as error:  # cli_fit exits with the command's stderr
                print(f"stage {label} failed: {error!r}", file=sys.stderr, flush=True)
                failed.append(label)
            write_figures(figures, args.out, complete=False)
    print(f"\n{'':32s} {'model img/s':>12s} {'fit img/s':>10s} {'b/a':>6s} {'s/epoch':>8s} "
          f"{'1st step s (model, fit)':>24s}")  # fmt: skip
    for label, alone, fit in rows:
        print(f"{label:32s} {alone['img_s']:12.0f} {fit['img_s']:10.0f} "
              f"{fit['img_s'] / alone['img_s']:6.2f} {fit['epoch_s']:8.2f} "
              f"{alone['first_step_s']:11.1f} {fit['first_step_s'] or 0:11.1f}")  # fmt: skip
    print(write_figures(figures, args.out, complete=True))
    if failed:
        raise SystemExit(f"stages that failed: {', '.join(failed)}")


if __name__ == "__main__":
    try:
        main()
    except Stopped as stopped:
        raise SystemExit(f"{stopped}: --out has the figures of the stages that finished") from None
