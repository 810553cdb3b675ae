"""Reliability: killed runs resume exactly, saves are atomic, checkpoints cannot run code, and every
bad input ends with one clear message that leaves what was already written untouched.

The README's "Bad input and what you see" table points at the tests here by name.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_celeba.base.errors import CheckpointError
from lit_celeba.callbacks.resume import InterruptNotice
from lit_celeba.checkpoints.atomic_io import AtomicCheckpointIO
from lit_celeba.checkpoints.load import load_checkpoint
from lit_celeba.cli import cli_main
from lit_celeba.models.module import RecipeClassifier
from tests.conftest import (
    CONFIGS,
    REPO,
    cli_in_process,
    last_ckpt,
    run_expecting_error,
    tiny_overrides,
    tree_digest,
)

BASE = str(CONFIGS / "base.yaml")
# A small network on small images: the runs here test bookkeeping, not learning.
SMALL = ["--model.channels=[8, 16, 16, 16]", "--data.image_size=32", "--data.batch_size=16"]
SHORT = ["--trainer.limit_train_batches=4", "--trainer.limit_val_batches=2"]




def assert_untouched(before: dict[str, str], folder: Path) -> None:
    after = tree_digest(folder)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"files lost or changed: {changed}"


# ---------------------------------------------------------------------------------------------
# A finished run to point checkpoints at and to check that failures leave alone.


@pytest.fixture(scope="module")
def trained_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Logs of one short in-process ``fit`` (small network, target Male) in logs/base/version_0."""
    logs = tmp_path_factory.mktemp("trained") / "logs"
    cli_main(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, logs), *SMALL, *SHORT]
        + ["--trainer.max_epochs=1"]
    )
    assert (logs / "base" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    return logs


@pytest.fixture
def logs(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run's log folder."""
    copy = tmp_path / "logs"
    shutil.copytree(trained_run, copy)
    return copy






# ---------------------------------------------------------------------------------------------
# Bad input: one clear message, nothing already written lost. Each row of the README table.


def _edit_root(tiny_root: Path, tmp_path: Path, edit: Callable[[Path], None]) -> Path:
    root = tmp_path / "celeba_copy"
    shutil.copytree(tiny_root, root)
    edit(root / "celeba")
    return root


def _replace_line(path: Path, line_no: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _drop_last_line(path: Path) -> None:
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


DATA_CASES = {
    "partial-no-partition-file": (
        lambda d: (d / "list_eval_partition.txt").unlink(),
        [],
        ["but not", "list_eval_partition.txt", "needs both"],
    ),
    "partial-missing-images": (
        lambda d: [(d / "img_align_celeba" / f"{i:06d}.jpg").unlink() for i in (2, 9)],
        [],
        ["2 image(s) of the 'train' subset", "000002.jpg", "000009.jpg", "complete"],
    ),
    "partial-no-image-folder": (
        lambda d: shutil.rmtree(d / "img_align_celeba"),
        [],
        ["image folder", "img_align_celeba is missing", "Unpack"],
    ),
    "wrong-layout": (
        lambda d: d.rename(d.with_name("faces")),
        [],
        [
            "No CelebA annotation files",
            "ROOT/celeba/list_attr_celeba.txt",
            "ROOT/list_attr_celeba.csv",
        ],
    ),
    "malformed-attribute-line": (
        lambda d: _replace_line(d / "list_attr_celeba.txt", 5, "000003.jpg " + "2 " * 40),
        [],
        ["list_attr_celeba.txt, line 5", "'2' is not 1 or -1"],
    ),
    "malformed-partition-line": (
        lambda d: _replace_line(d / "list_eval_partition.txt", 7, "000007.jpg train"),
        [],
        ["list_eval_partition.txt, line 7", "expected '<image name> <0|1|2>'"],
    ),
    "partition-and-attributes-disagree": (
        lambda d: _drop_last_line(d / "list_eval_partition.txt"),
        [],
        ["disagree", "192 and 191 images", "same CelebA release"],
    ),
    # Validation images (97 on, in file order): the sanity check reads them first, every time.
    "truncated-jpeg": (
        lambda d: _truncate(d / "img_align_celeba" / "000100.jpg"),
        [],
        ["Cannot read image", "000100.jpg", "Replace the file"],
    ),
    "not-a-jpeg-in-a-worker": (
        lambda d: (d / "img_align_celeba" / "000101.jpg").write_text("<html>not found</html>"),
        ["--data.num_workers=1"],
        ["Cannot read image", "000101.jpg", "Replace the file"],
    ),
}


@pytest.mark.parametrize("case", DATA_CASES, ids=str)
def test_bad_data_set(case: str, tiny_root: Path, logs: Path, tmp_path: Path, capsys) -> None:
    edit, extra, expected = DATA_CASES[case]
    root = _edit_root(tiny_root, tmp_path, edit)
    before = tree_digest(logs)
    message = run_expecting_error(
        ["fit", "--config", BASE, *tiny_overrides(root, logs), *SMALL, *SHORT, *extra], capsys
    )
    for fragment in expected:
        assert fragment in message, message
    assert_untouched(before, logs)


SETTING_CASES = {
    "subset-size-zero": (["--data.val_size=0"], ["data.val_size must be a positive number"]),
    "negative-batch-size": (
        ["--data.batch_size=-1"], ["Invalid setting: data.batch_size must be at least 1, got -1"]
    ),
    "batch-size-not-a-number": (["--data.batch_size=many"], ['"data.batch_size"', "many"]),
    "unknown-optimizer": (["--optimizer=Adamm"], ["Unknown optimizer 'Adamm'", "AdamW", "SGD"]),
    "image-size-too-small": (["--data.image_size=4"], ["data.image_size must be at least 8"]),
    "negative-min-face-size": (
        ["--data.min_face_size=-1"],
        ["Invalid setting: data.min_face_size must be 0 (judge every face) or more pixels, got -1"],
    ),
    "dropout-out-of-range": (["--model.dropout=1.5"], ["model.dropout must be in [0, 1), got 1.5"]),
    # The CLI sets model.target_attrs from data.target_attr and data.subgroups from
    # model.subgroups: the message names the key the user set.
    "repeated-target": (
        ["--data.target_attr=[Male, Male]"],
        ["Invalid setting: data.target_attr names Male more than once"],
    ),
    "repeated-subgroup": (["--model.subgroups=[Young, Young]"], ["model.subgroups names Young"]),
    "no-target": (
        ["--data.target_attr=[]"], ["Invalid setting: data.target_attr names no attribute"]
    ),
    "unknown-pooling": (["--model.pooling=max"], ['"pooling"', "'gap', 'flatten'", "max"]),
    "negative-max-epochs": (["--trainer.max_epochs=-5"], ["trainer setting", "max_epochs", "-5"]),
    "missing-config-file": (["--config=nowhere.yaml"], ["nowhere.yaml", "does not exist"]),
    "resident-without-cache": (
        ["--data.cache=false", "--data.device_resident=true"],
        ["Invalid setting: data.device_resident keeps the decoded cache on the device: it needs "
         "cache true"],
    ),  # fmt: skip
    "unknown-compile-mode": (
        ["--model.compile=fastest"],
        ["model.compile must be one of false, true, default, reduce-overhead, max-autotune; "
         "got 'fastest'"],
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", SETTING_CASES, ids=str)
def test_invalid_setting(case: str, tiny_root: Path, logs: Path, capsys) -> None:
    flags, expected = SETTING_CASES[case]
    before = tree_digest(logs)
    message = run_expecting_error(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, logs), *SMALL, *SHORT, *flags], capsys
    )
    for fragment in expected:
        assert fragment in message, message
    assert_untouched(before, logs)
    assert sorted(p.name for p in (logs / "base").iterdir()) == ["version_0"]


def test_log_folder_under_a_file(tiny_root: Path, logs: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    before = tree_digest(logs)
    message = run_expecting_error(
        ["fit", "--config", BASE, *tiny_overrides(tiny_root, blocker / "logs"), *SMALL], capsys
    )
    assert "Cannot write to the log folder" in message and str(blocker / "logs") in message
    assert "--trainer.logger.init_args.save_dir" in message
    assert blocker.read_text() == "not a folder"
    assert_untouched(before, logs)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_log_folder(tiny_root: Path, tmp_path: Path, capsys) -> None:
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        message = run_expecting_error(
            ["fit", "--config", BASE, *tiny_overrides(tiny_root, read_only), *SMALL], capsys
        )
    finally:
        read_only.chmod(0o755)
    assert "Cannot write to the log folder" in message and "ermission denied" in message


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
        RecipeClassifier.load_from_checkpoint(path)  # torch's own default, kept by Lightning
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
    model = RecipeClassifier.load_from_checkpoint(last_ckpt(logs), weights_only=True)
    assert list(model.hparams["channels"]) == [8, 16, 16, 16]


def _strip_hyperparameters(source: Path, target: Path) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    for key in ("hyper_parameters", "hparams_name"):
        checkpoint.pop(key)
    torch.save(checkpoint, target)
    return target


def _with_class_path(class_path: str, source: Path, target: Path) -> Path:
    checkpoint = torch.load(source, weights_only=True)
    checkpoint["hyper_parameters"]["_class_path"] = class_path
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
        ["does not fit the network RecipeClassifier", "shape", "net.features.0.weight"],
    ),
    "other-model-class": (
        lambda ckpt, tmp: _with_class_path("other_project.models.ResNet", ckpt, tmp / "x.ckpt"),
        [],
        ["saved by another model ('other_project.models.ResNet')", "lit_celeba fit"],
    ),
    # Importing lit_celeba.__main__ would start the CLI: a class path is looked up, never imported.
    "class-path-that-would-import": (
        lambda ckpt, tmp: _with_class_path("lit_celeba.__main__.Model", ckpt, tmp / "y.ckpt"),
        [],
        ["names the model class 'lit_celeba.__main__.Model'", "Use a checkpoint written by"],
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


def test_interrupt_in_the_first_epoch_says_there_is_no_checkpoint_yet(capsys) -> None:
    trainer = SimpleNamespace(
        state=SimpleNamespace(fn="fit"),
        is_global_zero=True,
        checkpoint_callbacks=[],
        current_epoch=0,
    )
    InterruptNotice().on_exception(trainer, None, KeyboardInterrupt())
    err = capsys.readouterr().err
    assert "stopped by Ctrl-C in epoch 0" in err and "no checkpoint yet" in err
    InterruptNotice().on_exception(trainer, None, ValueError("a bug"))  # not an interruption
    assert capsys.readouterr().err == ""


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
# Determinism.


@pytest.fixture
def _restore_determinism(monkeypatch: pytest.MonkeyPatch):
    # trainer.deterministic switches torch to deterministic algorithms for the whole process.
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""))
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


@pytest.mark.usefixtures("_restore_determinism")
def test_same_seed_and_deterministic_give_identical_runs(tiny_root: Path, tmp_path: Path) -> None:
    def fit(seed: int, name: str) -> tuple[dict, dict]:
        logs = tmp_path / name
        flags = [*tiny_overrides(tiny_root, logs), *SMALL, *SHORT, "--trainer.max_epochs=2"]
        cli = cli_main(
            ["fit", "--config", BASE, *flags, "--trainer.deterministic=true"]
            + [f"--seed_everything={seed}"]
        )
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
        return metrics, torch.load(last_ckpt(logs), weights_only=True)["state_dict"]

    metrics_a, weights_a = fit(5, "a")
    metrics_b, weights_b = fit(5, "b")
    metrics_c, weights_c = fit(6, "c")
    assert {"train/loss", "val/loss", "val/acc"} <= metrics_a.keys()
    assert metrics_a == metrics_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    # Another seed gives another run, so the equality above is not trivial.
    assert not all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a)


# ---------------------------------------------------------------------------------------------
# Killed, terminated and interrupted runs, in real subprocesses.

RESUME_FLAGS = [*SMALL, *SHORT, "--trainer.max_epochs=3"]


def _cli_env() -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "PYTHONPATH": pythonpath}


