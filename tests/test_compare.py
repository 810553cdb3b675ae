"""``python -m lit_celeba compare``: two variants x two seeds on tiny generated data, checked
against the runs' own event files; a failing variant; resuming without re-running."""

from __future__ import annotations

import csv
import math
import statistics
import struct
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing import event_accumulator

from tests.conftest import CONFIGS, TINY_SIZES, run_cli

GOOD = ["--variant", "recipe=", "--variant", f"dropout0={CONFIGS / 'variants' / 'dropout0.yaml'}"]
BROKEN = ["--variant", "broken=--model.dropout 7"]
# The recipe's metrics and base.yaml's LearningRateMonitor.
# The recipe's names, and the means that validation adds for every number of attributes.
RECIPE_METRICS = {"epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr-Adam",
                  "val/balanced_acc", "val/auroc", "val/ece"}  # fmt: skip


def _flags(root: Path, cache: Path) -> list[str]:
    return [
        f"--data.root={root}", "--data.synthetic=false",
        f"--data.train_size={TINY_SIZES['train']}", f"--data.val_size={TINY_SIZES['valid']}",
        f"--data.test_size={TINY_SIZES['test']}", "--data.num_workers=0",
        f"--data.cache_dir={cache}", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=2",
    ]  # fmt: skip


def _scalars(run_dir: Path, tag: str) -> list[float]:
    events = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def _tags(run_dir: Path) -> set[str]:
    events = event_accumulator.EventAccumulator(str(run_dir))
    events.Reload()
    return set(events.Tags()["scalars"])


@pytest.fixture(scope="module")
def comparison(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("compare")
    rest = [
        "--seeds", "2", "--out", str(work / "out"), "--jobs", "2",
        *_flags(tiny_root, work / "cache"),
    ]  # fmt: skip
    base = ["compare", "--config", str(CONFIGS / "base.yaml")]
    done = run_cli(*base, *GOOD, *BROKEN, *rest, cwd=work, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return {
        "work": work,
        "out": work / "out",
        "command": [*base, *GOOD, *BROKEN, *rest],
        "without_broken": [*base, *GOOD, *rest],
        "stdout": done.stdout,
    }


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "comparison.csv").open() as stream:
        return {row["variant"]: row for row in csv.DictReader(stream)}


def test_table_matches_the_runs_event_files(comparison: dict[str, Any]) -> None:
    out, rows = comparison["out"], _rows(comparison["out"])
    for name in ("recipe", "dropout0"):
        row = rows[name]
        assert (row["status"], row["runs_ok"], row["runs"]) == ("ok", "2", "2")
        finals, bests, last5, reach, eces = [], [], [], [], []
        for seed in (1, 2):
            folder = out / "runs" / name / f"seed_{seed}"
            curve = _scalars(folder / "fit", "val/acc")
            assert len(curve) == 2  # one value per epoch
            assert _tags(folder / "fit") == RECIPE_METRICS  # the recipe's metric names
            finals.append(_scalars(folder / "test_final", "test/acc")[-1])
            eces.append(_scalars(folder / "test_final", "test/ece")[-1])
            best_dir = folder / "test_best"  # absent where the best epoch is the last one
            bests.append(_scalars(best_dir if best_dir.is_dir() else folder / "test_final",
                                  "test/acc")[-1])  # fmt: skip
            last5.append(statistics.fmean(curve[-5:]))
            reach.append(next(i for i, v in enumerate(curve, 1) if v >= 0.9 * curve[-1]))
        assert float(row["test_acc_final_mean"]) == pytest.approx(statistics.fmean(finals))
        assert float(row["test_acc_final_std"]) == pytest.approx(statistics.stdev(finals))
        assert float(row["test_acc_best_mean"]) == pytest.approx(statistics.fmean(bests))
        assert float(row["ece_final_mean"]) == pytest.approx(statistics.fmean(eces))
        assert float(row["val_acc_last5_mean"]) == pytest.approx(statistics.fmean(last5))
        assert float(row["epochs_to_90pct_mean"]) == pytest.approx(statistics.fmean(reach))
        assert int(row["parameters"]) == 388_673
        assert float(row["train_seconds_mean"]) > 0
    table = (out / "comparison.md").read_text()
    final = 100 * float(rows["recipe"]["test_acc_final_mean"])
    assert f"| recipe | {final:.2f} ± " in table
    assert table.splitlines()[2].startswith("| recipe |") and "388,673" in table
    assert table in comparison["stdout"]  # printed too


def test_failing_variant_is_a_row_with_its_error(comparison: dict[str, Any]) -> None:
    row = _rows(comparison["out"])["broken"]
    assert (row["status"], row["runs_ok"]) == ("failed", "0")
    assert "dropout must be in [0, 1), got 7.0" in row["error"]
    assert math.isnan(float(row["test_acc_final_mean"]))
    assert "| broken | — |" in (comparison["out"] / "comparison.md").read_text()
    # Progress: which run of how many.
    assert "[6/6] broken, seed 2: FAILED" in comparison["stdout"]


def test_figure_is_written(comparison: dict[str, Any]) -> None:
    png = comparison["out"] / "comparison.png"
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (900, 550)  # 9 x 5.5 inches at 100 dpi
    assert png.stat().st_size > 10_000


def test_second_invocation_resumes_without_rerunning(comparison: dict[str, Any]) -> None:
    out = comparison["out"]
    results = sorted(out.glob("runs/*/seed_*/result.json"))
    assert len(results) == 4  # the failed runs recorded no result
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed_*/**/*") if p.is_file()}
    again = run_cli(*comparison["without_broken"], cwd=comparison["work"], timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("finished earlier, not run again") == 4
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before  # nothing of a finished run was touched
    assert set(_rows(out)) == {"recipe", "dropout0"}


def test_resuming_with_other_settings_is_refused(comparison: dict[str, Any]) -> None:
    command = [*comparison["command"], "--trainer.max_epochs=3"]
    refused = run_cli(*command, cwd=comparison["work"], timeout=300)
    assert refused.returncode == 2
    assert "error: " in refused.stderr and "records a run with other settings" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("no name", "--variant 'no name': expected NAME=VALUE"),
        ("x=nowhere.yaml", "--variant x: the YAML file nowhere.yaml does not exist"),
    ],
    ids=["no-name", "missing-yaml"],
)
def test_bad_variant_is_one_clear_message(variant: str, expected: str, tmp_path: Path, capsys):
    from lit_celeba.cli import cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["compare", "--config", str(CONFIGS / "base.yaml"), "--variant", variant,
                  "--out", str(tmp_path / "out")])  # fmt: skip
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {expected}" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()  # nothing written
