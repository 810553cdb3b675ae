"""The tables at the end of ``test``, printed, as TensorBoard text and as CSV in the run's folder:

- per attribute (``test_attributes.csv``, with more than one attribute or any subgroup): accuracy,
  balanced accuracy, AUROC, average precision, F1, the expected calibration error, the share of
  positives, the majority-class baseline's accuracy and the decision threshold
  (:mod:`lit_celeba.models.evaluation`), then per subgroup attribute the accuracy for value 1, for
  value 0 and their gap;
- per group (``test_groups.csv``, one target and subgroups): the group's images and accuracy.

:class:`TestTables` reads the numbers from the module's ``test_results``, the very ones it logged.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.base.files import atomic_write
from lit_celeba.models.evaluation import ATTRIBUTE_METRICS

Row = dict[str, "str | float"]
ATTRIBUTE_COLUMNS = ("attribute", *ATTRIBUTE_METRICS, "threshold")
GROUP_COLUMNS = ("group", "images", "accuracy")


def _column_names(subgroups: Sequence[str]) -> list[str]:
    names = list(ATTRIBUTE_COLUMNS)
    for group in subgroups:
        names += [f"acc|{group}=1", f"acc|{group}=0", f"gap|{group}"]
    return names


def attribute_rows(
    target_attrs: Sequence[str],
    metrics: Mapping[str, Sequence[float]],
    subgroups: Sequence[str] = (),
    subgroup_accuracy: Sequence[Sequence[Sequence[float]]] | None = None,
) -> list[Row]:
    """Rows of the table. ``metrics[name][k]``: attribute k's value of each of
    :data:`ATTRIBUTE_METRICS` and ``threshold``; ``subgroup_accuracy[g][v][k]``: accuracy of
    target k for images whose subgroup attribute g has value v (NaN when there are none); the gap
    is ``|acc1 - acc0|``."""
    if subgroups and subgroup_accuracy is None:
        raise ValueError("subgroups given without their subgroup_accuracy")
    rows: list[Row] = []
    for k, name in enumerate(target_attrs):
        row: Row = {"attribute": name}
        row |= {column: float(metrics[column][k]) for column in ATTRIBUTE_COLUMNS[1:]}
        for g, group in enumerate(subgroups):
            one = float(subgroup_accuracy[g][1][k])  # type: ignore[index]
            zero = float(subgroup_accuracy[g][0][k])  # type: ignore[index]
            row[f"acc|{group}=1"], row[f"acc|{group}=0"] = one, zero
            row[f"gap|{group}"] = abs(one - zero)  # NaN when either value has no images
        rows.append(row)
    return rows


def group_rows(
    names: Sequence[str], accuracy: Sequence[float], counts: Sequence[int]
) -> list[Row]:
    """Rows of the group table (``GROUP_COLUMNS``); NaN accuracy for a group with no images."""
    return [
        {"group": name, "images": str(int(count)), "accuracy": float(acc)}
        for name, acc, count in zip(names, accuracy, counts, strict=True)
    ]


def _cells(rows: Sequence[Row], columns: Sequence[str]) -> list[list[str]]:
    return [
        [v if isinstance(v, str) else f"{v:.4f}" for v in (row[c] for c in columns)] for row in rows
    ]


def format_text(
    rows: Sequence[Row], subgroups: Sequence[str] = (), columns: Sequence[str] | None = None
) -> str:
    """An aligned plain-text table for the terminal (``columns``: another table's, e.g. the
    group table's)."""
    columns = columns or _column_names(subgroups)
    table = [columns, *_cells(rows, columns)]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in table]
    return "\n".join(line.rstrip() for line in lines)


def format_markdown(
    rows: Sequence[Row], subgroups: Sequence[str] = (), columns: Sequence[str] | None = None
) -> str:
    """A Markdown table, which TensorBoard's text tab renders."""
    columns = columns or _column_names(subgroups)

    def line(cells: Sequence[str]) -> str:
        # A literal "|" (as in "acc|Young=1") would end the cell.
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [line(columns), "|" + "---|" * len(columns)]
    lines += [line(cells) for cells in _cells(rows, columns)]
    return "\n".join(lines)


def write_csv(
    rows: Sequence[Row],
    path: str | os.PathLike,
    subgroups: Sequence[str] = (),
    columns: Sequence[str] | None = None,
) -> None:
    """The table as CSV, six decimals, ``nan`` for an undefined value (an empty subgroup value,
    the AUROC of an attribute without positives)."""
    columns = columns or _column_names(subgroups)
    with atomic_write(Path(path), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                [
                    v if isinstance(v, str) else ("nan" if math.isnan(v) else f"{v:.6f}")
                    for v in (row[c] for c in columns)
                ]
            )


class TestTables(Callback):
    """Writes the test tables (see the module docstring) when a ``test`` ends, on rank 0, into
    the run's log folder; the CLI adds it to every run."""

    __test__ = False  # a callback, not a pytest class

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # log_dir is a broadcast under DDP: every rank must ask for it, not only the writer.
        folder = Path(trainer.log_dir or ".")
        results: dict[str, Any] = getattr(pl_module, "test_results", None) or {}
        if not results or not trainer.is_global_zero:
            return
        attrs, subgroups = list(pl_module.target_attrs), list(pl_module.subgroups)
        if len(attrs) > 1 or subgroups:
            subgroups = subgroups if "subgroups" in results else []
            metrics = {**results["attributes"], "threshold": results["threshold"]}
            rows = attribute_rows(attrs, metrics, subgroups, results.get("subgroups"))
            note = ""
            if subgroups:
                counts = results["subgroup_sizes"]
                note = "Test images per subgroup: " + ", ".join(
                    f"{g}=1: {int(counts[i, 1])}, {g}=0: {int(counts[i, 0])}"
                    for i, g in enumerate(subgroups)
                )
            title = f"attribute (mean {sum(metrics['accuracy']) / len(attrs):.4f})"
            text = format_text(rows, subgroups)
            markdown = format_markdown(rows, subgroups)
            path = folder / "test_attributes.csv"
            _publish(trainer, "test/attributes", title, text, markdown, note, path)
            write_csv(rows, path, subgroups)
        if "groups" in results:
            accuracy, counts = results["groups"], results["group_sizes"]
            rows = group_rows(pl_module.group_names, accuracy.tolist(), counts.tolist())
            present = accuracy[counts > 0]
            summary = (f"worst {present.min().item():.4f}, mean {present.mean().item():.4f}"
                       if len(present) else "no images")  # fmt: skip
            text = format_text(rows, columns=GROUP_COLUMNS)
            markdown = format_markdown(rows, columns=GROUP_COLUMNS)
            path = folder / "test_groups.csv"
            _publish(trainer, "test/groups", f"group ({summary})", text, markdown, "", path)
            write_csv(rows, path, columns=GROUP_COLUMNS)


def _publish(
    trainer: pl.Trainer, tag: str, title: str, text: str, markdown: str, note: str, path: Path
) -> None:
    """Prints a table and writes it as TensorBoard text; ``path`` is where its CSV goes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = f"\n{note}" if note else ""
    rank_zero_info(f"Test accuracy per {title}:\n{text}{extra}\nWrote {path}")
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            body = markdown + (f"\n\n{note}" if note else "")
            logger.experiment.add_text(tag, body, global_step=trainer.global_step)