def _fit_args(root: Path, logs: Path, *extra: str) -> list[str]:
    return ["fit", "--config", BASE, *tiny_overrides(root, logs), *RESUME_FLAGS, *extra]


def _run_fit(root: Path, logs: Path, *extra: str) -> subprocess.CompletedProcess:
    """A fit that nothing stops (the uninterrupted reference, a resume after a stop): in this
    process; the runs that are stopped are the real subprocesses."""
    done = cli_in_process(*_fit_args(root, logs, *extra), cwd=logs.parent, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _fit_until_signal(root: Path, logs: Path, signum: int) -> subprocess.CompletedProcess:
    """Start ``fit``; when it is in the middle of epoch 1 (epoch 0's checkpoint written), send
    ``signum`` and wait for the process to end."""
    ready = logs.parent / f"mid_epoch_{signum}"
    pause = (
        "--trainer.callbacks+={class_path: tests.interrupt_callbacks.PauseMidEpoch, "
        f"init_args: {{ready_file: '{ready}', epoch: 1, batch: 1}}}}"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "lit_celeba", *_fit_args(root, logs, pause)],
        cwd=logs.parent,
        env=_cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Python only turns SIGINT into KeyboardInterrupt if it was not ignored at start.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"fit never reached the middle of epoch 1:\n{err}")
        time.sleep(0.1)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run folder; a resumed run's repeated steps replace the
    killed run's (TensorBoard's own purge of orphaned data)."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    # hp_metric is the logger's -1 placeholder, written again at step 0 whenever fit starts.
    tags = [tag for tag in events.Tags()["scalars"] if tag != "hp_metric"]
    # A value logged again at the same step (LearningRateMonitor at the resumed epoch's start)
    # replaces the earlier one, as TensorBoard draws it.
    return {tag: sorted({e.step: e.value for e in events.Scalars(tag)}.items()) for tag in tags}


