"""`python -m lit_celeba export`: torch.export, TorchScript and ONNX files that give the
checkpoint's outputs, for one and three attributes, and one clear error for each bad input."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_celeba.data.celeba import find_files
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.photos import PhotoDataset, photo_loader
from lit_celeba.data.transforms import columns_read
from lit_celeba.models.module import AttributeClassifier
from tests.conftest import REPO, THREE_ATTRIBUTES, cli_in_process, run_expecting_error

HAVE_ONNX_EXPORT = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript"))


def run_export(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "lit_celeba", "export", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model"
    flags = ["--onnx"] if HAVE_ONNX_EXPORT else []
    result = run_export(f"--ckpt_path={tiny_checkpoint}", f"--out={out}", *flags, cwd=out.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = ["program", "torchscript"]
    if HAVE_ONNX_EXPORT and importlib.util.find_spec("onnxruntime"):
        kinds.append("onnx")
    for kind in kinds:
        line = next(x for x in result.stdout.splitlines() if x.startswith(f"{kind} vs predict:"))
        assert "0 decision(s) differ (ok)" in line, line
    assert f"Wrote {out / 'model.pt2'}, {out / 'model.pt'}" in result.stdout
    (out.parent / "stderr.txt").write_text(result.stderr)  # for the test of what it says
    return out


@pytest.fixture(scope="module")
def checkpoint_outputs(tiny_checkpoint: Path, tiny_root: Path) -> tuple[torch.Tensor, ...]:
    """Real framed photos (a CelebA folder read as the user's photos), and what the checkpoint's
    ``predict_step`` says about them (probabilities and decisions)."""
    model = AttributeClassifier.load_from_checkpoint(tiny_checkpoint, map_location="cpu").eval()
    image_dir = find_files(tiny_root).image_dir
    dataset = PhotoDataset(sorted(image_dir.glob("*.jpg"))[:13], columns_read(64))
    loaded = next(iter(photo_loader(dataset, batch_size=13, num_workers=0)))
    # As predict gets them: after the data module's batched eval transform.
    batch = CelebADataModule().on_after_batch_transfer(loaded, 0)
    with torch.no_grad():
        outputs = model.predict_step(batch, 0)
    return batch.images, outputs["probabilities"], outputs["predictions"]


@pytest.mark.slow
def test_torchscript_matches_the_checkpoint(exported: Path, checkpoint_outputs) -> None:
    images, expected, decisions = checkpoint_outputs
    scripted = torch.jit.load(str(exported / "model.pt"), map_location="cpu")
    with torch.no_grad():
        actual, predicted = scripted(images)
    assert actual.shape == (13, 1)
    assert torch.allclose(actual, expected, atol=1e-6, rtol=0)
    assert torch.equal(predicted, decisions)
    assert 0.0 < float(expected.std())  # distinct photos, distinct probabilities


@pytest.mark.slow
def test_torch_export_program_matches_the_checkpoint(exported: Path, checkpoint_outputs) -> None:
    images, expected, decisions = checkpoint_outputs
    program = torch.export.load(str(exported / "model.pt2")).module()
    with torch.no_grad():
        actual, predicted = program(images)  # 13 images: not the example's 4, a dynamic batch
    assert actual.shape == (13, 1)
    assert torch.allclose(actual, expected, atol=1e-5, rtol=0)
    assert torch.equal(predicted, decisions)


@pytest.mark.slow
def test_onnx_runtime_matches_the_checkpoint(exported: Path, checkpoint_outputs) -> None:
    if not HAVE_ONNX_EXPORT:
        pytest.skip("the [onnx] extra (onnx, onnxscript) is not installed")
    onnxruntime = pytest.importorskip("onnxruntime")
    images, expected, decisions = checkpoint_outputs
    session = onnxruntime.InferenceSession(
        str(exported / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["images"]
    # 13 images: not the batch size the model was exported with, so the batch axis is dynamic.
    actual, predicted = session.run(["probability", "prediction"], {"images": images.numpy()})
    assert actual.shape == (13, 1)
    assert torch.allclose(torch.from_numpy(actual), expected, atol=1e-5, rtol=0)
    assert torch.equal(torch.from_numpy(predicted), decisions)


@pytest.mark.slow
def test_model_json_documents_input_output_and_preprocessing(exported: Path) -> None:
    info = json.loads((exported / "model.json").read_text())
    assert info["input"] == {"name": "images", "shape": ["N", 3, 64, 64], "dtype": "float32"}
    assert set(info["outputs"]) == {"probability", "prediction"} and info["target_attr"] == "Male"
    assert info["model_class"] == "lit_celeba.models.module.AttributeClassifier"
    assert info["net"]["class_path"] == "lit_celeba.models.nets.RecipeCNN"
    steps = " | ".join(info["preprocessing"])
    assert "width 178" in steps and "height 218" in steps and "rows 20..197" in steps
    assert "resize to 64x64" in steps
    assert info["outputs"]["probability"]["shape"] == ["N", 1] and info["target_attrs"] == ["Male"]
    onnx = ["model.onnx"] if HAVE_ONNX_EXPORT else []
    assert info["files"] == ["model.pt2", "model.pt", *onnx]
    checks = [c for c in info["checks_against_predict"].values() if c is not None]
    assert checks and all(c["max_abs_difference"] <= 1e-5 for c in checks)
    assert all(c["decisions_differing"] == 0 for c in checks)
    assert len(info["temperature"]) == len(info["threshold"]) == 1


def test_bad_arguments_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = ["export", "--ckpt_path", str(tmp_path / "none.ckpt"), "--out", str(tmp_path)]
    assert "none.ckpt does not exist" in run_expecting_error(missing, capsys)
    (tmp_path / "model.pt").write_bytes(b"an earlier export")
    ckpt = tmp_path / "some.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, ckpt)
    err = run_expecting_error(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path)], capsys)
    assert "already exist" in err and "--overwrite" in err
    assert (tmp_path / "model.pt").read_bytes() == b"an earlier export"


@pytest.mark.slow
def test_three_attributes_export_three_columns_in_order(
    three_attribute_run: dict, tmp_path: Path
) -> None:
    # Before: model.json said output shape [N, 1] for a model that returns (N, 3).
    ckpt = three_attribute_run["checkpoint"]
    # In this process: the files it writes are the test (`exported` runs one of its own).
    result = cli_in_process("export", f"--ckpt_path={ckpt}", f"--out={tmp_path / 'model'}",
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["outputs"]["probability"]["shape"] == ["N", 3]
    assert info["target_attrs"] == THREE_ATTRIBUTES
    assert info["target_attr"] == THREE_ATTRIBUTES
    model = AttributeClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    images = torch.rand(7, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model.predict_step(images, 0)
        program = torch.export.load(str(tmp_path / "model" / "model.pt2")).module()
        scripted = torch.jit.load(str(tmp_path / "model" / "model.pt"), map_location="cpu")
        for actual, predicted in (program(images), scripted(images)):
            assert actual.shape == (7, 3)
            assert torch.allclose(actual, expected["probabilities"], atol=1e-5, rtol=0)
            assert torch.equal(predicted, expected["predictions"])


class _RunsCode:
    """Unpickling this calls os.system: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_checkpoint(case: str, good: Path, folder: Path) -> tuple[Path, str]:
    """A checkpoint (or --out) for each bad-input case, and the text its error must hold."""
    path = folder / f"{case}.ckpt"
    if case == "truncated-file":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "it is truncated, damaged or not a PyTorch file"
    if case == "pickle-that-runs-code":
        torch.save({"state_dict": {}, "payload": _RunsCode(folder / "ran")}, path)
        return path, "could run code from the file"
    checkpoint = torch.load(good, map_location="cpu", weights_only=True)
    if case == "empty-state-dict":
        checkpoint["state_dict"] = {}
        expected = "holds no weights (its state_dict is empty)"
    elif case == "unknown-hyperparameter":
        checkpoint["hyper_parameters"]["colour"] = "blue"
        expected = "hyperparameters that AttributeClassifier does not take: colour"
    elif case == "class-path-that-would-import":
        # Before, export imported this module (from the working folder): it ran its code.
        (folder / "evil_model.py").write_text(f"open({str(folder / 'ran')!r}, 'w')\n")
        checkpoint["hyper_parameters"]["_class_path"] = "evil_model.Model"
        expected = "was saved by another model ('evil_model.Model'), not by lit_celeba"
    else:
        return good, "Cannot write to --out"
    torch.save(checkpoint, path)
    return path, expected


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        "truncated-file",
        "pickle-that-runs-code",
        "empty-state-dict",
        "unknown-hyperparameter",
        "class-path-that-would-import",
        "out-under-a-regular-file",
    ],
)
def test_every_bad_input_is_one_clear_error(
    case: str, tiny_checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    ckpt, expected = _bad_checkpoint(case, tiny_checkpoint, tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "model" if case == "out-under-a-regular-file" else tmp_path / "out"
    args = (f"--ckpt_path={ckpt}", f"--out={out}")
    if case == "class-path-that-would-import":
        # In a process of its own, started in the folder that holds evil_model.py, as a user's
        # `python -m` puts that folder first on sys.path.
        result = run_export(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        message = lines[0]
    else:  # in this process: the same cli_main(), without a second start of torch (6 s each)
        monkeypatch.chdir(tmp_path)
        message = run_expecting_error(["export", *args], capsys)
    assert expected in message and "weights_only=False" not in message
    assert not (tmp_path / "ran").exists()  # no code from the file ran
    assert not out.exists()  # nothing written for a checkpoint that cannot be exported


def test_export_prints_no_warning_a_user_cannot_act_on(exported: Path) -> None:
    """Issue 32, item 19: torch.export.save's "No complete tensor found in the group!" and
    TorchScript's FutureWarning (in either of its wordings) are left out."""
    import re

    from lit_celeba.commands.export import TORCHSCRIPT_WARNING

    said = (exported.parent / "stderr.txt").read_text()
    assert "No complete tensor" not in said and "FutureWarning" not in said, said
    for text in ("`torch.jit.script` is deprecated. Please switch to `torch.compile`.",
                 "`torch.jit.script` is not supported in Python 3.14+ and may break."):
        assert re.match(TORCHSCRIPT_WARNING, text)  # as warnings' filters match it


def test_model_json_says_what_the_graph_does_and_how_to_get_predicts_outputs(
    exported: Path, tiny_checkpoint: Path, tiny_root: Path, tmp_path: Path
) -> None:
    """Issue 32, item 8: the outputs are (probability, prediction) at the checkpoint's own
    thresholds, the graph starts from an aligned face, and doing what model.json and the README
    say to a photo gives predict's very probabilities."""
    import csv

    import torch.nn.functional as F
    from PIL import Image

    from lit_celeba.cli import cli_main
    from lit_celeba.data.faces import FaceDetector, align
    from tests.conftest import CONFIGS, tiny_overrides, write_group_photo

    info = json.loads((exported / "model.json").read_text())
    assert "threshold" in info["outputs"]["prediction"]["meaning"]
    assert "lit_celeba.data.faces.align(photo, face.landmarks)" in info["alignment"]
    readme = (REPO / "README.md").read_text()
    assert "threshold at 0.5 for the label" not in readme
    assert "(probability, prediction)" in readme and "lit_celeba.data.faces.align" in readme
    photo = write_group_photo(tmp_path / "group.jpg")
    out = tmp_path / "p.csv"
    cli_main(["predict", "--config", str(CONFIGS / "base.yaml"),
              *tiny_overrides(tiny_root, tmp_path / "logs"), f"--ckpt_path={tiny_checkpoint}",
              f"--data.predict.path={photo}", f"--prediction.output={out}"])  # fmt: skip
    rows = list(csv.DictReader(out.open()))
    image = Image.open(photo).convert("RGB")
    faces = FaceDetector()(image)
    assert len(rows) == len(faces) == 2
    crops = []
    for face in faces:  # the steps of model.json, by hand
        aligned = torch.from_numpy(np.asarray(align(image, face.landmarks))).permute(2, 0, 1)
        square = aligned[:, 20:198, :].float() / 255
        crops.append(F.interpolate(square[None], size=(64, 64), mode="bilinear",
                                   align_corners=False, antialias=False)[0])  # fmt: skip
    program = torch.export.load(str(exported / "model.pt2")).module()
    probability, prediction = program(torch.stack(crops))
    for row, p, d in zip(rows, probability[:, 0].tolist(), prediction[:, 0].tolist(), strict=True):
        assert abs(float(row["prob_Male"]) - p) < 2e-6 and int(row["pred_Male"]) == d


# -- an export stopped midway ----------------------------------------------------------------------


def test_an_export_that_fails_midway_leaves_no_half_export(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    # Before: model.pt2 stayed, beside an earlier export's model.pt and model.json (or alone,
    # and the next export then wanted --overwrite); a killed export's files stayed too.
    from lit_celeba.base.errors import ExportError
    from lit_celeba.commands import export

    out = tmp_path / "exported"
    killed = out / f".model.json.export-{2**22 + 12345}-0123abcd"  # pid above the default pid_max
    killed.mkdir(parents=True)
    (killed / "model.pt2").write_bytes(b"half")

    def full_disk(predictor, path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(export, "export_torchscript", full_disk)
    with pytest.raises(ExportError, match="No space left on device"):
        export.export(tiny_checkpoint, out)
    assert os.listdir(out) == []
