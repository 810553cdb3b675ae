"""Start-up of ``python -m lit_celeba fit --help``: what lit_celeba adds to Lightning's own.

Issue 33 asks ``fit --help`` to start at least 30 % faster; its design (docs/architecture.md,
section 10, decision 1) applies that to what lit_celeba adds to a minimal LightningCLI's start-up
(a two-argument model and data module, ``fit --help``): most of the whole command's time is
Lightning importing torchmetrics, torchvision, ``torch._dynamo`` and ``scipy.signal``, which no
change here can move. Each checkout given is run as its own package (``PYTHONPATH``), in rounds
that alternate the checkouts and the minimal CLI, so that a busy moment of the machine falls on
all of them; the medians of each one's child CPU time and wall time are printed, then what each
checkout adds to the minimal CLI and, with two checkouts, how much the second cuts of the first's.

    python benchmarks/startup.py                                # this checkout, 5 rounds
    python benchmarks/startup.py --trees BEFORE_DIR . --rounds 5

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
MINIMAL_CLI = '''
import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI


class Model(pl.LightningModule):
    def __init__(self, width: int = 8) -> None:
        super().__init__()


class Data(pl.LightningDataModule):
    def __init__(self, root: str = "data") -> None:
        super().__init__()


LightningCLI(Model, Data)
'''


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(child CPU seconds, wall seconds) of one run of ``command``, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", nargs="+", type=Path, default=[HERE],
                        help="checkouts of lit_celeba to compare (default: this one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1,
                        help="unmeasured runs first, so that the file cache is warm")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.trees]
    for tree in trees:
        if not (tree / "lit_celeba" / "__main__.py").is_file():
            raise SystemExit(f"{tree} is not a checkout of lit_celeba (no lit_celeba/__main__.py)")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    figures: dict[str, list[tuple[float, float]]] = {"minimal": [], **{str(t): [] for t in trees}}
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        (cwd / "minimal_cli.py").write_text(MINIMAL_CLI)
        runs = [("minimal", [sys.executable, "minimal_cli.py", "fit", "--help"], env)]
        runs += [(str(t), [sys.executable, "-m", "lit_celeba", "fit", "--help"],
                  {**env, "PYTHONPATH": str(t)}) for t in trees]  # fmt: skip
        for _ in range(args.warmup):
            timed(runs[0][1], runs[0][2], cwd)
        for round_number in range(1, args.rounds + 1):
            for name, command, run_env in runs:
                cpu, wall = timed(command, run_env, cwd)
                figures[name].append((cpu, wall))
                print(f"round {round_number} {name}: {cpu:.2f} s CPU, {wall:.2f} s wall",
                      flush=True)  # fmt: skip
    medians = {name: (statistics.median(c for c, _ in runs_of),
                      statistics.median(w for _, w in runs_of))
               for name, runs_of in figures.items()}  # fmt: skip
    minimal_cpu, minimal_wall = medians["minimal"]
    print(f"\nminimal LightningCLI fit --help: {minimal_cpu:.2f} s CPU, {minimal_wall:.2f} s wall "
          f"(medians of {args.rounds})")  # fmt: skip
    added = {}
    for tree in trees:
        cpu, wall = medians[str(tree)]
        added[str(tree)] = cpu - minimal_cpu
        print(f"{tree}: {cpu:.2f} s CPU, {wall:.2f} s wall; lit_celeba adds "
              f"{cpu - minimal_cpu:.2f} s CPU, {wall - minimal_wall:.2f} s wall")
    result = {"rounds": args.rounds, "minimal_cpu_s": minimal_cpu, "minimal_wall_s": minimal_wall,
              "trees": {str(t): {"cpu_s": medians[str(t)][0], "wall_s": medians[str(t)][1],
                                 "added_cpu_s": added[str(t)]} for t in trees}}  # fmt: skip
    if len(trees) == 2:
        first, second = (added[str(t)] for t in trees)
        cut = 1 - second / first if first > 0 else float("nan")
        whole = 1 - medians[str(trees[1])][0] / medians[str(trees[0])][0]
        print(f"\nwhat lit_celeba adds, second against first: {second:.2f} / {first:.2f} s CPU, "
              f"cut {cut:.0%}; the whole command's CPU time cut {whole:.0%}")  # fmt: skip
        result |= {"added_cut": cut, "whole_cut": whole}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
