"""Worst-group test accuracy of each training objective over seeds, on planted-shortcut faces.

    python benchmarks/groups_over_seeds.py                      # the slow test's setting, 10 seeds
    python benchmarks/groups_over_seeds.py --seeds 0 1 2 --dropout 0.5 --objectives erm balanced

The faces are generated (docs/groups.md, "On generated data"): in the train split 95 % of the
blond faces are women (``--share``), in the test split ``Male`` is a fair coin. For every seed,
one such set, then each objective trained and tested on it with that seed. Prints a row per
seed and objective (worst-group and mean-of-groups test accuracy, the worst group, each group's
accuracy, the seconds), a table over seeds with the gains of the worst group over plain
training (ERM) and their minimum and mean, then one JSON line with every figure. The defaults
are the setting of ``tests/test_groups.py::test_objectives_raise_the_worst_group``, which
imports it from here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from lit_celeba.callbacks.predictions import PredictionWriter
from lit_celeba.callbacks.test_tables import TestTables
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.methods.groups import group_names
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.nets import RecipeCNN

TARGET, SPURIOUS = "Blond_Hair", "Male"
GROUPS = group_names(TARGET, [SPURIOUS])
# "balanced" is ERM's loss on group-balanced batches (the data module's sampler group_balanced).
OBJECTIVES = ("erm", "balanced", "reweight", "group_dro")


@dataclass(frozen=True)
class Setting:
    """One experiment: the generated set, the network and its training. The defaults are the
    slow test's; why each is what it is: docs/groups.md, "On generated data"."""

    share: float = 0.05  # train faces whose Male equals Blond_Hair: 95 % of blond faces women
    train_size: int = 3000
    test_size: int = 1000
    image_size: int = 16
    channels: tuple[int, int, int, int] = (16, 32, 64, 128)
    dropout: float = 0.0
    batch_size: int = 64
    epochs: int = 10
    ema_decay: float | None = 0.99  # validate and test an average of the weights
    dro_eta: float = 0.05
    dro_adjust: float = 0.0


def generate(root: Path, seed: int, setting: Setting) -> Path:
    """The generated set of ``seed`` under ``root`` (label noise 0: noise would move faces
    between groups); returns ``root``."""
    generate_celeba(root, setting.train_size, 10, setting.test_size, seed=seed, label_noise=0.0,
                    progress=False, correlate=(TARGET, SPURIOUS, setting.share))  # fmt: skip
    return root


def train_and_test(
    root: Path, seed: int, objective: str, setting: Setting, run_dir: Path | None = None
) -> dict[str, float]:
    """Fits ``objective`` on the set at ``root``; returns ``trainer.test``'s metrics and the
    training images per group (``train/group_size/<group>``). With ``run_dir``, the run's files
    (test_groups.csv, ...) go there, and so do the test split's predictions (predictions.csv)."""
    pl.seed_everything(seed, verbose=False)
    model_objective = "erm" if objective == "balanced" else objective
    data = CelebADataModule(
        str(root), target_attr=TARGET, subgroups=[SPURIOUS],
        subsets=Subsets(train=setting.train_size, val=10, test=setting.test_size),
        image_size=setting.image_size,
        batch_size=setting.batch_size, num_workers=0, cache_dir=str(root / "cache"),
        sampler="group_balanced" if objective == "balanced" else "random",
    )  # fmt: skip
    net = RecipeCNN(setting.channels, dropout=setting.dropout, image_size=setting.image_size)
    model = AttributeClassifier(
        net, target_attrs=[TARGET], subgroups=[SPURIOUS], objective=model_objective,
        dro_eta=setting.dro_eta, dro_adjust=setting.dro_adjust, ema_decay=setting.ema_decay,
    )  # fmt: skip
    trainer = pl.Trainer(
        max_epochs=setting.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        # Without a logger the run's files (test_groups.csv, ...) go to default_root_dir.
        default_root_dir=str(run_dir or root / f"run-{objective}-{seed}"),
        callbacks=[TestTables(), *([PredictionWriter()] if run_dir else [])],
    )  # fmt: skip
    trainer.fit(model, data)
    metrics = trainer.test(model, data, verbose=False)[0]
    if run_dir:
        trainer.predict(model, data, return_predictions=False)
    counts = data.train_group_counts.tolist()
    return metrics | {f"train/group_size/{g}": n for g, n in zip(GROUPS, counts, strict=True)}


