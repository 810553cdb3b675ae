"""``python -m lit_celeba compare``: two variants x two seeds on tiny generated data, checked
against the runs' own event files; a failing variant; each run's progress; resuming without
re-running, with a resume key that is what the settings say and a damaged record done again;
a second compare on one --out, and a compare killed then run again; bad --out, seeds and
settings refused up front. The processes it starts, stopped by a signal and sharing the cores:
tests/test_compare_processes.py."""

from __future__ import annotations

import csv
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing import event_accumulator

from tests.conftest import (
    CONFIGS,
    REPO,
    TINY_SIZES,
    child_processes,
    cli_in_process,
    survivors,
)

BROKEN = ["--variant", "broken=--model.net.dropout 7"]
# The recipe's metrics and base.yaml's LearningRateMonitor.
# The recipe's names, and the means that validation adds for every number of attributes.
RECIPE_METRICS = {"epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr-Adam",
                  "val/balanced_acc", "val/auroc", "val/ece"}  # fmt: skip


def _flags(root: Path, cache: Path) -> list[str]:
    return [
        f"--data.root={root}", "--data.synthetic=null",
        f"--data.subsets.train={TINY_SIZES['train']}", f"--data.subsets.val={TINY_SIZES['valid']}",
        f"--data.subsets.test={TINY_SIZES['test']}", "--data.num_workers=0",
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
    variant_file = work / "dropout0.yaml"  # a copy of the user's own, to edit
    shutil.copy(CONFIGS / "variants" / "dropout0.yaml", variant_file)
    good = ["--variant", "recipe=", "--variant", f"dropout0={variant_file}"]
    rest = [
        "--seeds", "2", "--out", str(work / "out"), "--jobs", "2",
        *_flags(tiny_root, work / "cache"),
    ]  # fmt: skip
    base = ["compare", "--config", str(CONFIGS / "base.yaml")]
    # compare itself in this process (its runs still each in their own): what it writes and
    # prints is the test here; test_a_compare_killed_... starts one as a process of its own.
    with pytest.MonkeyPatch.context() as patch:
        _read_configs_in_process(patch)
        done = cli_in_process(*base, *good, *BROKEN, *rest, cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    return {
        "work": work,
        "out": work / "out",
        "command": [*base, *good, *BROKEN, *rest],
        "without_broken": [*base, *good, *rest],
        "variant_file": variant_file,
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


def _read_configs_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """compare reads its variants' configurations in this process, not one of its own (6 s)."""
    try:
        from lit_celeba.commands import compare_configs
        from lit_celeba.effective_config import effective_config
    except ImportError:  # the code before issue 27 read none: these tests then fail on their own
        return

    monkeypatch.setattr(compare_configs, "effective_configs",
                        lambda lists, children: [effective_config(a) for a in lists])  # fmt: skip


@pytest.fixture
def configs_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    _read_configs_in_process(monkeypatch)


def in_process(command: list[str], capsys) -> tuple[int, str, str]:
    """``cli_main(command)`` here (a resumed comparison runs no process): status, out, err."""
    from lit_celeba.cli import cli_main

    try:
        cli_main(command)
        status = 0
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_second_invocation_resumes_without_rerunning(
    comparison: dict[str, Any], capsys, configs_in_process
) -> None:
    out = comparison["out"]
    results = sorted(out.glob("runs/*/seed_*/result.json"))
    assert len(results) == 4  # the failed runs recorded no result
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed_*/**/*") if p.is_file()}
    status, stdout, stderr = in_process(comparison["without_broken"], capsys)
    assert status == 0, stdout + stderr
    assert stdout.count("finished earlier, not run again") == 4
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before  # nothing of a finished run was touched
    assert set(_rows(out)) == {"recipe", "dropout0"}


def test_resuming_with_other_settings_is_refused(
    comparison: dict[str, Any], capsys, configs_in_process
) -> None:
    status, _, stderr = in_process([*comparison["command"], "--trainer.max_epochs=3"], capsys)
    assert status == 2
    assert "error: " in stderr and "records a run with other settings" in stderr
    assert "Traceback" not in stderr


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


# -- issue 27 ------------------------------------------------------------------------------------


def test_each_run_shows_its_own_progress(comparison: dict[str, Any]) -> None:
    # Before: nothing between "running" and "done" while a run trained.
    lines = comparison["stdout"].splitlines()
    epochs = [line for line in lines if line.startswith("[1/6] recipe, seed 1: epoch ")]
    assert [line.split(":")[1] for line in epochs] == [" epoch 1 of 2", " epoch 2 of 2"]
    assert "val/acc" in epochs[-1]


def test_the_resume_key_is_what_the_files_say_not_their_names(
    comparison: dict[str, Any], capsys, configs_in_process
) -> None:
    # Before: a variant file edited between two invocations resumed its runs (its name had not
    # changed), and the same file under another name was refused.
    variant_file = comparison["variant_file"]
    renamed = variant_file.with_name("no_dropout.yaml")
    shutil.copy(variant_file, renamed)
    command = [arg.replace(str(variant_file), str(renamed)) for arg in comparison["without_broken"]]
    status, stdout, stderr = in_process(command, capsys)
    assert status == 0, stdout + stderr
    assert stdout.count("finished earlier, not run again") == 4
    original = variant_file.read_text()
    try:
        variant_file.write_text(original.replace("dropout: 0.0", "dropout: 0.25"))
        assert variant_file.read_text() != original
        status, stdout, stderr = in_process(comparison["without_broken"], capsys)
    finally:
        variant_file.write_text(original)
    assert status == 2, stdout + stderr
    assert "records a run with other settings (model.net.init_args.dropout: 0.0 -> 0.25)" in stderr


def _compare(tmp_path: Path, *args: str, root: Path | None = None) -> list[str]:
    flags = _flags(root or tmp_path / "no_data", tmp_path / "cache")
    return ["compare", "--config", str(CONFIGS / "base.yaml"), *args, *flags]


def test_a_variants_own_setting_wins_over_the_shared_option(
    tmp_path: Path, capsys, configs_in_process
) -> None:
    # Before: the option given for every run came last and won, without a word.
    from lit_celeba.commands.compare_configs import configure
    from lit_celeba.commands.compare_runs import Variant, plan_runs

    longer = tmp_path / "longer.yaml"
    longer.write_text("trainer:\n  max_epochs: 5\n")
    variants = [Variant("recipe", ()), Variant("longer", ("--config", str(longer)))]
    runs = plan_runs(variants, [1], tmp_path)
    base, shared = [str(CONFIGS / "base.yaml")], ["--trainer.max_epochs=2"]
    differing = configure(variants, runs, base, shared, children=None)
    assert [run.config["trainer"]["max_epochs"] for run in runs] == [2, 5]
    assert "Note: variant longer sets trainer.max_epochs to 5 itself, over the shared option's 2" \
        in capsys.readouterr().out  # fmt: skip
    assert differing == {"recipe": "trainer.max_epochs=2", "longer": "trainer.max_epochs=5"}


@pytest.mark.parametrize(
    "case", ["out-is-a-file", "out-under-a-file", "out-of-other-files", "seed-out-of-range",
             "shared-seed", "variant-logger-false", "variant-without-checkpoints"],
)  # fmt: skip
def test_what_compare_cannot_use_is_refused_before_anything_runs(
    case: str, tmp_path: Path, capsys, configs_in_process
) -> None:
    out = tmp_path / "out"
    variant, extra = "recipe=", []
    if case == "out-is-a-file":
        out.write_text("mine")
    elif case == "out-under-a-file":
        (tmp_path / "a_file").write_text("mine")
        out = tmp_path / "a_file" / "out"
    elif case == "out-of-other-files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "seed-out-of-range":
        extra = ["--seeds", "0,-3"]
    elif case == "shared-seed":
        extra = ["--seed_everything=7"]
    elif case == "variant-logger-false":
        variant = "nolog=--trainer.logger false"
    else:
        variant = "nockpt=--trainer.enable_checkpointing false"
    before = tree(tmp_path)
    message = run_expecting_error(
        _compare(tmp_path, "--variant", variant, "--out", str(out), *extra), capsys
    )
    expected = {
        "out-is-a-file": f"--out {out} is a file",
        "out-under-a-file": f"--out {out} cannot be created: {tmp_path / 'a_file'} is a file",
        "out-of-other-files": f"--out {out} holds other files (notes.txt) and no comparison",
        "seed-out-of-range": "--seeds 0,-3: the seed -3 is out of range",
        "shared-seed": "set --seed_everything, which compare sets for each run itself (use "
        "--seeds)",
        "variant-logger-false": "--variant nolog (with the options for every run) sets "
        "trainer.logger to false",
        "variant-without-checkpoints": "sets trainer.enable_checkpointing to false",
    }[case]
    assert expected in message, message
    new = tree(tmp_path) - before
    assert new <= {"out"}, new  # nothing but the (empty) --out folder itself
    assert not (out / "runs").exists()


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def run_expecting_error(args: list[str], capsys) -> str:
    from tests.conftest import run_expecting_error as expecting

    return expecting(args, capsys)


def test_every_run_failing_is_exit_status_1(tmp_path: Path, capsys, configs_in_process) -> None:
    from lit_celeba.cli import cli_main

    with pytest.raises(SystemExit) as stop:
        cli_main(_compare(tmp_path, "--variant", "bad=--model.net.dropout abc", "--out",
                          str(tmp_path / "out")))  # fmt: skip
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "error: every run failed (1)" in err and "Traceback" not in err


_HOLD_FOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("HELD", flush=True)
time.sleep(120)
"""


def _hold(folder: Path) -> subprocess.Popen:
    """Another process that holds ``folder`` (as a compare, or a run it started, does)."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_FOLDER, str(folder)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "HELD"
    return holder


def test_an_out_in_use_is_refused(tmp_path: Path, capsys) -> None:
    # Before: a second compare (or a rerun while an orphaned run of the first still wrote)
    # deleted and refilled the run folders the other process wrote into.
    out = tmp_path / "out"
    holder = _hold(out)
    try:
        message = run_expecting_error(
            _compare(tmp_path, "--variant", "recipe=", "--out", str(out)), capsys
        )
    finally:
        holder.kill()
        holder.wait()
    assert f"--out {out} is in use by process {holder.pid}" in message
    assert os.listdir(out) == []


def test_a_run_folder_another_process_writes_is_left_alone(
    tmp_path: Path, capsys, configs_in_process
) -> None:
    # A `fit --ckpt_path last` that a user started in a run folder of compare's: compare
    # deleted the folder under it and started the run again.
    out = tmp_path / "out"
    fit_dir = out / "runs" / "recipe" / "seed_1" / "fit"
    holder = _hold(fit_dir)
    (fit_dir / "events.out.tfevents.mine").write_text("being written")
    from lit_celeba.cli import cli_main

    try:
        with pytest.raises(SystemExit):
            cli_main(_compare(tmp_path, "--variant", "recipe=", "--out", str(out)))
    finally:
        holder.kill()
        holder.wait()
    assert f"{fit_dir} is being written by process {holder.pid}" in capsys.readouterr().out
    assert os.listdir(fit_dir) == ["events.out.tfevents.mine"]


def test_a_damaged_record_means_the_run_is_done_again(tmp_path: Path, capsys) -> None:
    # A record cut short (a compare killed while it wrote it, before they were written whole):
    # a JSONDecodeError traceback at every later invocation.
    from lit_celeba.commands.compare_runs import Run, Variant, recorded_result

    run = Run(Variant("recipe", ()), 1, tmp_path, config={"seed_everything": 1})
    (tmp_path / "result.json").write_text('{"variant": "recipe", "seed"')
    assert recorded_result(run) is None
    assert f"{tmp_path / 'result.json'} is damaged" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="lists the processes in /proc")
def test_a_compare_killed_leaves_no_run_going_and_a_rerun_completes(
    tiny_root: Path, tmp_path: Path, capsys, configs_in_process
) -> None:

    out = tmp_path / "out"
    command = _compare(tmp_path, "--variant", "recipe=", "--out", str(out), root=tiny_root)
    command.append("--trainer.max_epochs=1")  # the best epoch is the last: one test a run
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    first = subprocess.Popen([sys.executable, "-m", "lit_celeba", *command], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "runs" / "recipe" / "seed_1" / "fit").is_dir():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        # While it runs, a second compare on the same --out is refused (issue 27, case 6).
        message = run_expecting_error(command, capsys)
        assert f"--out {out} is in use by process {first.pid}" in message
        running = child_processes(first.pid, all_levels=True)
        assert running, "the fit is running"
    finally:
        running = child_processes(first.pid, all_levels=True)
        first.kill()
        first.communicate(timeout=60)
    assert not survivors(running), "a run of the killed compare is still running"
    # The fit's own pool workers (the cache's decoders, on a machine with 2 or more CPUs) die
    # with it by PR_SET_PDEATHSIG, a moment later; until then --out is still held. A lock freed
    # between the refusal and the look into /proc/locks names no process (CI saw "another
    # process"), so any "in use" refusal means: try again.
    deadline = time.monotonic() + 30
    while True:
        status, stdout, stderr = in_process(command, capsys)  # runs its fit and test again
        held = f"--out {out} is in use by" in stderr
        if status == 0 or not held or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 0, stdout + stderr
    assert _rows(out)["recipe"]["status"] == "ok"
