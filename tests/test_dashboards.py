"""The TensorBoard dashboards in real runs: the configs switch them on; a fit logs its PR
curves, its augmentation preview and its reliability diagram (before and after the calibration);
three attributes with subgroups draw every dashboard; flip TTA's pictures count what val/acc
counts; and a real ``tensorboard`` server's view of a tiny ``fit`` + ``test`` compared with what
the runs wrote. The pictures themselves: tests/test_dashboards_pictures.py."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from lit_celeba.callbacks.dashboards import TensorBoardDashboards
from lit_celeba.callbacks.pictures import augmentation_preview
from lit_celeba.cli import cli_main
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.data.synthetic import ATTRIBUTE_NAMES
from lit_celeba.methods.colour import ColourChanges
from tests.conftest import CONFIGS, THREE_ATTRIBUTES, TINY_SIZES, recipe_model

FIT_SCALARS = {
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "train/loss_step",
    "train/acc_step",
    "lr-Adam",
}
TEST_SCALARS = {"test/loss", "test/acc"}
FIT_IMAGES = {"train/augmentations", "val/predictions", "val/confusion_matrix", "val/maps"}
TEST_IMAGES = {"test/predictions", "test/confusion_matrix", "test/maps"}


@pytest.mark.parametrize("config", ["base.yaml", "demo.yaml"])
def test_configs_switch_the_dashboards_on(config: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(CONFIGS / config), "--print_config"])
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    callbacks = [c["class_path"] for c in trainer["callbacks"]]
    assert "lit_celeba.callbacks.dashboards.TensorBoardDashboards" in callbacks
    assert "lit_celeba.callbacks.lr_monitor.LearningRateMonitor" in callbacks
    assert trainer["logger"]["init_args"]["default_hp_metric"] is False


# ---- what a fit logs -----------------------------------------------------------------------------


def _fit_with_dashboards(root: Path, log_dir: Path, target_attr: str | list[str], batch: int):
    """An in-process fit (1 epoch, 2 train and 2 val batches) with the dashboards; the events."""
    data = CelebADataModule(
        root=str(root), target_attr=target_attr, subsets=Subsets(train=32, val=16), image_size=32,
        batch_size=batch, num_workers=0,
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=2,
        num_sanity_val_steps=0,
        logger=pl.loggers.TensorBoardLogger(log_dir, name="run", default_hp_metric=False),
        callbacks=[TensorBoardDashboards(gallery_size=4, preview_images=0)],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(recipe_model(image_size=32, target_attrs=data.target_attrs), datamodule=data)
    return _events(log_dir / "run" / "version_0")


@pytest.mark.parametrize("target_attr", ["Smiling", ["Smiling"]], ids=["name", "list-of-one"])
def test_one_attribute_as_a_name_or_a_list_draws_the_same_dashboards(
    tiny_root: Path, tmp_path: Path, target_attr: str | list[str]
) -> None:
    # A list of one used to crash the confusion matrix (class_names(list)).
    events = _fit_with_dashboards(tiny_root, tmp_path, target_attr, batch=8)
    assert {"val/predictions", "val/confusion_matrix"} <= set(events.Tags()["images"])
    assert "val/pr_curve" in {t for t in events.Tags()["tensors"] if "pr_curve" in t}
    assert [t for t in events.Tags()["tensors"] if "pr_curve" in t] == ["val/pr_curve"]


def test_several_attributes_draw_a_pr_curve_each(tiny_root: Path, tmp_path: Path) -> None:
    attrs = list(ATTRIBUTE_NAMES)  # all 40 with batch 8, as configs/all_attributes.yaml
    events = _fit_with_dashboards(tiny_root, tmp_path, attrs, batch=8)
    assert {"val/predictions", "val/confusion_matrix"} <= set(events.Tags()["images"])
    curves = {t for t in events.Tags()["tensors"] if "pr_curve" in t}
    assert curves == {f"val/pr_curve/{a}" for a in attrs}
    # 16 validation images at threshold 0: every one predicted positive, for every attribute.
    data = CelebADataModule(root=str(tiny_root), target_attr=attrs, subsets=Subsets(val=16),
                            num_workers=0)  # fmt: skip
    data.setup("validate")
    for k in (0, 39):
        curve = tensor_util.make_ndarray(
            events.Tensors(f"val/pr_curve/{attrs[k]}")[-1].tensor_proto
        )
        assert curve[0, 0] == int(data.datasets["val"].targets[:, k].sum())  # true positives
        assert curve[0, 0] + curve[1, 0] == 16


def test_the_dashboards_log_the_data_modules_preview(tiny_root: Path, tmp_path: Path) -> None:
    data = CelebADataModule(root=str(tiny_root), subsets=Subsets(train=16, val=8), image_size=32,
                            batch_size=8, num_workers=0, cache_dir=str(tmp_path / "cache"),
                            colour=ColourChanges(brightness=0.5))  # fmt: skip
    dashboards = TensorBoardDashboards(gallery_size=2, preview_images=2, preview_augmentations=3,
                                       preview_seed=4)  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=1,
        num_sanity_val_steps=0, log_every_n_steps=1,
        logger=pl.loggers.TensorBoardLogger(tmp_path, name="run", default_hp_metric=False),
        callbacks=[dashboards], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(recipe_model(image_size=32), datamodule=data)
    logged = _events(tmp_path / "run" / "version_0").Images("train/augmentations")[-1]
    picture = np.asarray(Image.open(io.BytesIO(logged.encoded_image_string)).convert("RGB"))
    assert np.array_equal(picture, augmentation_preview(data, 2, 3, seed=4))


# ---- a real TensorBoard ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tensorboard_command() -> list[str]:
    script = Path(sys.executable).with_name("tensorboard")
    if script.exists():
        return [str(script)]
    found = shutil.which("tensorboard")
    return [found] if found else [sys.executable, "-m", "tensorboard.main"]


class TensorBoardAPI:
    def __init__(self, base: str) -> None:
        self.base = base

    def raw(self, route: str, **params: Any) -> bytes:
        url = f"{self.base}{route}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()

    def get(self, route: str, **params: Any) -> Any:
        return json.loads(self.raw(route, **params))

    def hparams(self, route: str, request: dict[str, Any]) -> Any:
        return self.get(f"/data/plugin/hparams/{route}", request=json.dumps(request))


@contextlib.contextmanager
def tensorboard_server(logdir: Path, expected_runs: set[str]) -> Iterator[TensorBoardAPI]:
    port = _free_port()
    command = [*_tensorboard_command(), "--logdir", str(logdir), "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    api = TensorBoardAPI(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"tensorboard exited with {server.returncode}:\n{server.stdout.read()}")
            with contextlib.suppress(OSError):
                if expected_runs <= set(api.get("/data/runs")):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"tensorboard did not list the runs {expected_runs} within 120 s")
            time.sleep(0.5)
        yield api
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _events(run_dir: Path) -> event_accumulator.EventAccumulator:
    guidance = {
        event_accumulator.SCALARS: 0,
        event_accumulator.IMAGES: 0,
        event_accumulator.TENSORS: 0,
    }
    events = event_accumulator.EventAccumulator(str(run_dir), size_guidance=guidance)
    events.Reload()
    return events


def _printed_metric(stdout: str, name: str) -> float:
    match = re.search(rf"{re.escape(name)}\s+([0-9.]+)", stdout)
    assert match, stdout
    return float(match.group(1))


def _last_value(metric_values: list[dict[str, Any]], tag: str) -> float:
    return next(m["value"] for m in metric_values if m["name"]["tag"] == tag)


@pytest.mark.slow
def test_tensorboard_serves_what_the_runs_logged(
    dashboard_run: dict[str, Any], tiny_root: Path
) -> None:
    logs, fit_dir, test_dir = (
        dashboard_run["logs"],
        dashboard_run["fit_dir"],
        dashboard_run["test_dir"],
    )
    fit_run, test_run = "demo/version_0", "demo/version_1"
    logged = {fit_run: _events(fit_dir), test_run: _events(test_dir)}

    with tensorboard_server(logs, {fit_run, test_run, f"{fit_run}/train", f"{fit_run}/val"}) as api:
        # Scalars: every tag, every (step, value) as the event files hold them.
        scalar_tags = api.get("/data/plugin/scalars/tags")
        assert FIT_SCALARS <= set(scalar_tags[fit_run])
        assert TEST_SCALARS <= set(scalar_tags[test_run])
        for run, events in logged.items():
            for tag in scalar_tags[run]:
                served = api.get("/data/plugin/scalars/scalars", run=run, tag=tag)
                # TensorBoard keeps the last point of a step that was logged twice (epoch, lr).
                stored = {e.step: e.value for e in events.Scalars(tag)}
                assert [step for _, step, _ in served] == sorted(stored), (run, tag)
                values = [value for _, _, value in served]
                assert values == pytest.approx([stored[s] for s in sorted(stored)]), (run, tag)
        val_acc = api.get("/data/plugin/scalars/scalars", run=fit_run, tag="val/acc")
        assert len(val_acc) == 2  # one point per epoch
        test_acc = api.get("/data/plugin/scalars/scalars", run=test_run, tag="test/acc")
        printed = _printed_metric(dashboard_run["test_stdout"], "test/acc")
        assert test_acc[-1][2] == pytest.approx(printed, abs=1e-6)

        # Shared train-vs-validation charts: the per-epoch values again in two sub-runs.
        for stage in ("train", "val"):
            for metric in ("loss", "acc"):
                served = api.get(
                    "/data/plugin/scalars/scalars",
                    run=f"{fit_run}/{stage}",
                    tag=f"train_vs_val/{metric}",
                )
                stored = logged[fit_run].Scalars(f"{stage}/{metric}")
                assert [step for _, step, _ in served] == [e.step for e in stored]
                assert [v for _, _, v in served] == pytest.approx([e.value for e in stored])
        layout = api.get("/data/plugin/custom_scalars/layout")
        charts = {
            c["title"]: c["multiline"]["tag"] for cat in layout["category"] for c in cat["chart"]
        }
        assert charts["loss per epoch (train vs validation)"] == ["^train_vs_val/loss$"]
        assert charts["accuracy per epoch (train vs validation)"] == ["^train_vs_val/acc$"]
        assert ["^train/loss_step$", "^train/acc_step$"] in charts.values()

        # Pictures: the tags, one gallery per validation epoch at val/acc's steps, and the bytes.
        image_tags = api.get("/data/plugin/images/tags")
        assert FIT_IMAGES <= set(image_tags[fit_run]) and TEST_IMAGES <= set(image_tags[test_run])
        galleries = api.get("/data/plugin/images/images", run=fit_run, tag="val/predictions")
        assert [g["step"] for g in galleries] == [step for _, step, _ in val_acc]
        for run, tag in [(fit_run, "val/predictions"), (test_run, "test/predictions"),
                         (fit_run, "val/maps"), (test_run, "test/maps")]:  # fmt: skip
            entry = api.get("/data/plugin/images/images", run=run, tag=tag)[-1]
            served = api.raw("/data/plugin/images/individualImage?" + entry["query"])
            stored = logged[run].Images(tag)[-1]
            assert served == stored.encoded_image_string
            assert Image.open(io.BytesIO(served)).size == (stored.width, stored.height)

        # PR curves: at threshold 0 every image is predicted positive.
        data = CelebADataModule(root=str(tiny_root), subsets=Subsets(val=TINY_SIZES["valid"]),
                                num_workers=0)  # fmt: skip
        data.setup("validate")
        val_targets = data.datasets["val"].targets
        assert "val/pr_curve" in api.get("/data/plugin/pr_curves/tags")[fit_run]
        curves = api.get("/data/plugin/pr_curves/pr_curves", run=fit_run, tag="val/pr_curve")
        last = curves[fit_run][-1]
        assert last["true_positives"][0] == int(val_targets.sum())
        assert last["true_positives"][0] + last["false_positives"][0] == len(val_targets)

        # HParams: every run is a session with its settings and its final metrics.
        experiment = api.hparams("experiment", {"experimentName": ""})
        hparam_names = {h["name"] for h in experiment["hparamInfos"]}
        assert {"stage", "model/net/dropout", "data/batch_size", "optimizer/lr",
                "data/colour/brightness"} <= hparam_names  # fmt: skip
        assert "data/num_workers" not in hparam_names
        metric_names = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert FIT_SCALARS | TEST_SCALARS <= metric_names
        statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        groups = api.hparams(
            "session_groups",
            {"allowedStatuses": statuses, "colParams": [], "startIndex": 0, "sliceSize": 100},
        )["sessionGroups"]
        by_name = {g["name"]: g for g in groups}
        assert {fit_run, test_run} <= set(by_name)
        fit_session = by_name[fit_run]
        assert fit_session["hparams"]["stage"] == "fit"
        assert fit_session["hparams"]["model/net/dropout"] == 0.0  # the demo: no dropout
        assert fit_session["hparams"]["model/net"] == "RecipeCNN"
        assert fit_session["hparams"]["optimizer/lr"] == pytest.approx(1e-3)
        assert fit_session["hparams"]["data/batch_size"] == 32
        assert fit_session["sessions"][0]["status"] == "STATUS_SUCCESS"
        for tag in ("train/loss", "train/acc", "val/loss", "val/acc"):
            final = logged[fit_run].Scalars(tag)[-1].value
            assert _last_value(fit_session["metricValues"], tag) == pytest.approx(final), tag
        test_session = by_name[test_run]
        assert test_session["hparams"]["stage"] == "test"
        assert _last_value(test_session["metricValues"], "test/acc") == pytest.approx(printed)


@pytest.mark.slow
def test_a_real_fit_with_three_attributes_and_subgroups_draws_every_dashboard(
    three_attribute_run: dict[str, Any],
) -> None:
    # Before: this fit ended at the first validation with Pillow's AttributeError.
    events = _events(three_attribute_run["run_dir"])
    maps = {f"val/maps/{a}" for a in THREE_ATTRIBUTES}  # one picture per attribute
    assert (FIT_IMAGES - {"val/maps"}) | maps <= set(events.Tags()["images"])
    curves = {t for t in events.Tags()["tensors"] if "pr_curve" in t}
    assert curves == {f"val/pr_curve/{a}" for a in THREE_ATTRIBUTES}
    assert {"val/acc/Male", "val/acc/Young", "val/acc/Smiling"} <= set(events.Tags()["scalars"])
    gallery = Image.open(io.BytesIO(events.Images("val/predictions")[-1].encoded_image_string))
    assert gallery.width > gallery.height  # 10 faces, 2 rows of 5, each shown once


class _LeftMinusRight(torch.nn.Module):
    """A logit that mostly changes sign with the mirror image, so that mirrored faces get other
    decisions than the two views' mean, whose probabilities stay clear of 0.5 (within 3 of 0.5:
    the mean of the two views' probabilities is above 0.53 for every face)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        half = images.shape[-1] // 2
        difference = images[..., :half].mean((1, 2, 3)) - images[..., half:].mean((1, 2, 3))
        return (3 * torch.tanh(50 * difference) + 0.5).unsqueeze(1)


