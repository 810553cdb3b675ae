"""Running one comparison: each variant and seed's ``fit``, then ``test`` on its last and its
best-validation checkpoint, each in a process of its own, ``--jobs`` at a time; a run whose
``result.json`` records its results with the same effective configuration is not run again (see
:mod:`lit_celeba.commands.compare`).

The processes are compare's own (:class:`Children`): each runs in a session of its own (a Ctrl-C
in the terminal reaches compare, which stops them, rather than each separately), dies with compare
however compare dies (``PR_SET_PDEATHSIG``, :func:`lit_celeba.base.processes.die_with_starter`), and
shares the lock on ``--out`` (its descriptor is passed on), so that a second compare there is
refused while any process of the first still runs.
"""

from __future__ import annotations

import math
import queue
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_celeba.base.errors import LitCelebaError, UsageError
from lit_celeba.base.processes import FolderLock, describe_holders
from lit_celeba.commands.children import Children, job_environment
from lit_celeba.commands.compare_measures import (
    best_and_last,
    epochs_to_reach,
    last_checkpoint,
    parameter_count,
    test_metrics,
    validation_curve,
)
from lit_celeba.commands.compare_records import (
    read_json,
    saved_configuration,
    settings_changes,
    write_json,
)

RESULT_FILE = "result.json"
FIT_FILE = "fit.json"
LAST_FIVE = 5
# Each fit prints a line per epoch, which compare shows under the run (callbacks/progress.py).
EPOCH_LINES = "--trainer.callbacks+=lit_celeba.callbacks.progress.EpochLines"
STOP_GRACE_S = 5.0  # how long stopped runs get to end on SIGTERM before SIGKILL


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
    # The configuration the run's fit runs with (``None``: its variant's arguments do not parse).
    config: dict[str, Any] | None = None


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


def shared_arguments(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """The base configs and the options given for every run."""
    return [*(arg for path in base for arg in ("--config", path)), *extra]


def run_arguments(base: Sequence[str], run: Run, extra: Sequence[str]) -> list[str]:
    """The settings of one run, shared by its fit and its tests (the logger folder apart): the
    variant's own come after the shared options, so that they win where both set a key."""
    return [*shared_arguments(base, extra), *run.variant.args, f"--seed_everything={run.seed}"]


def logger_arguments(folder: Path, version: str) -> list[str]:
    return [
        f"--trainer.logger.init_args.save_dir={folder}",
        "--trainer.logger.init_args.name=",
        f"--trainer.logger.init_args.version={version}",
    ]


def execute(
    run: Run, args: list[str], children: Children, env: dict[str, str], say: Callable[[str], None]
) -> None:
    """Fit (unless a finished fit with this configuration is recorded) and test one run; records
    ``result.json``."""
    fit_dir, fit_record = run.folder / "fit", run.folder / FIT_FILE
    refuse_if_in_use(run.folder)
    recorded = read_json(fit_record, say)
    saved = saved_configuration(recorded, run.folder) if recorded else None
    if saved is not None and not settings_changes(saved, run.config) and last_checkpoint(fit_dir):
        fit_time = recorded["seconds"]
        for stale in run.folder.glob("test_*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    else:
        shutil.rmtree(run.folder, ignore_errors=True)  # an unfinished run starts again
        run.folder.mkdir(parents=True)
        log = run.folder / "fit.log"
        command = [*cli_command("fit"), *args, *logger_arguments(run.folder, "fit"), EPOCH_LINES]
        status, fit_time, _ = children.run(command, log, env, on_line=say)
        if status != 0:
            raise RunFailed(failure_reason(log, "fit", status))
        write_json(fit_record, {"args": args, "config": run.config, "seconds": fit_time})
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
        status, _, _ = children.run(command, log, env)
        if status != 0:
            raise RunFailed(failure_reason(log, f"test of {ckpt.name}", status))
        tested[kind] = test_metrics(run.folder / f"test_{kind}")
    curve = validation_curve(fit_dir)
    run.result = {
        "variant": run.variant.name,
        "seed": run.seed,
        "args": args,
        "config": run.config,
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
    write_json(run.folder / RESULT_FILE, run.result)


def refuse_if_in_use(folder: Path) -> None:
    """A run's fit or test folder that another process writes (a ``fit --ckpt_path last`` that a
    user started there) is never cleared: the run fails, saying by whom."""
    for sub in sorted(folder.glob("*/")):
        lock = FolderLock(sub)
        if lock.acquire():
            lock.release()
            continue
        raise RunFailed(
            f"{sub} is being written by {describe_holders(lock)}, which this compare did not "
            "start; it was left as it is. Let that process end, then run compare again."
        )


def failure_reason(log: Path, what: str, status: int) -> str:
    """The run's own ``error:`` line (or its last line) and where the whole log is."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    reason = errors[-1] if errors else (lines[-1] if lines else "no output")
    return f"{what} exited with status {status}: {reason[:300]} (log: {log})"


class RunFailed(Exception):
    """A run's fit or test failed; the message says which and where its log is."""


def recorded_result(run: Run, say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """The finished run's result, or ``None``; refuses one whose configuration differs from the
    run's (an edited variant file, other options): it compares what the settings are, not the
    names of the files that hold them."""
    path = run.folder / RESULT_FILE
    result = read_json(path, say)
    if result is None or run.config is None:
        return None
    saved = saved_configuration(result, run.folder)
    changes = (
        settings_changes(saved, run.config)
        if saved is not None
        else ["(no configuration recorded, and no fit/config.yaml)"]
    )
    if changes:
        more = f"; and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise UsageError(
            f"{path} records a run with other settings ({'; '.join(changes[:3])}{more}); a "
            "comparison resumes only with the same settings. Choose another --out, or delete "
            f"{run.folder} to run it again."
        )
    return result


def run_all(
    runs: list[Run],
    base: Sequence[str],
    extra: Sequence[str],
    jobs: int,
    devices: list[str] | None,
    children: Children,
) -> None:
    """Each run not finished earlier, ``jobs`` at a time; a run that fails is a result with its
    error. ``run.config`` is set (or ``None`` with ``run.result`` saying why) beforehand."""
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
        if children.stopping:
            return
        if run.result:  # failed before it started (its settings do not parse)
            say(f"{label}: FAILED: {run.result['error']}")
            return
        recorded = recorded_result(run, say)
        if recorded is not None:
            run.result = recorded
            say(f"{label}: finished earlier, not run again")
            return
        slot = slots.get()
        env = job_environment(jobs, slot, devices)
        where = f" on GPU {env['CUDA_VISIBLE_DEVICES']}" if devices else ""
        say(f"{label}: running{where} ({run.folder})")
        start = time.perf_counter()
        try:
            execute(run, run_arguments(base, run, extra), children, env,
                    lambda line: say(f"{label}: {line}"))  # fmt: skip
        except (RunFailed, LitCelebaError, OSError, ValueError, KeyError) as err:
            run.result = {"variant": run.variant.name, "seed": run.seed, "status": "failed",
                          "error": str(err)}  # fmt: skip
            if not children.stopping:
                say(f"{label}: FAILED: {err}")
            return
        finally:
            slots.put(slot)
        seconds = time.perf_counter() - start
        say(f"{label}: done in {seconds:.0f} s, test acc {run.result['test_acc_final']:.4f}")

    # Checked up front: a comparison resumed with other settings stops before it runs anything.
    for run in runs:
        recorded_result(run, lambda message: None)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, runs))
