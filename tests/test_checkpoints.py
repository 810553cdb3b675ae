"""Checkpoints: a file whose unpickling could run code is refused before anything is written;
a wrong, foreign or damaged one is one clear message; our own load weights-only; ``--ckpt_path
last`` finds the newest run (or, for fit, none), and Lightning's other keywords are refused; and
saves are atomic: a save that fails or is killed midway, or reaches a file-size limit, leaves the
previous checkpoint whole.

docs/bad_input.md points at the tests here by name.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lit_celeba.base.errors import CheckpointError
from lit_celeba.checkpoints.atomic_io import AtomicCheckpointIO
from lit_celeba.checkpoints.load import load_checkpoint
from lit_celeba.cli import cli_main
from lit_celeba.models.module import AttributeClassifier
from tests.conftest import (
    BASE,
    REPO,
    SHORT,
    SHORTER,
    SMALL,
    assert_untouched,
    base_flags,
    last_ckpt,
    run_expecting_error,
    small_flags,
    tiny_overrides,
    tree_digest,
)

# ---------------------------------------------------------------------------------------------
# Checkpoints: wrong, foreign, damaged or malicious files are refused before anything is written.


class _OpensAFile:
    """Unpickling this creates ``path``: a stand-in for any code a crafted checkpoint could run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def malicious_ckpt(logs: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A real checkpoint with one extra entry whose unpickling would create a marker file."""
    marker = tmp_path / "code_ran.txt"
    checkpoint = torch.load(last_ckpt(logs), weights_only=True)
    checkpoint["extra"] = _OpensAFile(marker)
    path = tmp_path / "malicious.ckpt"
    torch.save(checkpoint, path)
    assert not marker.exists()
    return path, marker


def _prove_malicious(path: Path, marker: Path) -> None:
    # The file really runs code when loaded the unsafe way, so the refusals above mean something.
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict", "fit"])
def test_malicious_checkpoint_is_refused_by_the_cli(
    subcommand: str, tiny_root: Path, logs: Path, malicious_ckpt, capsys
) -> None:
    path, marker = malicious_ckpt
    before = tree_digest(logs)
    flags = [*tiny_overrides(tiny_root, logs), *SMALL, *SHORT, f"--ckpt_path={path}"]
    message = run_expecting_error([subcommand, "--config", BASE, *flags], capsys)
    assert f"Refused to load {path}" in message and "could run code" in message
    assert "(GLOBAL io.open)" in message  # open() is io.open
    assert not marker.exists()
    assert_untouched(before, logs)
    assert sorted(p.name for p in (logs / "base").iterdir()) == ["version_0"]
    _prove_malicious(path, marker)


def test_malicious_checkpoint_is_refused_by_the_loading_helpers(malicious_ckpt) -> None:
    path, marker = malicious_ckpt
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="could run code"):
        AtomicCheckpointIO().load_checkpoint(path)  # what the Trainer uses for every ckpt_path
    with pytest.raises(Exception, match="Weights only load failed"):
        AttributeClassifier.load_from_checkpoint(path)  # torch's own default, kept by Lightning
    assert not marker.exists()
    _prove_malicious(path, marker)


def _plain(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def test_own_checkpoints_load_weights_only_with_plain_hyperparameters(logs: Path) -> None:
    checkpoint = torch.load(last_ckpt(logs), weights_only=True)
    assert _plain(checkpoint["hyper_parameters"])
    assert _plain(checkpoint["datamodule_hyper_parameters"])
    assert checkpoint["datamodule_hyper_parameters"]["target_attr"] == "Male"
    model = AttributeClassifier.load_from_checkpoint(last_ckpt(logs), weights_only=True)
    assert model.hparams["net"]["init_args"]["channels"] == [8, 16, 16, 16]


def _strip_hyperparameters(source: Path, target: Path) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    for key in ("hyper_parameters", "hparams_name"):
        checkpoint.pop(key)
    torch.save(checkpoint, target)
    return target


def _with_class_path(
    class_path: str, source: Path, target: Path, key: str = "_class_path"
) -> Path:
    """A copy of ``source`` that names ``class_path`` as its model class (LightningCLI's
    ``_class_path``) or, with ``key="net"``, as its network's."""
    checkpoint = torch.load(source, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    if key == "net":
        hparams["net"]["class_path"] = class_path
    else:
        hparams[key] = class_path
    torch.save(checkpoint, target)
    return target


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


CHECKPOINT_CASES = {
    "other-attribute": (
        lambda ckpt, tmp: ckpt,
        ["--data.target_attr=Young"],
        [
            "trained to predict 1 attribute(s) Male",
            "--data.target_attr is Young",
            "--data.target_attr Male",
        ],
    ),
    "other-network": (
        lambda ckpt, tmp: _strip_hyperparameters(ckpt, tmp / "plain.ckpt"),
        [],
        ["does not fit the network RecipeCNN", "shape", "net.features.0.weight"],
    ),
    "other-model-class": (
        lambda ckpt, tmp: _with_class_path("other_project.models.ResNet", ckpt, tmp / "x.ckpt"),
        [],
        ["saved by another model ('other_project.models.ResNet')", "lit_celeba fit"],
    ),
    # Importing lit_celeba.__main__ would start the CLI: a network's class path is checked
    # before jsonargparse imports it, and lit_celeba.models.nets' classes are looked up there.
    "class-path-that-would-import": (
        lambda ckpt, tmp: _with_class_path("lit_celeba.__main__.Model", ckpt, tmp / "y.ckpt",
                                           key="net"),  # fmt: skip
        [],
        ["a network of another package ('lit_celeba.__main__.Model')", "lit_celeba fit"],
    ),
    "network-this-version-lacks": (
        lambda ckpt, tmp: _with_class_path("lit_celeba.models.nets.VGG", ckpt, tmp / "z.ckpt",
                                           key="net"),  # fmt: skip
        [],
        ["names the network 'lit_celeba.models.nets.VGG'", "this version of lit_celeba"],
    ),
    "missing-file": (
        lambda ckpt, tmp: tmp / "no_such.ckpt",
        [],
        ["no_such.ckpt does not exist", "--ckpt_path last"],
    ),
    "truncated-file": (
        lambda ckpt, tmp: _write(tmp / "half.ckpt", ckpt.read_bytes()[:5000]),
        [],
        ["Cannot read checkpoint", "half.ckpt", "truncated"],
    ),
    "not-a-checkpoint": (
        lambda ckpt, tmp: _write(tmp / "notes.ckpt", b"my notes"),
        [],
        ["Cannot read checkpoint", "notes.ckpt"],
    ),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=str)
def test_unusable_checkpoint(case: str, tiny_root: Path, logs: Path, tmp_path: Path, capsys):
    make, flags, expected = CHECKPOINT_CASES[case]
    ckpt = make(last_ckpt(logs), tmp_path)
    before = tree_digest(logs)
    message = run_expecting_error(
        ["test", "--config", BASE, *tiny_overrides(tiny_root, logs), f"--ckpt_path={ckpt}", *flags],
        capsys,
    )
    for fragment in expected:
        assert fragment in message, message
    assert_untouched(before, logs)
    assert sorted(p.name for p in (logs / "base").iterdir()) == ["version_0"]


def test_ckpt_path_last_without_any_run(tiny_root: Path, tmp_path: Path, capsys) -> None:
    message = run_expecting_error(
        [
            "test",
            "--config",
            BASE,
            *tiny_overrides(tiny_root, tmp_path / "logs"),
            "--ckpt_path=last",
        ],
        capsys,
    )
    assert "no last.ckpt under" in message and "Train with `fit` first" in message


def test_ckpt_path_last_tests_the_newest_run(tiny_root: Path, logs: Path, capsys) -> None:
    older = logs / "base" / "version_7" / "checkpoints"
    older.mkdir(parents=True)
    shutil.copy(last_ckpt(logs), older / "last.ckpt")
    os.utime(older / "last.ckpt", (1, 1))  # written long ago
    cli = cli_main(["test", "--config", BASE, *tiny_overrides(tiny_root, logs), "--ckpt_path=last"])
    assert cli.config["test"]["ckpt_path"] == str(last_ckpt(logs))
    assert 0.0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1.0


def test_fit_ckpt_path_last_without_any_run_starts_fresh(tiny_root: Path, tmp_path: Path, capsys):
    logs = tmp_path / "logs"
    flags = [*tiny_overrides(tiny_root, logs), *SMALL, *SHORT, "--trainer.max_epochs=1"]
    cli_main(["fit", "--config", BASE, *flags, "--ckpt_path=last"])
    assert "No last.ckpt under" in capsys.readouterr().err
    assert last_ckpt(logs).is_file() and (logs / "base" / "version_0" / "config.yaml").is_file()


# ---------------------------------------------------------------------------------------------
# --ckpt_path keywords that do not apply.


@pytest.mark.parametrize("keyword", ["hpc", "registry"])
def test_ckpt_path_keywords_lightning_has_and_we_do_not(keyword, tiny_root, tmp_path, capsys):
    message = run_expecting_error(
        ["test", *small_flags(tiny_root, tmp_path / "l"), f"--ckpt_path={keyword}"], capsys
    )
    assert f"--ckpt_path {keyword} is Lightning's keyword for" in message
    assert "lit_celeba does not use" in message


def test_help_offers_only_the_checkpoints_that_work(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["test", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    help_line = text[text.index("--ckpt_path CKPT_PATH the"):][:300]
    assert "'last'" in help_line and "best" not in help_line and "hpc" not in help_line


# ---------------------------------------------------------------------------------------------
# Atomic saves.


def _tiny_checkpoint(value: float) -> dict:
    return {"state_dict": {"w": torch.full((256, 256), value)}, "epoch": int(value)}


def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint(_tiny_checkpoint(1.0), path)
    good = path.read_bytes()
    real_save = torch.save

    def save_half_then_fail(obj, fh, *args, **kwargs):
        real_save(obj, fh, *args, **kwargs)
        fh.truncate(fh.tell() // 2)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(CheckpointError, match="disk is full. The previous last.ckpt .* intact"):
        io.save_checkpoint(_tiny_checkpoint(2.0), path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind
    assert io.load_checkpoint(path)["epoch"] == 1


_KILLED_WHILE_SAVING = """
import os, signal, sys, torch
from lit_celeba.checkpoints.atomic_io import AtomicCheckpointIO
path = sys.argv[1]
io = AtomicCheckpointIO()
io.save_checkpoint({"state_dict": {"w": torch.ones(256, 256)}, "epoch": 1}, path)
real_save = torch.save
def save_half_then_die(obj, fh, *args, **kwargs):
    real_save(obj, fh, *args, **kwargs)
    fh.truncate(fh.tell() // 2)
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = save_half_then_die
io.save_checkpoint({"state_dict": {"w": torch.zeros(256, 256)}, "epoch": 2}, path)
"""


@pytest.mark.slow
def test_a_process_killed_while_saving_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    died = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_SAVING, str(path)], env=env, capture_output=True
    )
    assert died.returncode == -signal.SIGKILL, died.stderr
    leftovers = [p for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".last.ckpt.")
    io = AtomicCheckpointIO()
    assert io.load_checkpoint(path)["epoch"] == 1  # the previous good checkpoint, whole
    io.save_checkpoint(_tiny_checkpoint(3.0), path)  # the next save clears the dead one's file
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_the_cli_saves_through_the_atomic_plugin(trained_run: Path, tiny_root: Path, tmp_path):
    cli = cli_main(
        ["validate", "--config", BASE, *tiny_overrides(tiny_root, tmp_path), *SMALL, *SHORT]
        + [f"--ckpt_path={last_ckpt(trained_run)}"]
    )
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


# ---------------------------------------------------------------------------------------------
# A file-size limit (RLIMIT_FSIZE) reached while a checkpoint is written.


class LimitFileSizeAfterFirstEpoch(pl.Callback):
    """From the second epoch on, no file of this process may grow past half of last.ckpt."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import resource

        if trainer.current_epoch == 1:
            size = (Path(trainer.log_dir) / "checkpoints" / "last.ckpt").stat().st_size // 2
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_file_size_limit_while_saving_keeps_last_ckpt(tiny_root: Path, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    logs = tmp_path / "logs"
    # The recipe's network: its checkpoint (4.7 MB) is larger than the event file.
    result = run_cli("fit", *base_flags(tiny_root, logs), *SHORTER, "--trainer.max_epochs=2",
                     "--trainer.callbacks+=tests.test_checkpoints.LimitFileSizeAfterFirstEpoch",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    message = [line for line in result.stderr.splitlines() if line.startswith("error: ")][-1]
    assert "the file reached the largest size this process may write" in message
    assert "the newest checkpoint there, last.ckpt, is intact" in message
    last = logs / "base" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the first epoch's, loadable
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith(".")) == []
