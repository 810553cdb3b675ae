"""Faults and bad input, third round (issue 27): a hostile user's cases, and our own, outside
``compare`` (whose are in tests/test_compare.py). Each test here failed on the code before its fix
(0019b7c) but where it says otherwise; docs/bad_input.md points at them.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

from lit_celeba.base.errors import CelebAError
from lit_celeba.callbacks.predictions import CSVPredictionWriter
from lit_celeba.checkpoints import run_folders
from lit_celeba.cli import cli_main
from lit_celeba.commands.events import epoch_series
from lit_celeba.data.copies import find_copy
from lit_celeba.data.synthetic import generate as synthetic
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.data.synthetic.forms import write_form
from tests.conftest import (
    CONFIGS,
    REPO,
    child_processes,
    run_expecting_error,
    survivors,
    tiny_overrides,
    tree_digest,
)

BASE = str(CONFIGS / "base.yaml")
SMALL = ["--model.channels=[8, 16, 16, 16]", "--data.image_size=32", "--data.batch_size=16"]
SHORT = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]


def _flags(root: Path, logs: Path) -> list[str]:
    return ["--config", BASE, *tiny_overrides(root, logs), *SMALL, *SHORT]


def _plain(root: Path, logs: Path) -> list[str]:
    """For conftest's tiny_checkpoint, trained at the configs' own image size."""
    return ["--config", BASE, *tiny_overrides(root, logs)]


def lock_folder(folder: Path) -> int | None:
    """An flock on ``folder`` as another process's would be (None if one is held already)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@pytest.fixture(scope="module")
def small_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The logs of one short in-process ``fit`` (small network): logs/base/version_0."""
    logs = tmp_path_factory.mktemp("hostile_run") / "logs"
    cli_main(["fit", *_flags(tiny_root, logs), "--trainer.max_epochs=1"])
    return logs


@pytest.fixture
def logs(small_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "logs"
    shutil.copytree(small_run, copy)
    return copy


# -- 1. predict never overwrites a file it did not write -------------------------------------------


@pytest.mark.parametrize("target", ["the-photo", "the-list", "the-checkpoint", "earlier"])
def test_predict_never_overwrites_a_file_it_did_not_write(
    target: str, tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    photo = tmp_path / "face.jpg"
    shutil.copy(tiny_root / "celeba" / "img_align_celeba" / "000001.jpg", photo)
    listing = tmp_path / "photos.txt"
    listing.write_text(f"{photo}\n")
    ckpt = tmp_path / "model.ckpt"
    shutil.copy(tiny_checkpoint, ckpt)
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("path,prob_Male,pred_Male,error\nx.jpg,0.5,1,\n")
    output = {"the-photo": photo, "the-list": listing, "the-checkpoint": ckpt,
              "earlier": earlier}[target]  # fmt: skip
    before = tree_digest(tmp_path)
    message = run_expecting_error(
        ["predict", *_plain(tmp_path, tmp_path / "logs"), f"--ckpt_path={ckpt}",
         f"--data.predict_path={listing if target != 'the-list' else photo}",
         f"--data.predict_output={output}"], capsys,
    )  # fmt: skip
    if target == "earlier":
        assert f"--data.predict_output {output} holds earlier predictions" in message
        assert "--data.predict_overwrite true" in message
    else:
        assert f"--data.predict_output {output} is an existing file that predict did not write" in (
            message
        )
        assert "never overwrites it" in message
    assert tree_digest(tmp_path) == before and not (tmp_path / "logs").exists()


def test_predict_replaces_earlier_predictions_when_asked(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("path,prob_Male,pred_Male,error\nx.jpg,0.5,1,\n")
    photo = tiny_root / "celeba" / "img_align_celeba" / "000001.jpg"
    cli_main(["predict", *_plain(tmp_path, tmp_path / "logs"), f"--ckpt_path={tiny_checkpoint}",
              f"--data.predict_path={photo}", f"--data.predict_output={earlier}",
              "--data.predict_overwrite=true"])  # fmt: skip
    rows = list(csv.DictReader(earlier.open()))
    assert [row["path"] for row in rows] == [str(photo)]


def test_predictions_output_under_a_file_is_one_clear_error(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    # Before: predicted everything, then a NotADirectoryError traceback.
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    photo = tiny_root / "celeba" / "img_align_celeba" / "000001.jpg"
    message = run_expecting_error(
        ["predict", *_plain(tmp_path, tmp_path / "logs"), f"--ckpt_path={tiny_checkpoint}",
         f"--data.predict_path={photo}", f"--data.predict_output={blocker}/out.csv"], capsys,
    )  # fmt: skip
    assert f"Cannot write the predictions to {blocker}/out.csv: {blocker} is a file" in message
    assert blocker.read_text() == "mine"


def test_predictions_stopped_midway_leave_the_earlier_file_whole(tmp_path: Path) -> None:
    # Before: the file was opened for writing at once, so a failure (or a kill) midway left the
    # header and some rows, and the earlier predictions gone.
    path = tmp_path / "predictions.csv"
    path.write_text("image,prob_Male,pred_Male,true_Male\n000001.jpg,0.9,1,1\n")
    before = path.read_bytes()
    datamodule = SimpleNamespace(predict_output=str(path), predict_overwrite=True)
    trainer = SimpleNamespace(datamodule=datamodule, is_global_zero=True, log_dir=str(tmp_path))

    def rows():
        yield ["000002.jpg", "0.1", 0, 0]
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        CSVPredictionWriter()._write_csv(trainer, ["image", "prob_Male", "pred_Male"], rows())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]  # no temporary left


# -- 3. the demo data's generation killed: no worker left, its partial folder removed -------------

# The generator in a process of its own, its pool forced on (the tests run on one core) and slow.
_SLOW_GENERATION = """
import os, sys, time
from lit_celeba.data.synthetic import generate as synthetic
os.sched_getaffinity = lambda pid: {0, 1, 2, 3}
render = synthetic._render_chunk
def slow(*args, **kwargs):
    time.sleep(2)
    return render(*args, **kwargs)
