"""Compare variants of a config over seeds: ``python -m lit_celeba compare``.

    python -m lit_celeba compare --config configs/base.yaml \\
        --variant recipe= --variant dropout0=configs/variants/dropout0.yaml \\
        --variant nodrop_bn="--model.dropout 0 --model.batch_norm true" \\
        --seeds 2 --out comparisons/dropout [--jobs 2] [--devices 0,1] [--data.root PATH ...]

Each variant is ``NAME=`` followed by YAML deltas and/or ``--key value`` overrides (empty: the base
config as it is). Options this command does not know go to every run; a variant's own settings
win over them where both set a key (compare says so), and the table lists the settings in which
the variants differ. For every variant and seed
it runs ``python -m lit_celeba fit`` and then ``test`` on the fit's ``last.ckpt`` ("final") and on
its best-validation checkpoint ("best"; when that is ``last.ckpt``'s epoch, the final test is
reused), each in its own process, so a failing run cannot take the others down. Runs go one after
another, or ``--jobs N`` at a time, each job on its own GPU with ``--devices``.

Everything goes into ``--out``: ``runs/NAME/seed_S/`` (the fit and test run folders, their logs and
``result.json``), ``runs.csv`` (one row per run), ``comparison.csv`` and ``comparison.md`` (one row
per variant) and ``comparison.png`` (validation curves). A run is finished once its
``result.json`` records its test results; the same command again skips finished runs and redoes
the others from the start. What decides whether a run is the same is its effective configuration
(what the config files and options say, read as ``fit`` reads them), not the names of the files.
The numbers are read from the runs' own TensorBoard event files. One compare at a time writes
into an ``--out``, and its runs stop when it stops, however it stops. The exit status is 1 when
every run failed. Running them is :mod:`lit_celeba.commands.compare_runs`; the table and figure
are here.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_celeba.cli_messages import check_seed
from lit_celeba.commands import PROG
from lit_celeba.commands.children import (
    Children,
    Stopped,
    cpu_cores,
    stopping_children_on_signals,
    threads_per_job,
)
from lit_celeba.commands.compare_configs import configure, prepare_out, refuse_own_settings
from lit_celeba.commands.compare_runs import Run, Variant, plan_runs, run_all
from lit_celeba.errors import UsageError
from lit_celeba.processes import FolderLock, describe_holders

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_SIZE_INCHES = (9, 5.5)
FIGURE_DPI = 100
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
def parse_variant(spec: str) -> Variant:
    """``NAME=deltas.yaml --key value ...`` as a :class:`Variant`; a token naming a YAML file
    becomes ``--config FILE``."""
    name, sep, value = spec.partition("=")
    if not sep or not NAME_PATTERN.match(name):
        raise UsageError(
            f"--variant {spec!r}: expected NAME=VALUE with a NAME of letters, digits, '_', '-', "
            "'.' or '+' and VALUE a YAML delta and/or --key value overrides, e.g. "
            "dropout0=configs/variants/dropout0.yaml or nodrop=\"--model.dropout 0\""
        )
    try:
        tokens = shlex.split(value)
    except ValueError as err:
        raise UsageError(f"--variant {name}: cannot split {value!r}: {err}") from None
    args: list[str] = []
    for i, token in enumerate(tokens):
        after_flag = i > 0 and tokens[i - 1].startswith("--") and "=" not in tokens[i - 1]
        if token.endswith((".yaml", ".yml")) and not token.startswith("-"):
            if not Path(token).expanduser().is_file():
                raise UsageError(f"--variant {name}: the YAML file {token} does not exist")
            if not after_flag:
                args.append("--config")
        args.append(token)
    return Variant(name, tuple(args))


def parse_seeds(text: str) -> list[int]:
    """``N`` for the seeds 1..N (seed 1 is the configs' own), or a list such as ``1,5,9``."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(1, int(text) + 1))
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(
            f"--seeds {text!r}: give a count (2 runs seeds 1 and 2) or distinct seeds (1,5,9)"
        )
    for seed in seeds:
        check_seed(seed, f"--seeds {text}: the seed")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} compare",
        description="Train and test several variants of a config over several seeds and "
        "compare them in one table and one figure. Unknown options go to every run.",
        allow_abbrev=False,  # --seed_everything and the like belong to the runs
    )
    parser.add_argument(
        "--config", action="append", required=True, help="the base config (repeatable)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar="NAME=DELTA",
        help='a named variant: YAML files and/or overrides, e.g. nodrop="--model.dropout 0"; '
        "NAME= alone is the base config",
    )
    parser.add_argument("--seeds", default="1", help="a count N (seeds 1..N) or a list 1,5,9")
    parser.add_argument("--out", type=Path, required=True, help="the comparison's folder")
    parser.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1)")
    parser.add_argument(
        "--devices",
        default=None,
        help="GPU ids to spread the jobs over, e.g. 0,1 (each job sees one GPU)",
    )
    return parser


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _spread(values: Sequence[float]) -> float:
    """The sample standard deviation over the seeds; NaN for fewer than two."""
    return statistics.stdev(values) if len(values) > 1 else math.nan


