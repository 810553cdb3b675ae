"""Every command run twice in the same folder, with and without a logger: the second run ends
like the first and leaves the first run's files byte for byte as they were."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lit_celeba.checkpoints.run_folders import RUN_DIR_ENV
from lit_celeba.cli import cli_main
from tests.conftest import CONFIGS, run_cli, tiny_overrides

SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
         "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1",
         "--trainer.limit_predict_batches=1"]  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("logger", [True, False], ids=["logger", "no-logger"])
@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_a_command_twice_in_one_folder(
    subcommand: str, logger: bool, tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    args = [subcommand, "--config", str(CONFIGS / "base.yaml"),
            *tiny_overrides(tiny_root, work / "logs"), *SHORT]  # fmt: skip
    if subcommand != "fit":
        args.append(f"--ckpt_path={tiny_checkpoint}")
    if not logger:
        args.append("--trainer.logger=false")
    caplog.set_level(logging.INFO)
    cli_main(args)
    first = _files(work)
    assert first, "the first run wrote nothing"
    cli_main(args)
    second = _files(work)
    assert {name: second.get(name) for name in first} == first
    assert len(second) > len(first) or subcommand == "validate" and not logger
    said = caplog.text  # Lightning's rank_zero_info, where the CLI's notes go
    if not logger:
        # Run folders of their own, and one note saying what was left out.
        assert sorted(p.name for p in (work / "runs").iterdir()) == ["version_0", "version_1"]
        assert said.count("No logger: this run's files go to runs/version_") == 2
        assert "left out, as they need one: LearningRateMonitor, TensorBoardDashboards" in said
        assert "tensorboard --logdir" not in said
        if subcommand == "fit":
            assert "Run folder (no logger): runs/version_1" in said
    elif subcommand == "fit":
        assert "tensorboard --logdir" in said  # the check above can fail
        assert not (work / "config.yaml").exists(), sorted(first)


@pytest.mark.slow
def test_validate_twice_without_a_logger_as_a_user_runs_it(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """The exact command of issue 12, in new processes: the second run used to end with
    Lightning's raw "SaveConfigCallback expected .../config.yaml to NOT exist" traceback."""
    args = ["validate", "--config", str(CONFIGS / "demo.yaml"),
            *tiny_overrides(tiny_root, tmp_path / "logs"), *SHORT,
            f"--ckpt_path={tiny_checkpoint}", "--trainer.logger", "false"]  # fmt: skip
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    config = (tmp_path / "runs" / "version_0" / "config.yaml").read_bytes()
    second = run_cli(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    assert (tmp_path / "runs" / "version_0" / "config.yaml").read_bytes() == config
    assert (tmp_path / "runs" / "version_1" / "config.yaml").is_file()


def test_a_run_without_a_logger_that_fails_before_it_starts_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # Its folder is now made (mkdir, atomic) and held when the command starts, as a logger's is:
    # a command that fails in its setup must take it away again, and runs/ with it.
    from tests.conftest import run_expecting_error

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    message = run_expecting_error(
        ["fit", "--config", str(CONFIGS / "base.yaml"), "--trainer.logger=false",
         f"--data.root={tmp_path / 'no_celeba_here'}", "--data.synthetic=null",
         "--trainer.accelerator=cpu", "--data.num_workers=0"], capsys,
    )  # fmt: skip
    assert "no_celeba_here" in message
    assert not (tmp_path / "runs").exists(), sorted(p.name for p in tmp_path.rglob("*"))
