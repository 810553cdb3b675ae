"""The per-attribute test table: rows, CSV, terminal text and TensorBoard Markdown."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from lit_celeba.models.attribute_table import (
    attribute_rows,
    format_markdown,
    format_text,
    write_csv,
)

NAN = math.nan


def _rows():
    # subgroup_accuracy[g][value][k]; NaN: no image (the Smiling, Young=0 cell).
    return attribute_rows(["Male", "Smiling"], [0.75, 0.5], ["Young"], [[[0.9, NAN], [0.6, 0.5]]])


def test_rows_hold_accuracy_per_value_and_the_absolute_gap() -> None:
    male, smiling = _rows()
    assert male == {
        "attribute": "Male",
        "accuracy": 0.75,
        "acc|Young=1": 0.6,
        "acc|Young=0": 0.9,
        "gap|Young": abs(0.6 - 0.9),
    }
    assert smiling["acc|Young=1"] == 0.5 and math.isnan(smiling["gap|Young"])


def test_csv_text_and_markdown(tmp_path: Path) -> None:
    rows = _rows()
    write_csv(rows, tmp_path / "t.csv", ["Young"])
    with open(tmp_path / "t.csv") as fh:
        written = list(csv.DictReader(fh))
    assert list(written[0]) == ["attribute", "accuracy", "acc|Young=1", "acc|Young=0", "gap|Young"]
    assert written[0]["gap|Young"] == "0.300000" and written[1]["acc|Young=0"] == "nan"
    text = format_text(rows, ["Young"]).splitlines()
    assert text[0].split() == ["attribute", "accuracy", "acc|Young=1", "acc|Young=0", "gap|Young"]
    assert text[1].split() == ["Male", "0.7500", "0.6000", "0.9000", "0.3000"]
    markdown = format_markdown(rows, ["Young"]).splitlines()
    # "|" inside a name is escaped, or TensorBoard would split the cell.
    assert markdown[0] == r"| attribute | accuracy | acc\|Young=1 | acc\|Young=0 | gap\|Young |"
    assert markdown[1] == "|---|---|---|---|---|" and len(markdown) == 4


def test_without_subgroups_the_table_is_attribute_and_accuracy() -> None:
    rows = attribute_rows(["Male", "Bald"], [0.5, 0.25])
    assert format_text(rows).splitlines() == [
        "attribute  accuracy",
        "Male       0.5000",
        "Bald       0.2500",
    ]
