"""Distributed data parallel on CPU: two processes (gloo), as a user launches them.

``fit`` through Lightning's own launcher (``--trainer.strategy ddp --trainer.devices 2``), ``test``
through ``torchrun`` (the external launcher that multi-node runs use), ``predict`` through the
launcher again; then a single process checks the checkpoint, the logged metrics and the CSV.

The val and test subsets have 33 images on purpose: an odd number cannot split evenly over two
ranks, so Lightning's default sampler would repeat one image and the metrics would be over 34;
``CelebADataModule`` hands each rank a disjoint share instead (17 and 16 images, so in batches of
16 the ranks even run different numbers of batches: 2 and 1). The train subset (96) splits evenly,
so Lightning's training sampler repeats nothing either.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from lit_celeba.data.celeba import find_files, load_index
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.models.module import AttributeClassifier
from tests.conftest import CONFIGS, REPO, TINY_SIZES, cli_in_process, run_cli, tiny_overrides

EVAL_SIZE = 33  # odd on purpose, see the module docstring
BATCH = 16
DDP = ["--trainer.strategy=ddp", "--trainer.devices=2"]


def _flags(root: Path, logs: Path, probe: Path) -> list[str]:
    return [
        "--config",
        str(CONFIGS / "base.yaml"),
        *tiny_overrides(root, logs),
        "--data.subsets.order=file",  # the expected shares below are in file order
        f"--data.subsets.val={EVAL_SIZE}",
        f"--data.subsets.test={EVAL_SIZE}",
        f"--data.batch_size={BATCH}",
        "--trainer.callbacks+=tests.ddp_probe.ShardRecorder",
        f"--trainer.callbacks.out_dir={probe}",
    ]


def _torchrun(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m lit_celeba ARGS`` on this checkout."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "PYTHONPATH": pythonpath}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", "-m", "lit_celeba", *args]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _expected_names(root: Path, split: str, size: int) -> list[str]:
    index = load_index(root)
    return [index.image_names[i] for i in index.split_indices(split, size)]


def _expected_targets(root: Path, names: list[str]) -> list[int]:
    index = load_index(root)
    row = {name: i for i, name in enumerate(index.image_names)}
    column = index.attr_column("Male")
    return [int(index.attributes[row[name], column]) for name in names]


def _check_shards(probe: Path, stage: str, root: Path, split: str, size: int) -> list[int]:
    """Each rank saw its own images, none twice, all of them together; returns the share sizes."""
    shards = [json.loads((probe / f"{stage}-rank{r}.json").read_text()) for r in (0, 1)]
    assert [(s["rank"], s["world_size"]) for s in shards] == [(0, 2), (1, 2)]
    names = [s["names"] for s in shards]
    assert not set(names[0]) & set(names[1]), f"{stage}: ranks share images"
    assert sorted(names[0] + names[1]) == _expected_names(root, split, size)
    for shard in shards:  # the batches that reached the model are those images
        assert shard["targets"] == _expected_targets(root, shard["names"])
    return [len(n) for n in names]


def _single_process(ckpt: Path, root: Path, stage: str) -> tuple[float, float, list[float]]:
    """Accuracy, mean loss and probabilities of a subset in this one process, from JPEGs
    decoded on access (not the cache the CLI runs used). ``test`` divides the logits by the
    temperature stored in the checkpoint; a fit's own validation sees the plain logits."""
    model = AttributeClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    temperature = 1.0
    if stage == "test":
        temperature = torch.load(ckpt, map_location="cpu", weights_only=False)["calibration"][
            "temperature"
        ]
    data = CelebADataModule(root=str(root), subsets=Subsets(val=EVAL_SIZE, test=EVAL_SIZE),
                            num_workers=0, cache=False)  # fmt: skip
    data.setup("validate" if stage == "val" else "test")
    loader = data.val_dataloader() if stage == "val" else data.test_dataloader()
    probs, correct, loss = [], 0, 0.0
    with torch.no_grad():
        for batch in loader:
            images, targets = data.on_after_batch_transfer(batch, 0)  # the eval transform
            logits = model(images) / temperature
            loss += F.binary_cross_entropy_with_logits(logits, targets, reduction="sum").item()
            correct += int(((logits >= 0) == targets.bool()).sum())
            probs += torch.sigmoid(logits).reshape(-1).tolist()
    return correct / len(probs), loss / len(probs), probs


def _printed(output: str, name: str) -> float:
    match = re.search(rf"{re.escape(name)}\s+([0-9.]+)", output)
    assert match, f"{name} not printed:\n{output}"
    return float(match.group(1))


