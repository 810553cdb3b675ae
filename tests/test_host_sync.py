"""No host synchronisation while training: nothing between two training steps reads a value
back from the device, so a GPU never idles waiting for Python.

On the CPU, ``tests/sync_probe.py`` records every such read (``.item()``, ``bool(tensor)``,
``.tolist()``, data-dependent shapes) during real CLI runs (in this process: the probe watches
the training steps, not a process); on a GPU,
``lit_celeba.callbacks.host_sync.NoHostSync`` makes any sync an error with PyTorch's own
``torch.cuda.set_sync_debug_mode``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_celeba.callbacks.host_sync import NoHostSync
from lit_celeba.cli import cli_main
from tests.conftest import CONFIGS, cli_in_process, tiny_overrides
from tests.sync_probe import short_path

# Reads of tensors that live on the host whatever the accelerator: Adam's step counts (on the CPU
# unless `capturable` or `fused`) and the DataLoader's base seed from torch's CPU generator.
HOST_TENSOR_READS = ("torch/optim/optimizer.py", "torch/utils/data/dataloader.py")

# base.yaml's own path runs inside tuned.yaml's (which adds batch norm, EMA, TTA, a schedule):
# the recipe alone is not run again here.
SETTINGS = {
    "group_dro_resident": [
        "--config", str(CONFIGS / "base.yaml"), "--config", str(CONFIGS / "blond_hair.yaml"),
        "--data.cache=device", "--model.label_smoothing=0.1",
    ],
    "40_attributes": ["--config", str(CONFIGS / "base.yaml"), "--config",
                      str(CONFIGS / "all_attributes.yaml")],
    "fast": ["--config", str(CONFIGS / "fast.yaml")],
    "tuned": ["--config", str(CONFIGS / "base.yaml"), "--config", str(CONFIGS / "tuned.yaml")],
}  # fmt: skip


@pytest.mark.parametrize("name", list(SETTINGS))
def test_training_reads_nothing_back_from_the_device(
    name: str, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "seen.json"
    monkeypatch.setenv("HOST_READ_PROBE_OUT", str(out))
    result = cli_in_process(
        "fit", *SETTINGS[name], *tiny_overrides(tiny_root, tmp_path / "logs"),
        "--trainer.max_epochs=2", "--trainer.log_every_n_steps=1", "--data.batch_size=16",
        "--trainer.enable_progress_bar=true", "--trainer.callbacks+=tests.sync_probe.HostReadProbe",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["steps"] >= 2 * 96 // 16 - 1  # the probe saw the training steps
    syncs = {where: n for where, n in report["seen"].items()
             if not any(part in where for part in HOST_TENSOR_READS)}  # fmt: skip
    assert syncs == {}, f"reads of device values while training: {syncs}"


def test_the_probe_sees_a_read(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    """The probe itself: a callback that calls .item() on the loss every step is caught."""
    out = tmp_path / "seen.json"
    monkeypatch.setenv("HOST_READ_PROBE_OUT", str(out))
    result = cli_in_process(
        "fit", "--config", str(CONFIGS / "base.yaml"),
        *tiny_overrides(tiny_root, tmp_path / "logs"), "--trainer.max_epochs=1",
        "--trainer.callbacks+=tests.sync_probe.ReadsTheLoss",
        "--trainer.callbacks+=tests.sync_probe.HostReadProbe", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(out.read_text())["seen"]
    assert any(where.startswith("item at tests/sync_probe.py") or "ReadsTheLoss" in where
               for where in seen), seen  # fmt: skip


def test_the_probe_names_places_in_a_checkout_of_any_name(tmp_path: Path) -> None:
    """A clone in a folder named lit_celeba (the natural name): its own files are named from the
    checkout, the package's as lit_celeba/..., and installed packages from their folder on."""
    checkout = tmp_path / "lit_celeba"
    assert short_path(str(checkout / "tests/sync_probe.py"), checkout) == "tests/sync_probe.py"
    assert short_path(str(checkout / "lit_celeba/models/module.py"), checkout) == (
        "lit_celeba/models/module.py"
    )
    installed = "/venv/lib/python3.11/site-packages/torch/optim/adam.py"
    assert short_path(installed, checkout) == "torch/optim/adam.py"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (set_sync_debug_mode)")
@pytest.mark.parametrize("name", list(SETTINGS))
def test_no_host_sync_on_the_gpu(name: str, tiny_root: Path, tmp_path: Path) -> None:
    overrides = [o for o in tiny_overrides(tiny_root, tmp_path / "logs")
                 if not o.startswith("--trainer.accelerator")]  # fmt: skip
    cli = cli_main([
        "fit", *SETTINGS[name], *overrides, "--trainer.accelerator=gpu", "--trainer.max_epochs=2",
        "--trainer.log_every_n_steps=1", "--data.batch_size=16",
        "--trainer.callbacks+=lit_celeba.callbacks.host_sync.NoHostSync",
    ])  # fmt: skip
    probe = next(c for c in cli.trainer.callbacks if isinstance(c, NoHostSync))
    assert probe.checked_steps >= 2 * 96 // 16 - 3  # every step after the first two, in error mode