@pytest.fixture(scope="module")
def uninterrupted_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    logs = tmp_path_factory.mktemp("uninterrupted") / "logs"
    _run_fit(tiny_root, logs)
    return logs / "base" / "version_0"


def _assert_same_training(resumed: Path, reference: Path) -> None:
    ours = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    theirs = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    assert (ours["epoch"], ours["global_step"]) == (theirs["epoch"], theirs["global_step"])
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for name, tensor in theirs["state_dict"].items():
        assert torch.equal(ours["state_dict"][name], tensor), name  # bitwise
    for ours_state, theirs_state in zip(
        ours["optimizer_states"][0]["state"].values(),
        theirs["optimizer_states"][0]["state"].values(),
        strict=True,
    ):
        assert all(torch.equal(ours_state[k], theirs_state[k]) for k in theirs_state)
    scalars = _scalars(reference)
    assert {"train/loss", "val/loss", "val/acc"} <= scalars.keys()
    assert _scalars(resumed) == scalars  # every logged metric, every epoch, exactly


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(
    tiny_root: Path, tmp_path: Path, uninterrupted_run: Path
) -> None:
    started = time.monotonic()
    logs = tmp_path / "logs"
    killed = _fit_until_signal(tiny_root, logs, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    run_dir = logs / "base" / "version_0"
    assert torch.load(last_ckpt(logs), weights_only=True)["epoch"] == 0
    first_config = (run_dir / "config.yaml").read_bytes()

    resumed = _run_fit(tiny_root, logs, "--ckpt_path=last")
    print(f"kill + resume took {time.monotonic() - started:.1f} s")
    assert f"Resuming from {last_ckpt(logs)}" in resumed.stderr
    # The same run folder goes on; the first config stays, the resumed one is saved beside it.
    assert sorted(p.name for p in (logs / "base").iterdir()) == ["version_0"]
    assert (run_dir / "config.yaml").read_bytes() == first_config
    resume_config = yaml.safe_load((run_dir / "config_resume_1.yaml").read_text())
    assert resume_config["ckpt_path"] == str(last_ckpt(logs))
    _assert_same_training(run_dir, uninterrupted_run)


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_resumes(
    tiny_root: Path, tmp_path: Path, uninterrupted_run: Path
) -> None:
    logs = tmp_path / "logs"
    stopped = _fit_until_signal(tiny_root, logs, signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert "Training stopped by SIGTERM in epoch 1" in stopped.stderr
    assert f"--ckpt_path last to resume from {last_ckpt(logs)}" in stopped.stderr
    assert torch.load(last_ckpt(logs), weights_only=True)["epoch"] == 0
    assert not list(logs.rglob(".*.tmp"))

    _run_fit(tiny_root, logs, "--ckpt_path=last")
    _assert_same_training(logs / "base" / "version_0", uninterrupted_run)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_leaves_a_checkpoint(tiny_root: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    stopped = _fit_until_signal(tiny_root, logs, signal.SIGINT)
    assert stopped.returncode == 1, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert "Training stopped by Ctrl-C in epoch 1" in stopped.stderr
    assert f"--ckpt_path last to resume from {last_ckpt(logs)}" in stopped.stderr
    checkpoint = load_checkpoint(last_ckpt(logs))
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == 4
    assert list((logs / "base" / "version_0").glob("events.out.tfevents.*"))
    assert not list(logs.rglob(".*.tmp"))
