"""What ``compare`` writes from its runs' results (:mod:`lit_celeba.commands.compare`): one row
per variant (means and spreads over the seeds), as ``comparison.csv`` and the Markdown table
``comparison.md`` it also prints, the validation curves as ``comparison.png``, and one row per
run as ``runs.csv``.
"""

from __future__ import annotations

import csv
import math
import shlex
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_celeba.base.files import atomic_write
from lit_celeba.commands.compare_runs import Run, Variant

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_SIZE_INCHES = (9, 5.5)
FIGURE_DPI = 100


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
    with atomic_write(path, "w", newline="") as stream:
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


def write_results(
    rows: Sequence[dict[str, Any]],
    variants: Sequence[Variant],
    runs: Sequence[Run],
    seeds: int,
    out: Path,
) -> str:
    """Writes ``comparison.csv``, ``runs.csv``, ``comparison.md`` and ``comparison.png`` into
    ``out``; returns the Markdown table."""
    write_csv(rows, out / "comparison.csv")
    _write_runs_csv(runs, out / "runs.csv")
    table = markdown_table(rows, seeds)
    with atomic_write(out / "comparison.md") as fh:
        fh.write(table)
    with atomic_write(out / "comparison.png", "wb") as fh:
        curves_figure(variants, runs).savefig(fh, format="png", dpi=FIGURE_DPI)
    return table


def _write_runs_csv(runs: Sequence[Run], path: Path) -> None:
    columns = [
        "variant", "seed", "status", "test_acc_final", "test_acc_best", "val_acc_last5",
        "epochs_to_90pct", "parameters", "train_seconds", "best_checkpoint", "error",
    ]  # fmt: skip
    with atomic_write(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r.result for r in runs)
