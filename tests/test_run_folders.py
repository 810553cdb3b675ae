"""Run folders: one process writes each (a fit holds its folder, so a second ``fit --ckpt_path
last`` into it is refused), two runs started together get two, a version naming an earlier run is
refused, and validate and test say where theirs is, quoted for a shell; and a run folder (or an
export) given as ``--ckpt_path`` is named as such.

docs/bad_input.md points at the tests here by name.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from lit_celeba.checkpoints import run_folders
from lit_celeba.cli import cli_main
from tests.conftest import (
    CONFIGS,
    cli_in_process,
    private_copy,
    run_expecting_error,
    small_flags,
    tiny_overrides,
    tree_digest,
)


def lock_folder(folder: Path) -> int | None:
    """An flock on ``folder`` as another process's would be (None if one is held already)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@pytest.fixture
def logs(small_run: Path, tmp_path: Path) -> Path:
    """A private copy of ``small_run``'s logs (here, not conftest's copy of ``trained_run``)."""
    return private_copy(small_run, tmp_path)


# -- one process writes a run folder ---------------------------------------------------------------


def test_fit_ckpt_path_last_while_another_fit_writes_that_run(
    tiny_root: Path, logs: Path, capsys
) -> None:
    # Two `fit --ckpt_path last` at once: the second stopped with Lightning's raw
    # SaveConfigCallback error, or both wrote last.ckpt. The lock stands for the first.
    run_dir = logs / "base" / "version_0"
    holder = lock_folder(run_dir)
    try:
        before = tree_digest(logs)
        message = run_expecting_error(
            ["fit", *small_flags(tiny_root, logs), "--trainer.max_epochs=1", "--ckpt_path=last"],
            capsys,
        )
    finally:
        os.close(holder)
    assert f"--ckpt_path last would go on in the run {run_dir}, which process {os.getpid()}" in (
        message
    )
    assert "is writing" in message
    assert tree_digest(logs) == before and sorted(os.listdir(logs / "base")) == ["version_0"]


class HoldsItsFolder(pl.Callback):
    """Records whether another process could take the run folder while the fit trains."""

    taken: list[bool] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        fd = lock_folder(Path(trainer.log_dir))
        HoldsItsFolder.taken.append(fd is not None)
        if fd is not None:
            os.close(fd)


def test_a_new_fit_holds_its_run_folder(tiny_root: Path, tmp_path: Path) -> None:
    # Before: a fit held nothing, so `fit --ckpt_path last` resumed a run still training.
    HoldsItsFolder.taken = []
    cli_main(["fit", *small_flags(tiny_root, tmp_path / "logs"), "--trainer.max_epochs=1",
              "--trainer.callbacks+=tests.test_run_folders.HoldsItsFolder"])  # fmt: skip
    assert HoldsItsFolder.taken == [False]
    fd = lock_folder(tmp_path / "logs" / "base" / "version_0")  # let go at the end
    assert fd is not None
    os.close(fd)


def test_two_runs_started_at_once_get_two_folders(tmp_path: Path) -> None:
    # Lightning numbers a run by listing the folder when it first logs: two runs started
    # together both took version_0.
    def config() -> SimpleNamespace:
        init_args = SimpleNamespace(save_dir=str(tmp_path), name="base", version=None)
        logger = SimpleNamespace(init_args=init_args)
        return SimpleNamespace(trainer={"logger": logger})

    first, second = config(), config()
    try:
        run_folders.claim_run_folder("fit", first, None)
        run_folders.claim_run_folder("fit", second, None)
        versions = [c.trainer["logger"].init_args.version for c in (first, second)]
        assert versions == ["version_0", "version_1"]
        assert sorted(os.listdir(tmp_path / "base")) == versions
    finally:
        run_folders.release_run_folders()
    assert not (tmp_path / "base" / "version_0").exists()  # nothing written: removed again


def test_a_version_naming_an_earlier_run_is_refused(tiny_root: Path, logs: Path, capsys) -> None:
    # Before: Lightning's raw "SaveConfigCallback expected .../config.yaml to NOT exist".
    before = tree_digest(logs)
    message = run_expecting_error(
        ["fit", *small_flags(tiny_root, logs), "--trainer.logger.init_args.version=version_0"],
        capsys,
    )
    assert f"names the earlier run {logs / 'base' / 'version_0'}" in message
    assert tree_digest(logs) == before


# -- validate and test say where their run folder is, quoted for a shell ---------------------------


@pytest.mark.parametrize("command", ["validate", "test"])
def test_evaluation_prints_its_run_folder_quoted(
    command: str, tiny_root: Path, small_run: Path, tmp_path: Path, capsys
) -> None:
    logs = tmp_path / "my logs"
    ckpt = small_run / "base" / "version_0" / "checkpoints" / "last.ckpt"
    cli_main([command, *small_flags(tiny_root, logs), f"--ckpt_path={ckpt}"])
    run_dir = logs / "base" / "version_0"
    assert f"Logs: {run_dir}  (view with: tensorboard --logdir '{run_dir}')" in (
        capsys.readouterr().out
    )


# -- --ckpt_path naming a run folder or an export --------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "torchscript", "torch.export", "onnx"])
def test_ckpt_path_naming_a_folder_or_an_export(
    kind: str, logs: Path, tiny_root: Path, tmp_path: Path, capsys
) -> None:
    net = torch.nn.Linear(2, 2)
    if kind == "folder":
        path = logs / "base" / "version_0"
    elif kind == "torchscript":
        path = tmp_path / "model.pt"
        torch.jit.script(net).save(str(path))
    elif kind == "torch.export":
        path = tmp_path / "model.pt2"
        torch.export.save(torch.export.export(net, (torch.zeros(1, 2),)), str(path))
    else:
        path = tmp_path / "model.onnx"
        path.write_bytes(b"\x08\x07\x12\x07pytorch")
    message = run_expecting_error(
        ["test", *small_flags(tiny_root, tmp_path / "l"), f"--ckpt_path={path}"], capsys
    )
    if kind == "folder":
        assert f"{path} is a folder, not a checkpoint file" in message
        assert str(path / "checkpoints" / "last.ckpt") in message
    else:
        assert f"{path} is an export (" in message and "not a checkpoint" in message
        assert "truncated" not in message


def test_a_command_that_fails_before_its_run_leaves_none_of_the_folders_it_made(
    tmp_path: Path,
) -> None:
    """The logger's folder under parents that did not exist: a fit refused in its setup (no
    data set there) removes every folder it made on the way, not only the last two."""
    logs = tmp_path / "new" / "deeper" / "logs"
    done = cli_in_process("fit", "--config", str(CONFIGS / "base.yaml"),
                          *tiny_overrides(tmp_path / "no_data", logs), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no_data" in done.stderr
    assert not (tmp_path / "new").exists(), sorted(map(str, tmp_path.rglob("*")))
