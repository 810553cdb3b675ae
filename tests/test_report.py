"""``report``: a run's TensorBoard logs as PNG files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from torch.utils.tensorboard import SummaryWriter

from lit_celeba.base.errors import ReportError
from lit_celeba.cli import cli_main
from lit_celeba.commands.events import epoch_series, load_run
from lit_celeba.commands.report import curves_figure, picture_file_name, write_report
from tests.conftest import cli_in_process, run_cli

CURVES_PIXELS = (1200, 400)  # the post's figsize (12, 4) at 100 dpi


def _png(path: Path) -> Image.Image:
    assert path.is_file() and path.stat().st_size > 0, path
    image = Image.open(path)
    assert image.format == "PNG"
    return image


def _not_blank(image: Image.Image) -> bool:
    return len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 20


def _fake_run(run_dir: Path) -> dict[str, list[float]]:
    """Three epochs logged the way Lightning does (``epoch`` beside every metric), one picture."""
    curves = {
        "train/loss": [0.6, 0.4, 0.3],
        "val/loss": [0.5, 0.45, 0.35],
        "train/acc": [0.7, 0.8, 0.85],
        "val/acc": [0.75, 0.8, 0.9],
    }
    writer = SummaryWriter(str(run_dir))
    for epoch in range(3):
        step = 10 * epoch + 9
        for tag, values in curves.items():
            writer.add_scalar(tag, values[epoch], step)
            writer.add_scalar("epoch", epoch, step)
        writer.add_scalar("train/loss_step", 1.0, step - 5)  # not a per-epoch curve
    picture = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    writer.add_image("val/predictions", picture, 29, dataformats="HWC")
    writer.close()
    return curves


def test_report_of_a_logged_run(tmp_path: Path) -> None:
    curves = _fake_run(tmp_path / "run")
    written = write_report(tmp_path / "run", tmp_path / "out")
    assert {p.name for p in written} == {"curves.png", "val_predictions.png"}
    assert _png(tmp_path / "out" / "curves.png").size == CURVES_PIXELS
    assert _png(tmp_path / "out" / "val_predictions.png").size == (60, 40)

    figure = curves_figure(load_run(tmp_path / "run"))
    loss_axes, acc_axes = figure.axes
    for axes, metric in ((loss_axes, "loss"), (acc_axes, "acc")):
        train, val = axes.get_lines()
        assert list(train.get_xdata()) == [1, 2, 3]
        assert list(train.get_ydata()) == pytest.approx(curves[f"train/{metric}"])
        assert list(val.get_ydata()) == pytest.approx(curves[f"val/{metric}"])
    assert loss_axes.get_xlabel() == "Epoch" and acc_axes.get_ylabel() == "Accuracy"


def test_report_of_a_folder_without_events(tmp_path: Path, capsys) -> None:
    _fake_run(tmp_path / "logs" / "demo" / "version_0")
    with pytest.raises(ReportError, match="runs below it: .*version_0"):
        write_report(tmp_path / "logs")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["report", str(tmp_path / "logs")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No TensorBoard event files") and "Traceback" not in err


@pytest.mark.slow
def test_report_command_on_a_real_fit_and_test(dashboard_run: dict[str, Any]) -> None:
    fit_dir, test_dir = dashboard_run["fit_dir"], dashboard_run["test_dir"]
    # In this process: the pictures it writes are the test, not a process of its own.
    report = cli_in_process("report", str(fit_dir), cwd=dashboard_run["cwd"])
    assert report.returncode == 0, report.stderr
    events = event_accumulator.EventAccumulator(str(fit_dir), size_guidance={"images": 0})
    events.Reload()

    curves = _png(fit_dir / "curves.png")
    assert curves.size == CURVES_PIXELS and _not_blank(curves)
    for name, tag in [
        ("train_augmentations.png", "train/augmentations"),
        ("val_predictions.png", "val/predictions"),
        ("val_confusion_matrix.png", "val/confusion_matrix"),
    ]:
        assert f"Wrote {fit_dir / name}" in report.stdout
        image = _png(fit_dir / name)
        logged = events.Images(tag)[-1]
        assert image.size == (logged.width, logged.height) and _not_blank(image)
        assert Image.open(io.BytesIO(logged.encoded_image_string)).tobytes() == image.tobytes()
    gallery = _png(fit_dir / "val_predictions.png")
    assert gallery.width > gallery.height  # 2 rows of 5 faces
    augmentations = _png(fit_dir / "train_augmentations.png")
    assert augmentations.width > 2 * augmentations.height  # 2 rows of 5 augmentations
    maps, val_maps = _png(fit_dir / "maps.png"), _png(fit_dir / "val_maps.png")
    assert maps.width > val_maps.width and maps.height > val_maps.height  # the one attribute's
    assert maps.crop((0, 0, *val_maps.size)).tobytes() == val_maps.convert("RGB").tobytes()

    report = cli_in_process("report", str(test_dir), cwd=dashboard_run["cwd"])
    assert report.returncode == 0, report.stderr
    assert _not_blank(_png(test_dir / "test_predictions.png"))
    assert not (test_dir / "curves.png").exists()  # a test run has no per-epoch curves


def test_picture_file_names_stay_one_valid_file() -> None:
    assert picture_file_name("val/confusion_matrix") == "val_confusion_matrix.png"
    assert picture_file_name("val/predictions/5_o_Clock_Shadow") == (
        "val_predictions_5_o_Clock_Shadow.png"
    )
    assert picture_file_name("../a b:c") == "_a_b_c.png"  # no hidden file, no folder


def test_report_out_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    # Before: a raw NotADirectoryError traceback. A path under a regular file, not a read-only
    # folder: the tests run as root, who may write anywhere.
    _fake_run(tmp_path / "run")
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "report"
    report = run_cli("report", str(tmp_path / "run"), "--out", str(out), cwd=tmp_path)
    assert report.returncode == 2, report.stdout + report.stderr
    lines = report.stderr.strip().splitlines()
    assert len(lines) == 1, report.stderr
    assert lines[0].startswith(f"error: Cannot write the report into {out}")
    assert "Not a directory" in lines[0] and "--out" in lines[0]


def test_report_on_a_run_still_being_written_says_so(
    dashboard_run: dict[str, Any], tmp_path: Path, capsys
) -> None:
    """Issue 32, item 14: the run folder is held (its lock) by the command that writes it."""
    import os

    from lit_celeba.base.processes import FolderLock
    from lit_celeba.commands.report import main

    lock = FolderLock(dashboard_run["fit_dir"])
    assert lock.acquire()
    try:
        main([str(dashboard_run["fit_dir"]), "--out", str(tmp_path / "while")])
    finally:
        lock.release()
    said = capsys.readouterr().out
    assert f"is still being written by process {os.getpid()}" in said
    main([str(dashboard_run["fit_dir"]), "--out", str(tmp_path / "after")])
    assert "still being written" not in capsys.readouterr().out


def test_the_maps_page_of_40_attributes_is_a_grid(tmp_path: Path) -> None:
    """Issue 32, item 9: 40 pictures one under the other made a page of 136x16,800 pixels."""
    from types import SimpleNamespace

    from lit_celeba.commands.maps_page import write_maps_page

    def png(seed: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (136, 420), (seed, 0, 0)).save(buffer, format="PNG")
        return buffer.getvalue()

    tags = [f"val/maps/attribute_{k}" for k in range(40)]
    pictures = {tag: [SimpleNamespace(encoded_image_string=png(k))] for k, tag in enumerate(tags)}
    events = SimpleNamespace(Tags=lambda: {"images": tags}, Images=pictures.__getitem__)
    page = Image.open(write_maps_page(events, tmp_path))
    assert 0.5 <= page.width / page.height <= 2, page.size
    assert page.width * page.height >= 40 * 136 * 420  # every picture on it


# -- validation more than once an epoch ------------------------------------------------------------


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
