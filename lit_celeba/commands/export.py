"""Export a trained checkpoint for use without Lightning: a torch.export program, TorchScript, and
ONNX on request.

    python -m lit_celeba export --ckpt_path logs/base/version_0/checkpoints/last.ckpt \\
        --out exported [--onnx]

(``python -m lit_celeba.export ...``, the form documented before, is the same command.)

writes into ``--out``:

- ``model.pt2``: a ``torch.export`` program (``torch.export.load(path).module()``), PyTorch's
  successor to TorchScript, with a dynamic batch size;
- ``model.pt``: TorchScript (``torch.jit.load``), which PyTorch marks deprecated; kept while
  it costs nothing, for code that loads it today;
- ``model.onnx`` with ``--onnx`` (needs the ``[onnx]`` extra), for ONNX Runtime and others;
- ``model.json``: the input size, the attributes in output order (``target_attrs``), the
  preprocessing and the checks' results.

The models take ``images``, float32 of shape (N, 3, S, S) with S the checkpoint's image size
(64 for the recipe), RGB in [0, 1], and return ``(probability, prediction)``, each (N, K):
column k is ``target_attrs[k]``'s calibrated probability and its 0/1 decision at the
attribute's threshold, exactly as ``predict`` gives them (flip TTA, the temperatures, biases and
thresholds included: :class:`~lit_celeba.commands.predictor.Predictor`); K = 1 for the recipe. The
graph starts from a face in CelebA's aligned framing: ``predict`` first finds each face in a
photo and warps it there (:mod:`lit_celeba.data.faces`, ``model.json``'s ``alignment``), which
the export leaves out. From such a 178x218 face, as ``predict`` does it (see
:mod:`lit_celeba.data.photos` and :mod:`lit_celeba.data.transforms`): 8-bit RGB, upright;
crop rows 20..197 (a 178x178 square); scale to [0, 1]; resize to SxS bilinearly with
half-pixel centres and no antialiasing (``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False, antialias=False)``, ``tf.image.resize``'s default). A photo framed whole
(``--data.predict.align never``) is first resized to width 178 and padded or cropped to height 218.

The export then checks that the torch.export program, the TorchScript model and ONNX Runtime
(when installed) give ``predict``'s probabilities on the same inputs to within 1e-5 and the same
decisions, and exits with status 1 if they do not. The checkpoint is read as every command reads it
(:mod:`lit_celeba.checkpoints.load`: tensors and plain values only, lit_celeba's own model
classes only, never an import of the class path it names); a checkpoint or ``--out`` it cannot use
raises, and the CLI ends with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lit_celeba.base.errors import ExportError
from lit_celeba.base.files import building_folder, remove_abandoned_folders
from lit_celeba.checkpoints.load import load, rebuild
from lit_celeba.commands import PROG
from lit_celeba.commands.predictor import Predictor
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.paths import writing_into

# The issue asks for TorchScript, which torch >= 2.10 marks deprecated on every call ("is
# deprecated", or on Python 3.14 "is not supported in Python 3.14+ and may break"); the warning
# is about torch's roadmap, nothing a user of this command can act on, and the export checks
# the TorchScript file against predict itself.
TORCHSCRIPT_WARNING = r"`torch\.jit\.\w+` is (deprecated|not supported)"
warnings.filterwarnings("ignore", message=TORCHSCRIPT_WARNING, category=FutureWarning)

TOLERANCE = 1e-5
OUTPUTS = {
    "probability": "calibrated probability: column k is target_attrs[k]'s, flip TTA included",
    "prediction": "0/1 decision: probability above the attribute's threshold ('threshold', "
    "0.5 unless the checkpoint chose them per attribute)",
}
FILES = {"program": "model.pt2", "torchscript": "model.pt", "onnx": "model.onnx"}
INFO_FILE = "model.json"
# What predict does before the network and the export does not: it finds each face and warps it
# onto CelebA's framing. The exported graph starts from the framed face.
ALIGNMENT = (
    "not in the graph: predict first finds each face in a photo (YuNet) and warps it onto "
    "CelebA's aligned 178x218 framing by its five landmarks; to get predict's outputs, give the "
    "graph faces framed that way: for each face in lit_celeba.data.faces.FaceDetector()(photo), "
    "lit_celeba.data.faces.align(photo, face.landmarks) is the 178x218 image the steps below "
    "start from (a CelebA aligned image is one already; another photo framed whole, as "
    "predict --data.predict.align never does, is step 2 on)"
)
PREPROCESSING = [
    "decode to 8-bit RGB, upright (EXIF orientation applied); a face aligned as 'alignment' says",
    "resize to width 178 keeping the aspect ratio (bilinear, antialiased): none for 178x218",
    "pad with black or crop, equally above and below, to height 218",
    "crop rows 20..197: the 178x178 square at top 20, left 0",
    "scale to float32 in [0, 1] (divide by 255)",
    "resize to {s}x{s}: bilinear, half-pixel centres, no antialiasing",
    "layout N x 3 x {s} x {s}, RGB order, no mean/std normalisation",
]


def example_inputs(image_size: int, batch: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, image_size, image_size, generator=generator)


def _batch_dimension() -> dict[str, dict[int, Any]]:
    return {"images": {0: torch.export.Dim("batch", min=1)}}


def export_program(predictor: Predictor, path: Path, image_size: int) -> None:
    """A ``torch.export`` program of the predictor, any batch size from 1 up."""
    with torch.no_grad():
        program = torch.export.export(
            predictor, (example_inputs(image_size),), dynamic_shapes=_batch_dimension()
        )
    with warnings.catch_warnings():
        # torch.export.save says "No complete tensor found in the group! Returning the first
        # one" as it packs this program's weights (torch 2.14, CPU); the file loads and is
        # checked against predict below, so there is nothing for the user to act on.
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, str(path))


def export_torchscript(predictor: Predictor, path: Path) -> None:
    torch.jit.script(predictor).save(str(path))


def export_onnx(predictor: Predictor, path: Path, image_size: int) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(
            f"--onnx needs the {err.name} package: pip install 'lit_celeba[onnx]'"
        ) from None
    program = torch.onnx.export(
        predictor, (example_inputs(image_size),), input_names=["images"],
        output_names=list(OUTPUTS), dynamic_shapes=_batch_dimension(), dynamo=True,
        verbose=False,
    )  # fmt: skip
    program.save(str(path), external_data=False)  # one self-contained file


def run_export(kind: str, path: Path, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The probabilities and decisions of a saved export (``kind``: program, torchscript or
    onnx, which needs onnxruntime) on ``inputs``."""
    with torch.no_grad():
        if kind == "program":
            outputs = torch.export.load(str(path)).module()(inputs)
        elif kind == "torchscript":
            outputs = torch.jit.load(str(path), map_location="cpu")(inputs)
        else:
            import onnxruntime

            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            outputs = session.run(list(OUTPUTS), {"images": inputs.numpy()})
    return tuple(torch.as_tensor(o) for o in outputs)  # type: ignore[return-value]


