"""Checkpoints written before issue 33's redesign still load for ``test``, ``predict`` and
``export``, through the CLI (in the test's process: what a command does with the file, not its
process, is under test), and give the figures they gave when they were
made (tests/data/legacy/make_fixtures.py says how, and with which commit). A ResNet checkpoint of
that time, too large to keep here, is written by the last test in the old form and checked
against torchvision's own network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from tests.conftest import REPO, cli_in_process, tiny_overrides
from tests.data.legacy.make_fixtures import (
    export_inputs,
    legacy_faces,
    predicted_probabilities,
    printed_metrics,
)

LEGACY = REPO / "tests" / "data" / "legacy"
NAMES = sorted(p.stem for p in LEGACY.glob("*.ckpt"))
PROBABILITY_TOLERANCE = 1e-5
# The printed metrics are float32 values; a loss summed in another order may move its last bits.
METRIC_TOLERANCE = 1e-6


def expected(name: str) -> dict:
    return json.loads((LEGACY / f"{name}.json").read_text())


def test_the_three_fixtures_are_here_and_small() -> None:
    assert NAMES == ["all_attributes_thresholds", "blond_hair_group_dro", "tuned"]
    for name in NAMES:
        assert (LEGACY / f"{name}.ckpt").stat().st_size < 200_000, name
    assert sum(p.stat().st_size for p in LEGACY.rglob("*") if p.is_file()) < 600_000


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_test_gives_the_same_metrics(name: str, tiny_root: Path, tmp_path: Path) -> None:
    figures = expected(name)
    flags = tiny_overrides(tiny_root, tmp_path / "logs")
    ckpt = LEGACY / f"{name}.ckpt"
    result = cli_in_process("test", *flags, *figures["test_flags"], f"--ckpt_path={ckpt}",
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = printed_metrics(result.stdout)
    assert printed.keys() == figures["test"].keys()
    for metric, value in figures["test"].items():
        assert printed[metric] == pytest.approx(value, abs=METRIC_TOLERANCE), metric


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_predict_gives_the_same_probabilities(name: str, tiny_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "predictions.csv"
    result = cli_in_process(
        "predict",
        *tiny_overrides(tiny_root, tmp_path / "logs"),
        f"--ckpt_path={LEGACY / f'{name}.ckpt'}",
        f"--data.predict.path={legacy_faces(tiny_root, tmp_path / 'faces')}",
        f"--prediction.output={output}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    actual, wanted = predicted_probabilities(output), expected(name)["predict"]
    assert sorted(actual) == sorted(wanted) and len(wanted) == 4
    for photo, probabilities in wanted.items():
        assert actual[photo].keys() == probabilities.keys(), photo
        for column, value in probabilities.items():
            assert actual[photo][column] == pytest.approx(value, abs=PROBABILITY_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_export_gives_the_same_outputs(name: str, tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = cli_in_process("export", f"--ckpt_path={LEGACY / f'{name}.ckpt'}", f"--out={out}",
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    wanted = expected(name)["export"]
    info = json.loads((out / "model.json").read_text())
    calibration = ("temperature", "threshold")
    for key, value in wanted["model_json"].items():
        if key in calibration:
            assert info[key] == pytest.approx(value, abs=PROBABILITY_TOLERANCE), key
        else:
            assert info[key] == value, key
    program = torch.export.load(str(out / "model.pt2")).module()
    with torch.no_grad():
        faces = legacy_faces(tiny_root, tmp_path / "faces")
        probability, prediction = program(export_inputs(faces, info["input"]["shape"][-1]))
    assert torch.allclose(probability, torch.tensor(wanted["probability"]),
                          atol=PROBABILITY_TOLERANCE, rtol=0)  # fmt: skip
    assert prediction.tolist() == wanted["prediction"]


def write_old_resnet_checkpoint(path: Path) -> torch.nn.Module:
    """A checkpoint in the form ``ResNetClassifier`` wrote before the redesign (the class and its
    arguments flat in ``hyper_parameters``, as LightningCLI saved them; the network under
    ``net.``), holding a seeded torchvision ResNet-18 and a temperature of 1.5; returns that
    network."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=1).eval()
    hyper_parameters = {
        "_class_path": "lit_celeba.models.module.ResNetClassifier", "arch": "resnet18",
        "image_size": 64, "target_attrs": ["Male"], "channels_last": True, "compile": False,
        "label_smoothing": 0.0, "tta_flip": False, "ema_decay": None, "objective": "erm",
        "dro_eta": 0.01, "dro_adjust": 0.0, "temperature_scaling": True, "thresholds": "fixed",
        "pos_weight": False, "_instantiator": "pytorch_lightning.cli.instantiate_module",
    }  # fmt: skip
    data = {"root": "data/celeba", "target_attr": "Male", "image_size": 64, "batch_size": 256,
            "framing": "celeba", "photo": None, "subgroups": None,
            "_instantiator": "pytorch_lightning.cli.instantiate_module"}  # fmt: skip
    calibration = {"temperature": torch.tensor([1.5]), "threshold": torch.tensor([0.5]),
                   "rule": "fixed", "fitted_at_step": 10}  # fmt: skip
    torch.save({
        "epoch": 0, "global_step": 10, "pytorch-lightning_version": "2.6.6",
        "state_dict": {f"net.{key}": value for key, value in net.state_dict().items()},
        "hparams_name": "kwargs", "hyper_parameters": hyper_parameters,
        "datamodule_hparams_name": "kwargs", "datamodule_hyper_parameters": data,
        "calibration": calibration,
    }, path)  # fmt: skip
    return net


@pytest.mark.slow
def test_an_old_resnet_checkpoint_predicts_and_exports_its_network(
    tiny_root: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "resnet.ckpt"
    net = write_old_resnet_checkpoint(ckpt)
    faces = legacy_faces(tiny_root, tmp_path / "faces")
    images = export_inputs(faces, 64)
    with torch.no_grad():
        expected = torch.sigmoid(net(images) / 1.5)
    out = tmp_path / "export"
    result = cli_in_process("export", f"--ckpt_path={ckpt}", f"--out={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    program = torch.export.load(str(out / "model.pt2")).module()
    with torch.no_grad():
        probability, _ = program(images)
    assert torch.allclose(probability, expected, atol=PROBABILITY_TOLERANCE, rtol=0)
    output = tmp_path / "predictions.csv"
    flags = tiny_overrides(tiny_root, tmp_path / "logs")
    result = cli_in_process("predict", *flags, f"--ckpt_path={ckpt}",
                            f"--data.predict.path={faces}", f"--prediction.output={output}",
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    predicted = predicted_probabilities(output)
    photos = sorted(p.name for p in faces.glob("*.jpg"))
    assert sorted(predicted) == photos
    for photo, value in zip(photos, expected[:, 0].tolist(), strict=True):
        assert predicted[photo]["prob_Male"] == pytest.approx(value, abs=PROBABILITY_TOLERANCE)
