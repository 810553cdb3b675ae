"""The per-attribute table at the end of ``test``: one row per target attribute with its accuracy
and, per subgroup attribute, the accuracy for value 1, for value 0 and their gap; and the group
table, one row per group (target value x subgroup values) with its images and accuracy."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence

Row = dict[str, "str | float"]
GROUP_COLUMNS = ("group", "images", "accuracy")


def _column_names(subgroups: Sequence[str]) -> list[str]:
    names = ["attribute", "accuracy"]
    for group in subgroups:
        names += [f"acc|{group}=1", f"acc|{group}=0", f"gap|{group}"]
    return names


def attribute_rows(
    target_attrs: Sequence[str],
    accuracy: Sequence[float],
    subgroups: Sequence[str] = (),
    subgroup_accuracy: Sequence[Sequence[Sequence[float]]] | None = None,
) -> list[Row]:
    """Rows of the table. ``subgroup_accuracy[g][v][k]``: accuracy of target k for images whose
    subgroup attribute g has value v (NaN when there are none); the gap is ``|acc1 - acc0|``."""
    if subgroups and subgroup_accuracy is None:
        raise ValueError("subgroups given without their subgroup_accuracy")
    rows: list[Row] = []
    for k, name in enumerate(target_attrs):
        row: Row = {"attribute": name, "accuracy": float(accuracy[k])}
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
    """The table as CSV, six decimals, ``nan`` for an empty subgroup value or group."""
    columns = columns or _column_names(subgroups)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                [
                    v if isinstance(v, str) else ("nan" if math.isnan(v) else f"{v:.6f}")
                    for v in (row[c] for c in columns)
                ]
            )
