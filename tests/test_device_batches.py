"""The device-resident data path against the memory-mapped DataLoader path, on the CPU (where
the "device" is the CPU): the same batches, the same augmentations, the same trained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lit_celeba.base.errors import SettingError
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.speed.device_batches import DeviceBatches, fits_on_device
from tests.conftest import TINY_SIZES, recipe_model


class BatchRecorder(pl.Callback):
    """Keeps every batch that reaches training_step (after the device-side transforms)."""

    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, ...]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(tuple(part.clone() for part in batch))


def _fit(root: Path, tmp_path: Path, resident: bool, **data) -> tuple[BatchRecorder, dict]:
    pl.seed_everything(7, verbose=False)
    dm = CelebADataModule(
        root=str(root), subsets=Subsets(train=TINY_SIZES["train"], val=16), batch_size=16,
        num_workers=0, cache="device" if resident else "memory",
        cache_dir=str(tmp_path / "cache"), **data,
    )  # fmt: skip
    target = data.get("target_attr", "Male")
    model = recipe_model(channels=(4, 8, 8, 8), target_attrs=[target],
                             subgroups=data.get("subgroups"))  # fmt: skip
    recorder = BatchRecorder()
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder],
        default_root_dir=tmp_path, deterministic=True,
    )  # fmt: skip
    trainer.fit(model, dm)
    return recorder, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("data", [{}, {"subgroups": ["Male"], "target_attr": "Young",
                                       "sampler": "group_balanced"}], ids=["shuffled", "balanced"])
def test_same_batches_augmentations_and_weights_as_the_dataloader(
    tiny_root: Path, tmp_path: Path, data: dict
) -> None:
    mapped, mapped_weights = _fit(tiny_root, tmp_path, resident=False, **data)
    resident, resident_weights = _fit(tiny_root, tmp_path, resident=True, **data)
    assert len(mapped.batches) == len(resident.batches) == 2 * TINY_SIZES["train"] // 16
    for ours, theirs in zip(resident.batches, mapped.batches, strict=True):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)
    # Two epochs draw two different orders (the sampler is read anew every epoch).
    first, second = resident.batches[0][0], resident.batches[len(resident.batches) // 2][0]
    assert not torch.equal(first, second)
    for name, value in mapped_weights.items():
        assert torch.equal(value, resident_weights[name]), name


def test_loaders_are_device_batches_only_when_asked(tiny_root: Path, tmp_path: Path) -> None:
    common = dict(root=str(tiny_root), subsets=Subsets(train=32, val=16), batch_size=10,
                  num_workers=0, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    dm = CelebADataModule(**common, cache="device")
    dm.setup("fit")
    train = dm.train_dataloader()
    assert isinstance(train, DeviceBatches) and len(train) == 4  # 32 images, batches of 10
    sizes = [len(batch[0]) for batch in train]
    assert sizes == [10, 10, 10, 2]
    assert isinstance(dm.val_dataloader(), DeviceBatches)
    # On the CPU the resident images are a view of the memory map, not a copy.
    assert train.tensors[0].data_ptr() == dm._on_device["train"][0].data_ptr()
    dm.teardown("fit")
    assert dm._on_device == {}
    # The default (true) keeps the DataLoader on the CPU, as do memory and false.
    for cache in (True, "memory", False):
        other = CelebADataModule(**common | {"cache": cache})
        other.setup("fit")
        assert isinstance(other.train_dataloader(), torch.utils.data.DataLoader), cache
    with pytest.raises(SettingError, match="cache must be true, memory, device or false"):
        CelebADataModule(**common, cache="gpu")


def test_the_cpu_always_fits_and_a_gpu_says_its_numbers() -> None:
    assert fits_on_device(10**12, torch.device("cpu")) == (True, "on the CPU")
    if torch.cuda.is_available():
        fits, numbers = fits_on_device(10**15, torch.device("cuda", 0))
        assert not fits and "GiB free of" in numbers


@pytest.mark.slow
def test_device_resident_resume_equals_an_uninterrupted_run(
    tiny_root: Path, tmp_path: Path
) -> None:
    """``--ckpt_path last`` after a SIGTERM mid-epoch, with cache device: the same weights and
    curves as a run that never stopped, as tests/test_interrupts.py checks for the DataLoader."""
    import signal
    import subprocess
    import sys
    import time

    from tests.test_interrupts import _assert_same_training, _cli_env, _fit_args, _run_fit

    resident = "--data.cache=device"
    reference = tmp_path / "reference" / "logs"
    reference.parent.mkdir()
    _run_fit(tiny_root, reference, resident)
    logs = tmp_path / "stopped" / "logs"
    logs.parent.mkdir()
    ready = logs.parent / "mid_epoch"
    pause = (
        "--trainer.callbacks+={class_path: tests.interrupt_callbacks.PauseMidEpoch, "
        f"init_args: {{ready_file: '{ready}', epoch: 1, batch: 1}}}}"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "lit_celeba", *_fit_args(tiny_root, logs, resident, pause)],
        cwd=logs.parent, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    _run_fit(tiny_root, logs, resident, "--ckpt_path=last")
    _assert_same_training(logs / "base" / "version_0", reference / "base" / "version_0")