synthetic._render_chunk = slow
synthetic.generate_celeba(sys.argv[1], 800, 8, 8, progress=False)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="lists the workers in /proc")
def test_killed_generation_leaves_no_worker_and_is_cleaned_next_time(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    generator = subprocess.Popen([sys.executable, "-c", _SLOW_GENERATION, str(tmp_path)],
                                 env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    while len(child_processes(generator.pid)) < 2 or not list(tmp_path.glob(".celeba.partial-*")):
        assert generator.poll() is None and time.monotonic() < deadline, "no pool started"
        time.sleep(0.1)
    workers = child_processes(generator.pid)
    generator.send_signal(signal.SIGKILL)
    generator.wait()
    assert not survivors(workers), "pool workers outlived the killed generation"
    assert list(tmp_path.glob(".celeba.partial-*"))  # what a kill leaves ...
    generate_celeba(tmp_path, 8, 4, 4, progress=False)
    assert os.listdir(tmp_path) == ["celeba"]  # ... is removed by the next generation


def test_a_set_left_half_swapped_is_cleaned_next_time(tmp_path: Path) -> None:
    # A generation killed while it swapped an older set out left .celeba.old-PID-*: never removed.
    generate_celeba(tmp_path, 8, 4, 4, progress=False)
    leftover = tmp_path / ".celeba.old-999999999-0123abcd"
    shutil.copytree(tmp_path / "celeba", leftover)
    generate_celeba(tmp_path, 8, 4, 4, seed=1, progress=False)
    assert os.listdir(tmp_path) == ["celeba"]


def test_two_generations_at_once_make_the_set_once(tmp_path: Path, monkeypatch) -> None:
    # Two fits of the demo started together (compare --jobs 2 on a fresh root): the second
    # generated the set again and swapped it in while the first was reading it.
    calls, started = [], threading.Event()
    render = synthetic._render_all

    def slow_render(*args, **kwargs):
        calls.append(1)
        started.set()
        time.sleep(0.5)
        return render(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_render_all", slow_render)
    first = threading.Thread(target=generate_celeba, args=(tmp_path, 8, 4, 4),
                             kwargs={"progress": False})  # fmt: skip
    first.start()
    started.wait(10)
    generate_celeba(tmp_path, 8, 4, 4, progress=False)
    first.join()
    assert len(calls) == 1
    assert os.listdir(tmp_path) == ["celeba"]


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_generating_is_one_clear_error(tmp_path: Path, monkeypatch, capsys):
    # At module level: with two or more CPUs the generator's pool pickles the function by name
    # (a local one cannot be, and the pool then waited forever, 2026-12-05).
    monkeypatch.setattr(synthetic, "_render_chunk", _full_disk)
    root = tmp_path / "demo"
    message = run_expecting_error(
        ["fit", "--config", str(CONFIGS / "demo.yaml"), f"--data.root={root}",
         "--trainer.accelerator=cpu", f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
         f"--data.cache_dir={tmp_path / 'cache'}"], capsys,
    )  # fmt: skip
    assert f"cannot be written into {root}: No space left on device" in message
    assert os.listdir(root) == []  # no partial folder


# -- 19. the demo's generator never writes beside a real copy --------------------------------------


def _kaggle_copy(root: Path) -> None:
    generate_celeba(root, 8, 4, 4, layout="kaggle", progress=False)
    (root / synthetic.MARKER_NAME).unlink()  # as a real copy is: no marker of ours


@pytest.mark.parametrize(
    "copy", ["kaggle-unpacked", "official-at-root", "kaggle-archive", "official-zip", "drive",
             "tfds"],
)  # fmt: skip
def test_generation_refuses_a_root_that_holds_a_celeba_copy(copy: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    if copy == "kaggle-unpacked":
        _kaggle_copy(root)
    elif copy == "tfds":
        (root / "celeb_a" / "2.1.0").mkdir(parents=True)
        (root / "celeb_a" / "2.1.0" / "dataset_info.json").write_text("{}")
        (root / "celeb_a" / "2.1.0" / "celeb_a-train.tfrecord-00000-of-00001").write_bytes(b"")
    else:
        name = {"official-at-root": "list_attr_celeba.txt", "kaggle-archive": "archive.zip",
                "official-zip": "img_align_celeba.zip", "drive": "Anno/list_attr_celeba.txt"}[copy]
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text("a real file")  # fmt: skip
    before = tree_digest(root)
    with pytest.raises(FileExistsError, match=rf"{root} holds a CelebA copy that .* did not"):
        generate_celeba(root, 8, 4, 4, progress=False)
    assert tree_digest(root) == before and not (root / "celeba").exists()


def test_the_demo_on_a_root_with_a_real_copy_is_one_error_line(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    _kaggle_copy(root)
    before = tree_digest(root)
    message = run_expecting_error(
        ["fit", "--config", str(CONFIGS / "demo.yaml"), f"--data.root={root}",
         "--trainer.accelerator=cpu", f"--trainer.logger.init_args.save_dir={tmp_path / 'l'}"],
        capsys,
    )  # fmt: skip
    assert message.startswith(f"error: data.synthetic is true but {root} holds a CelebA copy")
    assert "--data.synthetic false" in message and message.count("\n") == 1
    assert tree_digest(root) == before


# -- 9. report: validation more than once an epoch ------------------------------------------------


def test_validation_twice_an_epoch_gives_two_points_at_two_places(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing import event_accumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    # val_check_interval 0.5 with 4 steps an epoch: validation at steps 1, 3, 5, 7.
    for step, epoch, value in [(1, 0, 0.6), (3, 0, 0.7), (5, 1, 0.75), (7, 1, 0.8)]:
        writer.add_scalar("epoch", epoch, step)
        writer.add_scalar("val/acc", value, step)
    writer.close()
    events = event_accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    assert epoch_series(events, "val/acc") == ([0.5, 1.0, 1.5, 2.0], pytest.approx([0.6, 0.7,
                                                                                 0.75, 0.8]))


# -- 10. --ckpt_path naming a folder or an export --------------------------------------------------


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
        ["test", *_flags(tiny_root, tmp_path / "l"), f"--ckpt_path={path}"], capsys
    )
    if kind == "folder":
        assert f"{path} is a folder, not a checkpoint file" in message
        assert str(path / "checkpoints" / "last.ckpt") in message
    else:
        assert f"{path} is an export (" in message and "not a checkpoint" in message
        assert "truncated" not in message


# -- 11. the official image archive given as the data root ----------------------------------------


def test_the_official_image_zip_as_the_root_is_named_as_such(tmp_path: Path) -> None:
    root = write_form(tmp_path / "zipped", "zip", 8, 4, 4, progress=False)
    with pytest.raises(CelebAError) as caught:
        find_copy(root / "img_align_celeba.zip")
    message = str(caught.value)
    assert "an archive of images only (CelebA's official img_align_celeba.zip" in message
    assert f"{root} has them: pass --data.root {root}" in message and "Kaggle's archive" in message
    assert zipfile.is_zipfile(root / "img_align_celeba.zip")


def test_the_image_folder_as_the_root_names_the_folder_above(tiny_root: Path) -> None:
    with pytest.raises(CelebAError, match=r"looks like CelebA's image folder.*--data.root "
                       rf"{tiny_root / 'celeba'}"):  # fmt: skip
        find_copy(tiny_root / "celeba" / "img_align_celeba")


# -- 12. precisions ------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["64-true", "bf16-true", "16-true"])
def test_every_true_precision_evaluates(
    precision: str, tiny_root: Path, small_run: Path, tmp_path: Path
) -> None:
    ckpt = small_run / "base" / "version_0" / "checkpoints" / "last.ckpt"
    cli = cli_main(["validate", *_flags(tiny_root, tmp_path / "l"), f"--ckpt_path={ckpt}",
                    f"--trainer.precision={precision}"])  # fmt: skip
    assert 0 <= float(cli.trainer.callback_metrics["val/acc"]) <= 1


def test_training_at_bf16_true_works_and_16_true_says_what_does(
    tiny_root: Path, tmp_path: Path, capsys
) -> None:
    cli = cli_main(["fit", *_flags(tiny_root, tmp_path / "a"), "--trainer.precision=bf16-true",
                    "--trainer.max_epochs=1"])  # fmt: skip
    assert not any(p.isnan().any() for p in cli.model.parameters())
    message = run_expecting_error(
        ["fit", *_flags(tiny_root, tmp_path / "b"), "--trainer.precision=16-true"], capsys
    )
    assert "16-true trains float16 weights, and the optimizer's eps 1e-07" in message
    assert "--optimizer.eps 1e-4" in message and "16-mixed" in message and "bf16-true" in message
    assert not (tmp_path / "b").exists()  # no empty version_N left behind


# -- 13. seeds out of range -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["-3", str(2**32)])
def test_a_seed_out_of_range_is_one_clear_error(seed: str, tiny_root: Path, tmp_path, capsys):
    message = run_expecting_error(
        ["fit", *_flags(tiny_root, tmp_path / "l"), f"--seed_everything={seed}"], capsys
    )
    assert f"--seed_everything {seed} is out of range" in message and "4294967295" in message
    assert not (tmp_path / "l").exists()


# -- 14 (and our own): one process writes a run folder ---------------------------------------------


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
            ["fit", *_flags(tiny_root, logs), "--trainer.max_epochs=1", "--ckpt_path=last"], capsys
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
    cli_main(["fit", *_flags(tiny_root, tmp_path / "logs"), "--trainer.max_epochs=1",
              "--trainer.callbacks+=tests.test_hostile.HoldsItsFolder"])  # fmt: skip
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
        ["fit", *_flags(tiny_root, logs), "--trainer.logger.init_args.version=version_0"], capsys
    )
    assert f"names the earlier run {logs / 'base' / 'version_0'}" in message
    assert tree_digest(logs) == before


def test_no_logger_in_a_folder_under_a_file_is_one_clear_error(tiny_root, tmp_path, capsys):
    # Before: a NotADirectoryError traceback.
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    message = run_expecting_error(
        ["fit", *_flags(tiny_root, tmp_path / "l"), "--trainer.logger=false",
         f"--trainer.default_root_dir={blocker / 'runs'}"], capsys,
    )  # fmt: skip
    assert f"Cannot write to the log folder {blocker / 'runs'}: Not a directory" in message
    assert "--trainer.default_root_dir" in message and blocker.read_text() == "mine"


# -- 15. --ckpt_path keywords that do not apply ----------------------------------------------------


@pytest.mark.parametrize("keyword", ["hpc", "registry"])
def test_ckpt_path_keywords_lightning_has_and_we_do_not(keyword, tiny_root, tmp_path, capsys):
    message = run_expecting_error(
        ["test", *_flags(tiny_root, tmp_path / "l"), f"--ckpt_path={keyword}"], capsys
    )
    assert f"--ckpt_path {keyword} is Lightning's keyword for" in message
    assert "lit_celeba does not use" in message


def test_help_offers_only_the_checkpoints_that_work(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["test", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    help_line = text[text.index("--ckpt_path CKPT_PATH the"):][:300]
    assert "'last'" in help_line and "best" not in help_line and "hpc" not in help_line


# -- 18. validate and test say where their run folder is, quoted for a shell -----------------------


@pytest.mark.parametrize("command", ["validate", "test"])
def test_evaluation_prints_its_run_folder_quoted(
    command: str, tiny_root: Path, small_run: Path, tmp_path: Path, capsys
) -> None:
    logs = tmp_path / "my logs"
    ckpt = small_run / "base" / "version_0" / "checkpoints" / "last.ckpt"
    cli_main([command, *_flags(tiny_root, logs), f"--ckpt_path={ckpt}"])
    run_dir = logs / "base" / "version_0"
    assert f"Logs: {run_dir}  (view with: tensorboard --logdir '{run_dir}')" in (
        capsys.readouterr().out
    )


# -- 8. a subgroup that is a target ---------------------------------------------------------------


def test_a_subgroup_that_is_the_target_is_refused(tiny_root, tmp_path, capsys) -> None:
    # Refused before this issue already (kept, with this test). Several targets may have one of
    # them as a subgroup (each target's accuracy within the other's values; conftest's
    # three_attribute_run).
    message = run_expecting_error(
        ["fit", *_flags(tiny_root, tmp_path / "l"), "--model.objective=group_dro",
         "--model.subgroups=[Male]"], capsys,
    )  # fmt: skip
    assert "model.subgroups must not hold the target Male" in message
    assert not (tmp_path / "l").exists()


# -- a full disk while a checkpoint is written (RLIMIT_FSIZE) --------------------------------------


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
    result = run_cli("fit", *_plain(tiny_root, logs), *SHORT, "--trainer.max_epochs=2",
                     "--trainer.callbacks+=tests.test_hostile.LimitFileSizeAfterFirstEpoch",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    message = [line for line in result.stderr.splitlines() if line.startswith("error: ")][-1]
    assert "the file reached the largest size this process may write" in message
    assert "the newest checkpoint there, last.ckpt, is intact" in message
    last = logs / "base" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the first epoch's, loadable
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith(".")) == []


def test_a_file_where_the_run_folders_go_is_one_clear_error(tiny_root, tmp_path, capsys) -> None:
    # logs/base a file: before, "error: [Errno 17] File exists: '…/base'", nothing more.
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "base").write_text("mine")
    message = run_expecting_error(["fit", *_flags(tiny_root, tmp_path / "logs")], capsys)
    assert f"Cannot write to the log folder {tmp_path / 'logs' / 'base'}: a file of that name" in (
        message
    )
    assert "--trainer.logger.init_args.save_dir" in message
    assert (tmp_path / "logs" / "base").read_text() == "mine"


# -- an export stopped midway ---------------------------------------------------------------------


def test_an_export_that_fails_midway_leaves_no_half_export(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    # Before: model.pt2 stayed, beside an earlier export's model.pt and model.json (or alone,
    # and the next export then wanted --overwrite); a killed export's files stayed too.
    from lit_celeba.base.errors import ExportError
    from lit_celeba.commands import export

    out = tmp_path / "exported"
    killed = out / f".export-{2**22 + 12345}-0123abcd"  # a pid above Linux's default pid_max
    killed.mkdir(parents=True)
    (killed / "model.pt2").write_bytes(b"half")

    def full_disk(predictor, path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(export, "export_torchscript", full_disk)
    with pytest.raises(ExportError, match="No space left on device"):
        export.export(tiny_checkpoint, out)
    assert os.listdir(out) == []