def summarise(
    variants: Sequence[Variant], runs: Sequence[Run], differing: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for variant in variants:
        mine = [r.result for r in runs if r.variant == variant]
        ok = [r for r in mine if r.get("status") == "ok"]
        errors = [f"seed {r['seed']}: {r['error']}" for r in mine if r.get("status") != "ok"]
        final = [r["test_acc_final"] for r in ok]
        best = [r["test_acc_best"] for r in ok]
        reach = [r["epochs_to_90pct"] for r in ok if r["epochs_to_90pct"] is not None]
        summary = {
            f"{name}_final_mean": _mean([r["test_final"][f"test/{name}"] for r in ok
                                         if f"test/{name}" in r.get("test_final", {})])
            for name in ("ece", "ece_uncalibrated", "balanced_acc", "auroc")
        }  # fmt: skip
        rows.append({
            "variant": variant.name,
            "status": "ok" if not errors else ("failed" if not ok else "partly failed"),
            "runs_ok": len(ok),
            "runs": len(mine),
            "test_acc_final_mean": _mean(final),
            "test_acc_final_std": _spread(final),
            "test_acc_best_mean": _mean(best),
            "test_acc_best_std": _spread(best),
            **summary,
            "val_acc_last5_mean": _mean([r["val_acc_last5"] for r in ok]),
            "epochs_to_90pct_mean": _mean(reach),
            "parameters": ok[0]["parameters"] if ok else None,
            "train_seconds_mean": _mean([r["train_seconds"] for r in ok]),
            "settings": shlex.join(variant.args),
            "differing_settings": (differing or {}).get(variant.name, ""),
            "error": " | ".join(errors),
        })  # fmt: skip
    return rows


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _percent(mean: float, spread: float) -> str:
    if math.isnan(mean):
        return "—"
    text = f"{100 * mean:.2f}"
    return text if math.isnan(spread) else f"{text} ± {100 * spread:.2f}"


def _pair(first: float, second: float, form: str) -> str:
    return "—" if math.isnan(first) or math.isnan(second) else form.format(first, second)


def markdown_table(rows: Sequence[dict[str, Any]], seeds: int) -> str:
    header = (
        "| variant | test acc. final (%) | test acc. best (%) | test ECE final (before "
        "calibration) | balanced acc. / AUROC final | val. acc. last 5 (%) | epochs to 90 % | "
        "parameters | training time (s) | runs ok | error | settings that differ |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for row in rows:
        reach, seconds, count = (
            row["epochs_to_90pct_mean"], row["train_seconds_mean"], row["parameters"]
        )
        cells = [
            row["variant"],
            _percent(row["test_acc_final_mean"], row["test_acc_final_std"]),
            _percent(row["test_acc_best_mean"], row["test_acc_best_std"]),
            _pair(row["ece_final_mean"], row["ece_uncalibrated_final_mean"], "{:.3f} ({:.3f})"),
            _pair(row["balanced_acc_final_mean"], row["auroc_final_mean"], "{:.3f} / {:.3f}"),
            _percent(row["val_acc_last5_mean"], math.nan),
            "—" if math.isnan(reach) else f"{reach:.1f}",
            "—" if count is None else f"{count:,}",
            "—" if math.isnan(seconds) else f"{seconds:.0f}",
            f"{row['runs_ok']}/{row['runs']}",
            row["error"].replace("|", "/"),
            row.get("differing_settings", "").replace("|", "/") or "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nMean ± sample standard deviation over {seeds} seed(s). \"final\": test accuracy of "
        "last.ckpt; \"best\": of the best-validation checkpoint. ECE, balanced accuracy and "
        "AUROC: of last.ckpt, means over the seeds (and over the attributes). Validation: the mean "
        "of the last five epochs. Epochs to 90 %: the first epoch at 90 % of the run's final "
        "validation accuracy. Training time: the fit process's wall clock, start-up included.\n"
    )
    return header + "\n".join(lines) + "\n" + note


def curves_figure(variants: Sequence[Variant], runs: Sequence[Run]) -> Figure:
    """Validation accuracy per epoch: one colour per variant, each seed thin, their mean thick."""
    from matplotlib.figure import Figure  # no pyplot: no display needed
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=FIGURE_SIZE_INCHES, dpi=FIGURE_DPI)
    ax = figure.add_subplot(1, 1, 1)
    for i, variant in enumerate(variants):
        colour = f"C{i % 10}"
        curves = [r.result["val_acc"] for r in runs
                  if r.variant == variant and r.result.get("status") == "ok"]  # fmt: skip
        for curve in curves:
            ax.plot(range(1, len(curve) + 1), curve, color=colour, linewidth=0.8, alpha=0.45)
        if curves:  # the mean over the seeds that reached each epoch
            length = max(map(len, curves))
            mean = [_mean([c[e] for c in curves if len(c) > e]) for e in range(length)]
            ax.plot(range(1, length + 1), mean, color=colour, linewidth=2.5, label=variant.name)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Validation accuracy")
    ax.set_title("Validation accuracy: each seed thin, the mean over seeds thick")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    figure.tight_layout()
    return figure


def compare(argv: Sequence[str]) -> list[dict[str, Any]]:
    """Runs the comparison that ``argv`` describes; returns its rows (as in comparison.csv)."""
    args, extra = build_parser().parse_known_args(argv)
    for config in args.config:
        if not Path(config).expanduser().is_file():
            raise UsageError(f"--config {config} does not exist")
    variants = [parse_variant(spec) for spec in args.variant]
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"--variant names must differ; given twice: {', '.join(duplicates)}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    seeds = parse_seeds(args.seeds)
    refuse_own_settings(extra, variants)
    out = prepare_out(args.out)
    lock = FolderLock(out)
    if not lock.acquire():
        raise UsageError(
            f"--out {out} is in use by {describe_holders(lock)}: another compare, or a run that "
            "one started, still writes there. Wait for it to end (or stop it), or choose "
            "another --out."
        )
    try:
        # Absolute: the runs' checkpoint paths are recorded and must not depend on the folder.
        base = [str(Path(c).expanduser().resolve()) for c in args.config]
        runs = plan_runs(variants, seeds, out)
        print(f"{len(variants)} variant(s) x {len(seeds)} seed(s) = {len(runs)} runs into {out}")
        if not devices and (threads := threads_per_job(args.jobs)) is not None:
            print(f"--jobs {args.jobs} on {cpu_cores()} CPU core(s): each run uses {threads} "
                  "thread(s) (OMP_NUM_THREADS; set it yourself to choose another "
                  "number).")  # fmt: skip
        children = Children(keep_fds=[lock.fd])  # the runs hold --out's lock while they run
        with stopping_children_on_signals(children):
            differing = configure(variants, runs, base, extra, children)
            run_all(runs, base, extra, args.jobs, devices, children)
        rows = summarise(variants, runs, differing)
        write_csv(rows, out / "comparison.csv")
        _write_runs_csv(runs, out / "runs.csv")
        table = markdown_table(rows, len(seeds))
        (out / "comparison.md").write_text(table)
        curves_figure(variants, runs).savefig(out / "comparison.png", dpi=FIGURE_DPI)
    finally:
        lock.release()
    print()
    print(table)
    print(f"Wrote {out / 'comparison.csv'}, {out / 'comparison.md'}, {out / 'comparison.png'}")
    return rows


def _write_runs_csv(runs: Sequence[Run], path: Path) -> None:
    columns = [
        "variant", "seed", "status", "test_acc_final", "test_acc_best", "val_acc_last5",
        "epochs_to_90pct", "parameters", "train_seconds", "best_checkpoint", "error",
    ]  # fmt: skip
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r.result for r in runs)


def main(argv: Sequence[str] | None = None) -> int:
    """``compare ...``; raises :class:`UsageError` for arguments it cannot use. Exit status 1
    when every run failed; 128 + the signal when stopped by one."""
    try:
        rows = compare(sys.argv[1:] if argv is None else list(argv))
    except Stopped as stop:
        print(f"compare stopped by {stop}: its runs were stopped too. The same command goes on "
              "(finished runs are kept).", file=sys.stderr)  # fmt: skip
        return 128 + stop.signum
    if not any(row["runs_ok"] for row in rows):
        print(f"error: every run failed ({sum(row['runs'] for row in rows)}); their errors are "
              "in the table above.", file=sys.stderr)  # fmt: skip
        return 1
    return 0
