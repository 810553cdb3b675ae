"""Running one comparison: each variant and seed's ``fit``, then ``test`` on its last and its
best-validation checkpoint, each in a process of its own, ``--jobs`` at a time; a run whose
``result.json`` records its results is not run again (see :mod:`lit_celeba.commands.compare`)."""

from __future__ import annotations

import json
import math
import os
import queue
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_celeba.checkpoints.load import load, rebuild
from lit_celeba.commands.events import epoch_series, load_run
from lit_celeba.errors import LitCelebaError, UsageError
from lit_celeba.models.nets import count_parameters

RESULT_FILE = "result.json"
FIT_FILE = "fit.json"
LAST_FIVE = 5
REACH_SHARE = 0.9  # "epochs to reach 90 % of the final validation accuracy"


@dataclass(frozen=True)
class Variant:
    name: str
    args: tuple[str, ...]  # CLI arguments after the base config


@dataclass
class Run:
    variant: Variant
    seed: int
    folder: Path
    index: int = 0  # 1-based position among all runs, for progress
    result: dict[str, Any] = field(default_factory=dict)


def plan_runs(variants: Sequence[Variant], seeds: Sequence[int], out: Path) -> list[Run]:
    runs = [
        Run(variant, seed, out / "runs" / variant.name / f"seed_{seed}")
        for variant in variants
        for seed in seeds
    ]
    for i, run in enumerate(runs, 1):
        run.index = i
    return runs


def cli_command(subcommand: str) -> list[str]:
    return [sys.executable, "-m", "lit_celeba", subcommand]


def run_arguments(base: Sequence[str], run: Run, extra: Sequence[str]) -> list[str]:
    """The settings of one run, shared by its fit and its tests (the logger folder apart)."""
    configs = [arg for path in base for arg in ("--config", path)]
    return [*configs, *run.variant.args, *extra, f"--seed_everything={run.seed}"]


def logger_arguments(folder: Path, version: str) -> list[str]:
    return [
        f"--trainer.logger.init_args.save_dir={folder}",
        "--trainer.logger.init_args.name=",
        f"--trainer.logger.init_args.version={version}",
    ]


def run_process(command: list[str], log: Path, env: dict[str, str]) -> tuple[int, float]:
    """Runs ``command`` with its output in ``log``; its exit status and wall-clock seconds."""
    start = time.perf_counter()
    with log.open("w") as stream:
        done = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
    return done.returncode, time.perf_counter() - start


def failure_reason(log: Path, what: str, status: int) -> str:
    """The run's own ``error:`` line (or its last line) and where the whole log is."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    reason = errors[-1] if errors else (lines[-1] if lines else "no output")
    return f"{what} exited with status {status}: {reason[:300]} (log: {log})"


def best_and_last(fit_dir: Path) -> tuple[Path, Path | None]:
    """The fit's ``last.ckpt`` and its best-validation checkpoint (from the monitored
    ModelCheckpoint's state inside ``last.ckpt``; ``None`` without a monitored checkpoint, and
    ``None`` too when the best is the last epoch, whose weights ``last.ckpt`` holds)."""
    last = fit_dir / "checkpoints" / "last.ckpt"
    checkpoint = load(last)
    states = checkpoint.get("callbacks") or {}
    monitored = [
        s for key, s in states.items()
        if key.startswith("ModelCheckpoint") and s.get("monitor") and s.get("best_model_path")
    ]  # fmt: skip
    monitored.sort(key=lambda s: s.get("monitor") != "val/acc")  # val/acc first
    if not monitored:
        return last, None
    best = Path(monitored[0]["best_model_path"])
    if not best.is_absolute():
        best = fit_dir / "checkpoints" / best.name
    if load(best).get("global_step") == checkpoint.get("global_step"):
        return last, None
    return last, best


def parameter_count(ckpt: Path) -> int:
    """Trainable parameters of the checkpoint's network, rebuilt as every command rebuilds it."""
    return count_parameters(rebuild(load(ckpt), ckpt).net)


# The test scalars a run records besides the accuracy (each a mean over the attributes).
TEST_SUMMARY = ("test/ece", "test/ece_uncalibrated", "test/balanced_acc", "test/auroc")


def test_metrics(test_dir: Path) -> dict[str, float]:
    """``test/acc`` and those of :data:`TEST_SUMMARY` that the test run logged."""
    events = load_run(test_dir)
    logged = events.Tags()["scalars"]
    if "test/acc" not in logged:
        raise UsageError(f"{test_dir} logged no test/acc")
    return {tag: float(events.Scalars(tag)[-1].value)
            for tag in ("test/acc", *TEST_SUMMARY) if tag in logged}  # fmt: skip


def validation_curve(fit_dir: Path) -> list[float]:
    _, values = epoch_series(load_run(fit_dir), "val/acc")
    return [float(v) for v in values]


