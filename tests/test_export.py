"""`python -m lit_celeba.export`: TorchScript and ONNX files that give the checkpoint's outputs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_celeba.data.celeba import find_files
from lit_celeba.data.photos import PhotoDataset, photo_loader
from lit_celeba.data.transforms import eval_transform
from lit_celeba.export import main as export_main
from lit_celeba.models.module import RecipeClassifier
from tests.conftest import REPO

HAVE_ONNX_EXPORT = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript"))


def run_export(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "lit_celeba.export", *args],
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
    assert "torchscript_vs_checkpoint: max |difference|" in result.stdout
    if HAVE_ONNX_EXPORT and importlib.util.find_spec("onnxruntime"):
        assert "onnxruntime_vs_pytorch: max |difference|" in result.stdout
        assert "(ok)" in result.stdout.split("onnxruntime_vs_pytorch")[1]
    return out


@pytest.fixture(scope="module")
def checkpoint_outputs(tiny_checkpoint: Path, tiny_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Real framed photos (a CelebA folder read as the user's photos), and what the checkpoint's
    ``predict_step`` says about them."""
    model = RecipeClassifier.load_from_checkpoint(tiny_checkpoint, map_location="cpu").eval()
    image_dir = find_files(tiny_root).image_dir
    dataset = PhotoDataset(sorted(image_dir.glob("*.jpg"))[:13], eval_transform(64))
    batch = next(iter(photo_loader(dataset, batch_size=13, num_workers=0)))
    with torch.no_grad():
        return batch.images, model.predict_step(batch, 0)


@pytest.mark.slow
def test_torchscript_matches_the_checkpoint(exported: Path, checkpoint_outputs) -> None:
    images, expected = checkpoint_outputs
    scripted = torch.jit.load(str(exported / "model.pt"), map_location="cpu")
    with torch.no_grad():
        actual = scripted(images)
    assert actual.shape == (13, 1)
    assert torch.allclose(actual, expected, atol=1e-6, rtol=0)
    assert 0.0 < float(expected.std())  # distinct photos, distinct probabilities


@pytest.mark.slow
def test_onnx_runtime_matches_the_checkpoint(exported: Path, checkpoint_outputs) -> None:
    if not HAVE_ONNX_EXPORT:
        pytest.skip("the [onnx] extra (onnx, onnxscript) is not installed")
    onnxruntime = pytest.importorskip("onnxruntime")
    images, expected = checkpoint_outputs
    session = onnxruntime.InferenceSession(
        str(exported / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["images"]
    # 13 images: not the batch size the model was exported with, so the batch axis is dynamic.
    (actual,) = session.run(["probability"], {"images": images.numpy()})
    assert actual.shape == (13, 1)
    assert torch.allclose(torch.from_numpy(actual), expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_model_json_documents_input_output_and_preprocessing(exported: Path) -> None:
    info = json.loads((exported / "model.json").read_text())
    assert info["input"] == {"name": "images", "shape": ["N", 3, 64, 64], "dtype": "float32"}
    assert info["output"]["name"] == "probability" and info["target_attr"] == "Male"
    assert info["model_class"] == "lit_celeba.models.module.RecipeClassifier"
    steps = " | ".join(info["preprocessing"])
    assert "width 178" in steps and "height 218" in steps and "rows 20..197" in steps
    assert "resize to 64x64" in steps
    assert info["files"] == (["model.pt", "model.onnx"] if HAVE_ONNX_EXPORT else ["model.pt"])
    assert all(d is None or d <= 1e-4 for d in info["max_abs_difference"].values())


def test_bad_arguments_are_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert export_main(["--ckpt_path", str(tmp_path / "none.ckpt"), "--out", str(tmp_path)]) == 2
    assert "error: --ckpt_path" in capsys.readouterr().err
    (tmp_path / "model.pt").write_bytes(b"an earlier export")
    ckpt = tmp_path / "some.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, ckpt)
    assert export_main(["--ckpt_path", str(ckpt), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--overwrite" in err
    assert (tmp_path / "model.pt").read_bytes() == b"an earlier export"