def disagreement(model: AttributeClassifier, kind: str, path: Path, inputs: torch.Tensor):
    """How far an export is from ``predict``'s own outputs (the checkpoint's module, flip TTA and
    calibration included) on ``inputs``: the largest probability difference and the number of
    decisions that differ."""
    with torch.no_grad():
        expected = model.predict_step(inputs, 0)
    probability, prediction = run_export(kind, path, inputs)
    difference = float((expected["probabilities"] - probability).abs().max())
    return difference, int((expected["predictions"] != prediction).sum())


def export(ckpt_path: str | Path, out: str | Path, onnx: bool = False, overwrite: bool = False):
    """Writes ``model.pt2``, ``model.pt`` (and ``model.onnx``) and ``model.json`` into ``out`` and
    checks them; returns the contents of ``model.json``."""
    out_dir = Path(out).expanduser()
    paths = {kind: out_dir / name for kind, name in FILES.items()}
    info_path = out_dir / INFO_FILE
    existing = [str(p) for p in [*paths.values(), info_path] if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(existing)} already exist; pass --overwrite or choose another --out"
        )
    checkpoint = load(ckpt_path)
    model = rebuild(checkpoint, ckpt_path)
    predictor = Predictor(model.net, model.calibration, model.tta_flip).eval()
    data_hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    image_size = int(model.net.settings.get("image_size", data_hparams.get("image_size", 64)))
    inputs = example_inputs(image_size, batch=5, seed=1)
    kinds = ["program", "torchscript"] + (["onnx"] if onnx else [])
    # Written into a hidden folder in --out and moved into place once all is written and
    # checked: an export that fails or is stopped midway leaves --out as it was, never half of a
    # new export beside an earlier one's model.json.
    staging = building_folder(info_path, "export")
    staged = {kind: staging / path.name for kind, path in paths.items()}
    advice = "Choose a folder you can write to."
    try:
        with writing_into(out_dir, "to --out", advice, ExportError):
            remove_abandoned_folders(info_path)
            staging.mkdir(parents=True)
            export_program(predictor, staged["program"], image_size)
            export_torchscript(predictor, staged["torchscript"])
            if onnx:
                export_onnx(predictor, staged["onnx"], image_size)
            checks: dict[str, Any] = {}
            for kind in kinds:
                if kind == "onnx" and importlib.util.find_spec("onnxruntime") is None:
                    checks[kind] = None
                    continue
                difference, decisions = disagreement(model, kind, staged[kind], inputs)
                checks[kind] = {"max_abs_difference": difference,
                                "decisions_differing": decisions}  # fmt: skip
            info = model_info(model, ckpt_path, data_hparams, image_size, kinds, checks)
            (staging / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
            # An earlier export's ONNX would no longer match.
            paths["onnx"].unlink(missing_ok=True)
            for kind in kinds:
                os.replace(staged[kind], paths[kind])
            os.replace(staging / INFO_FILE, info_path)  # last: it describes the files above
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def model_info(
    model: AttributeClassifier,
    ckpt_path: str | Path,
    data_hparams: dict[str, Any],
    image_size: int,
    kinds: list[str],
    checks: dict[str, Any],
) -> dict[str, Any]:
    """``model.json``: the exported files (``kinds``), their input and outputs, the calibration,
    the preprocessing that leads to the input, and the ``checks`` against ``predict``."""
    attrs = list(model.target_attrs)
    calibration = model.calibration
    return {
        "checkpoint": str(Path(ckpt_path).expanduser().resolve()),
        "model_class": type(model).__module__ + "." + type(model).__qualname__,
        "net": model.net.config(),
        "target_attr": data_hparams.get("target_attr", attrs[0] if len(attrs) == 1 else attrs),
        "target_attrs": attrs,
        "input": {"name": "images", "shape": ["N", 3, image_size, image_size],
                  "dtype": "float32"},  # fmt: skip
        "outputs": {
            "probability": {"shape": ["N", len(attrs)], "meaning": OUTPUTS["probability"]},
            "prediction": {"shape": ["N", len(attrs)], "meaning": OUTPUTS["prediction"]},
        },
        "alignment": ALIGNMENT,
        "tta_flip": model.tta_flip,
        "temperature": calibration.temperature.tolist(),
        "bias": calibration.bias.tolist(),
        "threshold": calibration.threshold.tolist(),
        "threshold_rule": calibration.rule,
        "calibration": "probability = sigmoid(logit / temperature + bias), per attribute, of the "
        "network's logit (flip-averaged with tta_flip); prediction = probability > threshold",
        "preprocessing": [step.format(s=image_size) for step in PREPROCESSING],
        "files": [FILES[kind] for kind in kinds],
        "checks_against_predict": checks,
        "tolerance": TOLERANCE,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``export --ckpt_path CKPT --out DIR [--onnx] [--overwrite]``: 0, or 1 when the exported
    models disagree with the checkpoint; raises for a checkpoint or ``--out`` it cannot use."""
    parser = argparse.ArgumentParser(
        prog=f"{PROG} export",
        description="Export a checkpoint as a torch.export program (model.pt2), TorchScript "
        "(model.pt) and ONNX (model.onnx).",
    )
    parser.add_argument("--ckpt_path", required=True, help="the checkpoint to export")
    parser.add_argument("--out", required=True, help="the folder to write into")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    args = parser.parse_args(argv)
    info = export(args.ckpt_path, args.out, onnx=args.onnx, overwrite=args.overwrite)
    out_dir = Path(args.out)
    print(f"Wrote {', '.join(str(out_dir / f) for f in info['files'])} and {out_dir / INFO_FILE}")
    agree = True
    for kind, check in info["checks_against_predict"].items():
        if check is None:
            print(f"{kind} vs predict: skipped, onnxruntime is not installed (pip install "
                  "onnxruntime)")  # fmt: skip
            continue
        difference, decisions = check["max_abs_difference"], check["decisions_differing"]
        ok = difference <= TOLERANCE and decisions == 0
        agree = agree and ok
        print(f"{kind} vs predict: max |probability difference| {difference:.2e}, "
              f"{decisions} decision(s) differ ({'ok' if ok else 'TOO LARGE'})")  # fmt: skip
    return 0 if agree else 1