@pytest.mark.slow
def test_ddp_two_processes_fit_test_predict(tiny_root: Path, tmp_path: Path) -> None:
    logs, probe = tmp_path / "logs", tmp_path / "probe"
    flags = _flags(tiny_root, logs, probe)

    fit = run_cli("fit", *flags, *DDP, "--trainer.max_epochs=1", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    output = fit.stdout + fit.stderr
    assert "distributed_backend=gloo" in output and "Starting with 2 processes" in output
    # Both ranks set up the data; one built each cache, the other waited on its lock and read it.
    assert output.count("Decoding the train subset into the cache:   0%") == 1
    assert len(list((tmp_path / "cache").glob("celeba-*.npy"))) == 2
    assert _check_shards(probe, "train", tiny_root, "train", TINY_SIZES["train"]) == [48, 48]
    assert _check_shards(probe, "val", tiny_root, "valid", EVAL_SIZE) == [17, 16]

    # One run folder (rank 0 writes it); its checkpoint loads in this single process, and what was
    # logged is the metric over all 33 images, not rank 0's 17.
    run_dir = logs / "base" / "version_0"
    assert sorted(p.name for p in (logs / "base").iterdir()) == ["version_0"]
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    acc, loss, _ = _single_process(ckpt, tiny_root, "val")
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert events.Scalars("val/acc")[-1].value == pytest.approx(acc, abs=1e-6)
    assert events.Scalars("val/loss")[-1].value == pytest.approx(loss, rel=1e-5)
    # The dashboards' PR curve counts all 33 validation images too: at threshold 0 every
    # positive is a true and every negative a false positive.
    curve = tensor_util.make_ndarray(events.Tensors("val/pr_curve")[-1].tensor_proto)
    positives = sum(_expected_targets(tiny_root, _expected_names(tiny_root, "valid", EVAL_SIZE)))
    assert (curve[0, 0], curve[1, 0]) == (positives, EVAL_SIZE - positives)
    printed = re.search(r"Validation accuracy \(last epoch\): ([0-9.]+)", output)
    assert printed and float(printed.group(1)) == pytest.approx(acc, abs=1e-4)

    test = _torchrun("test", *flags, *DDP, f"--ckpt_path={ckpt}", cwd=tmp_path)
    assert test.returncode == 0, test.stderr
    assert _check_shards(probe, "test", tiny_root, "test", EVAL_SIZE) == [17, 16]
    acc, loss, probs = _single_process(ckpt, tiny_root, "test")
    assert _printed(test.stdout, "test/acc") == pytest.approx(acc, abs=1e-6)
    assert _printed(test.stdout, "test/loss") == pytest.approx(loss, rel=1e-5)

    # predict: each rank predicts its share, rank 0 writes one file with every image in order.
    predict = run_cli("predict", *flags, *DDP, f"--ckpt_path={ckpt}", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    written = sorted(logs.glob("base/version_*/predictions.csv"))
    assert len(written) == 1
    with open(written[0]) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == _expected_names(tiny_root, "test", EVAL_SIZE)
    assert [float(r["prob_Male"]) for r in rows] == pytest.approx(probs, abs=1e-5)

    # predict on a folder of photos (7 readable, 1 not): both ranks' rows in one file, in order.
    photos = tmp_path / "photos"
    photos.mkdir()
    image_dir = find_files(tiny_root).image_dir
    for name in _expected_names(tiny_root, "test", 7):
        (photos / name).write_bytes((image_dir / name).read_bytes())
    (photos / "zz_broken.jpg").write_bytes(b"not a JPEG")
    on_photos = run_cli(
        "predict",
        *flags,
        *DDP,
        f"--ckpt_path={ckpt}",
        f"--data.predict.path={photos}",
        "--data.batch_size=2",
        cwd=tmp_path,
    )
    assert on_photos.returncode == 0, on_photos.stderr
    assert "1 of 8 files could not be read" in on_photos.stdout + on_photos.stderr
    written = sorted(logs.glob("base/version_*/predictions.csv"), key=lambda p: p.stat().st_mtime)
    with open(written[-1]) as fh:
        photo_rows = list(csv.DictReader(fh))
    assert [Path(r["path"]).name for r in photo_rows] == sorted(p.name for p in photos.iterdir())
    assert [float(r["prob_Male"]) for r in photo_rows[:7]] == pytest.approx(probs[:7], abs=1e-5)
    assert photo_rows[7]["error"] and photo_rows[7]["prob_Male"] == ""


def test_a_command_that_ends_well_ends_the_process_group_it_ran_in(
    tiny_checkpoint: Path, tiny_root: Path, tmp_path: Path
) -> None:
    """A command that ends well destroys the process group before Python exits: left to
    interpreter finalization, gloo aborted 6 of 30 torchrun ranks on a busy 2-core machine. One
    that fails leaves it to the launcher: destroying it while another rank still waits in a
    collective can hang (NCCL; pytorch/torchtitan#1342 destroys it only on success too)."""
    store = tmp_path / "store"
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=0,
                                         world_size=1)  # fmt: skip
    try:
        failed = cli_in_process("test", f"--data.root={tmp_path / 'missing'}",
                                "--trainer.accelerator=cpu", cwd=tmp_path)  # fmt: skip
        assert failed.returncode == 2, failed.stdout + failed.stderr
        assert torch.distributed.is_initialized()
        done = cli_in_process("validate", "--config", str(CONFIGS / "base.yaml"),
                              *tiny_overrides(tiny_root, tmp_path / "logs"),
                              f"--ckpt_path={tiny_checkpoint}", "--trainer.limit_val_batches=1",
                              cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert not torch.distributed.is_initialized()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_a_ddp_run_refused_on_rank_0_ends_the_other_rank_in_one_line(tmp_path: Path) -> None:
    """Rank 0 refuses a data root that does not exist; rank 1, waiting in Lightning's barrier,
    loses its peer. Its end is one line after rank 0's message, not a gloo traceback printed
    after the command has returned (rank 1 outlives rank 0)."""
    done = run_cli("fit", "--config", str(CONFIGS / "base.yaml"),
                   *tiny_overrides(tmp_path / "missing", tmp_path / "logs"), *DDP,
                   cwd=tmp_path)  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert f"The data root {tmp_path / 'missing'} does not exist" in output
    assert "Traceback" not in output and "GLHF" not in output, output
    assert "rank 1 stopped: another rank of this run ended first" in output, output