def epochs_to_reach(curve: Sequence[float], share: float = REACH_SHARE) -> int | None:
    """The first (1-based) epoch whose validation accuracy is at least ``share`` of the last."""
    if not curve:
        return None
    return next(i for i, v in enumerate(curve, 1) if v >= share * curve[-1])


def execute(run: Run, base: Sequence[str], extra: Sequence[str], env: dict[str, str]) -> None:
    """Fit (unless a finished fit is recorded) and test one run; records ``result.json``."""
    args = run_arguments(base, run, extra)
    fit_dir, fit_record = run.folder / "fit", run.folder / FIT_FILE
    fit_time = None
    if fit_record.is_file() and json.loads(fit_record.read_text()).get("args") == args:
        fit_time = json.loads(fit_record.read_text())["seconds"]
        for stale in run.folder.glob("test_*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    else:
        shutil.rmtree(run.folder, ignore_errors=True)  # an unfinished run starts again
        run.folder.mkdir(parents=True)
        log = run.folder / "fit.log"
        status, fit_time = run_process(
            [*cli_command("fit"), *args, *logger_arguments(run.folder, "fit")], log, env
        )
        if status != 0:
            raise RunFailed(failure_reason(log, "fit", status))
        fit_record.write_text(json.dumps({"args": args, "seconds": fit_time}) + "\n")
    last, best = best_and_last(fit_dir)
    tested = {}
    for kind, ckpt in (("final", last), ("best", best)):
        if ckpt is None:
            continue
        log = run.folder / f"test_{kind}.log"
        command = [
            *cli_command("test"), *args, f"--ckpt_path={ckpt}",
            *logger_arguments(run.folder, f"test_{kind}"),
        ]  # fmt: skip
        status, _ = run_process(command, log, env)
        if status != 0:
            raise RunFailed(failure_reason(log, f"test of {ckpt.name}", status))
        tested[kind] = test_metrics(run.folder / f"test_{kind}")
    curve = validation_curve(fit_dir)
    run.result = {
        "variant": run.variant.name,
        "seed": run.seed,
        "args": args,
        "status": "ok",
        "test_acc_final": tested["final"]["test/acc"],
        # The best-validation epoch is the last one: its test is the final one.
        "test_acc_best": tested.get("best", tested["final"])["test/acc"],
        "test_final": tested["final"],
        "best_checkpoint": str(best or last),
        "val_acc": curve,
        "val_acc_last5": statistics.fmean(curve[-LAST_FIVE:]) if curve else math.nan,
        "epochs_to_90pct": epochs_to_reach(curve),
        "parameters": parameter_count(last),
        "train_seconds": fit_time,
    }
    (run.folder / RESULT_FILE).write_text(json.dumps(run.result, indent=2) + "\n")


class RunFailed(Exception):
    """A run's fit or test failed; the message says which and where its log is."""


def recorded_result(run: Run, args: list[str]) -> dict[str, Any] | None:
    """The finished run's result, or ``None``; refuses one recorded with other settings."""
    path = run.folder / RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("args") != args:
        raise UsageError(
            f"{path} records a run with other settings ({shlex.join(result.get('args', []))}); "
            "a comparison resumes only with the same command. Choose another --out, or delete "
            f"{run.folder} to run it again."
        )
    return result


def run_all(
    runs: list[Run],
    base: Sequence[str],
    extra: Sequence[str],
    jobs: int,
    devices: list[str] | None,
) -> None:
    total = len(runs)
    print_lock = threading.Lock()
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)

    def say(message: str) -> None:
        with print_lock:
            print(message, flush=True)

    def one(run: Run) -> None:
        label = f"[{run.index}/{total}] {run.variant.name}, seed {run.seed}"
        recorded = recorded_result(run, run_arguments(base, run, extra))
        if recorded is not None:
            run.result = recorded
            say(f"{label}: finished earlier, not run again")
            return
        slot = slots.get()
        env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]
        where = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if devices else ""
        say(f"{label}: running{where} ({run.folder})")
        start = time.perf_counter()
        try:
            execute(run, base, extra, env)
        except (RunFailed, LitCelebaError, OSError, ValueError, KeyError) as err:
            run.result = {"variant": run.variant.name, "seed": run.seed, "status": "failed",
                          "error": str(err)}  # fmt: skip
            say(f"{label}: FAILED: {err}")
            return
        finally:
            slots.put(slot)
        seconds = time.perf_counter() - start
        say(f"{label}: done in {seconds:.0f} s, test acc {run.result['test_acc_final']:.4f}")

    # Checked up front: a comparison resumed with another command stops before it runs anything.
    for run in runs:
        recorded_result(run, run_arguments(base, run, extra))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, runs))