def summary(metrics: dict[str, float]) -> dict[str, Any]:
    """The figures of one run: worst and mean group accuracy, the worst group, every group's."""
    groups = {g: metrics[f"test/group_acc/{g}"] for g in GROUPS if f"test/group_acc/{g}" in metrics}
    return {
        "worst": metrics["test/worst_group_acc"],
        "mean": metrics["test/mean_group_acc"],
        "worst_group": min(groups, key=groups.get),
        "groups": groups,
        "test_sizes": {g: int(metrics[f"test/group_size/{g}"]) for g in GROUPS},
        "train_sizes": {g: int(metrics[f"train/group_size/{g}"]) for g in GROUPS},
    }


def measure(seeds: list[int], objectives: list[str], setting: Setting) -> dict[str, Any]:
    """Every objective on every seed's set: {objective: {seed: summary}} and the seconds."""
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in objectives}
    seconds: dict[str, list[float]] = {name: [] for name in objectives}
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="groups_over_seeds-") as tmp:
            root = generate(Path(tmp), seed, setting)
            for name in objectives:
                start = time.perf_counter()
                results[name][seed] = summary(train_and_test(root, seed, name, setting))
                seconds[name].append(time.perf_counter() - start)
                row = results[name][seed]
                shown = " ".join(f"{row['groups'][g]:.3f}" for g in GROUPS if g in row["groups"])
                print(f"seed {seed} {name:9s} worst {row['worst']:.3f} mean {row['mean']:.3f} "
                      f"({row['worst_group']}) groups {shown}  {seconds[name][-1]:.0f} s",
                      flush=True)  # fmt: skip
    return {"results": results, "seconds": seconds}


def gains(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[int, float]]:
    """Each objective's worst-group accuracy minus ERM's, per seed."""
    erm = results["erm"]
    return {
        name: {seed: row["worst"] - erm[seed]["worst"] for seed, row in runs.items()}
        for name, runs in results.items()
        if name != "erm"
    }


def print_table(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """The worst / mean table over seeds and the gains; returns the aggregates."""
    seeds = sorted(next(iter(results.values())))
    print("\ntest accuracy, worst group / mean of groups")
    print(f"{'objective':10s} " + " ".join(f"{'seed ' + str(s):>13s}" for s in seeds)
          + f" {'min worst':>10s} {'mean worst':>10s}")  # fmt: skip
    aggregates: dict[str, Any] = {}
    for name, runs in results.items():
        worst = [runs[s]["worst"] for s in seeds]
        cells = " ".join(f"{runs[s]['worst']:.3f} / {runs[s]['mean']:.3f}" for s in seeds)
        print(f"{name:10s} {cells} {min(worst):10.3f} {statistics.mean(worst):10.3f}")
        aggregates[name] = {"min_worst": min(worst), "mean_worst": statistics.mean(worst)}
    if "erm" in results:
        erm_gap = [results["erm"][s]["mean"] - results["erm"][s]["worst"] for s in seeds]
        print(f"{'ERM mean - worst':17s}" + " ".join(f"{g:+13.3f}" for g in erm_gap)
              + f" {min(erm_gap):+10.3f} {statistics.mean(erm_gap):+10.3f}")  # fmt: skip
        aggregates["erm"]["min_mean_minus_worst"] = min(erm_gap)
        for name, by_seed in gains(results).items():
            values = [by_seed[s] for s in seeds]
            print(f"{name + ' gain':17s}" + " ".join(f"{g:+13.3f}" for g in values)
                  + f" {min(values):+10.3f} {statistics.mean(values):+10.3f}")  # fmt: skip
            aggregates[name] |= {"min_gain": min(values), "mean_gain": statistics.mean(values)}
    return aggregates


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def main() -> None:
    defaults = Setting()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES))
    for field in dataclasses.fields(Setting):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(default, tuple):
            parser.add_argument(flag, type=int, nargs=4, default=list(default))
        elif field.name == "ema_decay":
            parser.add_argument(flag, type=_optional_float, default=default, help="or none")
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = parser.parse_args()
    if "erm" not in args.objectives:
        parser.error("--objectives must include erm: the gains are over it")
    setting = Setting(**{f.name: (tuple(v) if isinstance(v := getattr(args, f.name), list)
                                  else v) for f in dataclasses.fields(Setting)})  # fmt: skip
    # The per-run tables and Lightning's notes would bury the rows that this prints.
    for name in ("pytorch_lightning", "pytorch_lightning.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # One thread, as each of the test suite's processes has (tests/conftest.py).
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"setting: {setting}, threads {torch.get_num_threads()}", flush=True)
    measured = measure(args.seeds, args.objectives, setting)
    aggregates = print_table(measured["results"])
    print(json.dumps({"setting": dataclasses.asdict(setting), "results": measured["results"],
                      "aggregates": aggregates, "seconds": measured["seconds"]}))  # fmt: skip


if __name__ == "__main__":
    main()