def test_dashboards_show_the_numbers_val_acc_counts_under_flip_tta(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flip TTA runs the network twice per batch; the confusion matrix and the PR curve are the
    step's own decisions and probabilities (the mean of both views), not the last forward's."""
    import lit_celeba.callbacks.evaluation_pictures as pictures

    matrices: list[torch.Tensor] = []
    draw = pictures.confusion_matrix_picture
    monkeypatch.setattr(pictures, "confusion_matrix_picture",
                        lambda matrix, names: (matrices.append(matrix), draw(matrix, names))[1])
    model = recipe_model(image_size=32, tta_flip=True)
    model.net = _LeftMinusRight()
    data = CelebADataModule(root=str(tiny_root), subsets=Subsets(val=TINY_SIZES["valid"]),
                            image_size=32, batch_size=16, num_workers=0)  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", logger=pl.loggers.TensorBoardLogger(tmp_path, name="run"),
        callbacks=[TensorBoardDashboards(preview_images=0)], enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    (metrics,) = trainer.validate(model, datamodule=data, verbose=False)
    images = TINY_SIZES["valid"]
    (matrix,) = matrices
    assert matrix.sum() == images
    assert (matrix[0, 0] + matrix[1, 1]).item() / images == pytest.approx(metrics["val/acc"])
    events = _events(tmp_path / "run" / "version_0")
    curve = tensor_util.make_ndarray(events.Tensors("val/pr_curve")[-1].tensor_proto)
    # 127 thresholds from 0 to 1: index 63 is 0.5; rows TP, FP, TN, FN.
    assert (curve[0, 63] + curve[2, 63]) / images == pytest.approx(metrics["val/acc"])
    # The premise: the mirror image alone decides otherwise, so a hook on forward() would have
    # drawn other counts.
    data.setup("validate")
    batch = data.on_after_batch_transfer(next(iter(data.val_dataloader())), 0)
    mirrored = (model.net(batch[0].flip(-1)) > 0).long()
    averaged = model.predict_step(batch, 0)["predictions"]
    assert not torch.equal(mirrored, averaged)


# ---- the reliability diagram ---------------------------------------------------------------------


def _pixels_of(picture: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return (picture[..., :3] == np.array(colour)).all(-1)


def test_fits_reliability_shows_before_and_after_the_calibration(
    dashboard_run: dict[str, Any],
) -> None:
    """Item 21: during fit the steps' probabilities are uncalibrated; the picture adds the
    calibration this validation fitted (the README promises both curves)."""
    from lit_celeba.callbacks.pictures import RELIABILITY_COLOURS

    for run in ("fit_dir", "test_dir"):
        events = _events(dashboard_run[run])
        tag = "val/reliability" if run == "fit_dir" else "test/reliability"
        picture = np.asarray(Image.open(io.BytesIO(events.Images(tag)[-1].encoded_image_string)))
        before, after = (_pixels_of(picture, c).sum() for c in RELIABILITY_COLOURS)
        assert before > 50 and after > 50, (run, before, after)


def test_the_reliability_legend_is_clear_of_the_curves() -> None:
    """Item 21: a curve through the top-left corner, where the legend was drawn."""
    from lit_celeba.callbacks.pictures import RELIABILITY_COLOURS, reliability_picture

    targets = torch.ones(200, 1)
    low = torch.full((200, 1), 0.03)  # every bin point at (0.03, 1): the top-left corner
    picture = reliability_picture([("before calibration: ECE 0.970", low, targets),
                                   ("after calibration: ECE 0.500", low + 0.47, targets)])
    size, left, top = 360, 56, 40  # the axes' box, as reliability_picture draws it
    for colour in RELIABILITY_COLOURS:
        inside = _pixels_of(picture[top : top + size + 1, left : left + size + 1], colour)
        below = _pixels_of(picture[top + size + 30 :], colour)  # under the axis' title
        assert inside.sum() > 20 and below.sum() > 20, colour  # the curve; its legend entry
