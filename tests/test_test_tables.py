"""The test tables: rows, CSV, terminal text and TensorBoard Markdown."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from lit_celeba.callbacks.test_tables import (
    ATTRIBUTE_COLUMNS,
    attribute_rows,
    format_markdown,
    format_text,
    write_csv,
)
from lit_celeba.models.evaluation import ATTRIBUTE_METRICS

NAN = math.nan


def _metrics(accuracy: list[float]) -> dict[str, list[float]]:
    """Every per-attribute column: the given accuracies, 0.25 for the rest."""
    columns = {name: [0.25] * len(accuracy) for name in (*ATTRIBUTE_METRICS, "threshold")}
    return columns | {"accuracy": accuracy}


def _rows():
    # subgroup_accuracy[g][value][k]; NaN: no image (the Smiling, Young=0 cell).
    return attribute_rows(
        ["Male", "Smiling"], _metrics([0.75, 0.5]), ["Young"], [[[0.9, NAN], [0.6, 0.5]]]
    )


def test_rows_hold_every_metric_the_accuracy_per_value_and_the_absolute_gap() -> None:
    male, smiling = _rows()
    assert list(male) == [*ATTRIBUTE_COLUMNS, "acc|Young=1", "acc|Young=0", "gap|Young"]
    assert male["attribute"] == "Male" and male["accuracy"] == 0.75
    assert male["balanced_accuracy"] == 0.25 and male["threshold"] == 0.25
    assert (male["acc|Young=1"], male["acc|Young=0"]) == (0.6, 0.9)
    assert male["gap|Young"] == abs(0.6 - 0.9)
    assert smiling["acc|Young=1"] == 0.5 and math.isnan(smiling["gap|Young"])


def test_csv_text_and_markdown(tmp_path: Path) -> None:
    rows = _rows()
    write_csv(rows, tmp_path / "t.csv", ["Young"])
    with open(tmp_path / "t.csv") as fh:
        written = list(csv.DictReader(fh))
    assert list(written[0]) == [*ATTRIBUTE_COLUMNS, "acc|Young=1", "acc|Young=0", "gap|Young"]
    assert written[0]["gap|Young"] == "0.300000" and written[1]["acc|Young=0"] == "nan"
    text = format_text(rows, ["Young"]).splitlines()
    assert text[0].split()[:3] == ["attribute", "accuracy", "balanced_accuracy"]
    assert text[1].split()[:2] == ["Male", "0.7500"] and text[1].split()[-3:] == [
        "0.6000", "0.9000", "0.3000"
    ]  # fmt: skip
    markdown = format_markdown(rows, ["Young"]).splitlines()
    # "|" inside a name is escaped, or TensorBoard would split the cell.
    assert markdown[0].endswith(r"| acc\|Young=1 | acc\|Young=0 | gap\|Young |")
    assert markdown[1] == "|" + "---|" * (len(ATTRIBUTE_COLUMNS) + 3) and len(markdown) == 4


def test_without_subgroups_the_table_is_the_attribute_metrics() -> None:
    rows = attribute_rows(["Male", "Bald"], _metrics([0.5, 0.25]))
    lines = format_text(rows).splitlines()
    assert lines[0].split() == list(ATTRIBUTE_COLUMNS)
    assert lines[1].split()[:2] == ["Male", "0.5000"] and lines[2].split()[:2] == ["Bald", "0.2500"]
