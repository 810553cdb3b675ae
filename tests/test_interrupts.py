"""Runs are reproducible, and a run killed (SIGKILL), terminated (SIGTERM) or interrupted
(Ctrl-C) resumes with ``--ckpt_path last`` into exactly the run that never stopped: the same
weights, optimizer state and logged curves, bitwise. The stopped runs are real subprocesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_celeba.callbacks.resume import InterruptNotice
from lit_celeba.checkpoints.load import load_checkpoint
from lit_celeba.cli import cli_main
from tests.conftest import (
    BASE,
    REPO,
    SHORT,
    SMALL,
    cli_in_process,
    last_ckpt,
    tiny_overrides,
)

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


# ---------------------------------------------------------------------------------------------
# The notice of an interruption before the first checkpoint.


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
