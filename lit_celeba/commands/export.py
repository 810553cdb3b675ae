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
(64 for the recipe), RGB in [0, 1], and return ``probability``, the sigmoid of the logits, of
shape (N, K): column k is the probability of ``target_attrs[k]`` (threshold at 0.5 for the
label); K = 1 for the recipe. The
preprocessing that makes the input from a photo, as ``predict`` does it (see
:mod:`lit_celeba.data.photos` and :mod:`lit_celeba.data.transforms`): 8-bit RGB, upright;
resize to width 178 keeping the aspect ratio, then pad with black or crop, equally above and
below, to height 218; crop rows 20..197 (a 178x178 square); scale to [0, 1]; resize to SxS
bilinearly with
half-pixel centres and no antialiasing (``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False, antialias=False)``, ``tf.image.resize``'s default).

The export then checks that the torch.export program, the TorchScript model and ONNX Runtime
(when installed) give the checkpoint's network's probabilities on the same inputs to within
1e-4, and exits with status 1 if they do not. The checkpoint is read as every command reads it
(:mod:`lit_celeba.checkpoints.load`: tensors and plain values only, lit_celeba's own model
classes only, never an import of the class path it names); a checkpoint or ``--out`` it cannot use
raises, and the CLI ends with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lit_celeba.checkpoints.load import load, rebuild
from lit_celeba.commands import PROG
from lit_celeba.errors import ExportError

# The issue asks for TorchScript, which torch >= 2.10 marks deprecated on every call; the
# warning is about torch's roadmap, nothing a user of this command can act on.
warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.\w+` is deprecated", category=FutureWarning
)

TOLERANCE = 1e-4
FILES = {"program": "model.pt2", "torchscript": "model.pt", "onnx": "model.onnx"}
INFO_FILE = "model.json"
PREPROCESSING = [
    "decode to 8-bit RGB, upright (EXIF orientation applied)",
    "resize to width 178 keeping the aspect ratio (bilinear, antialiased)",
    "pad with black or crop, equally above and below, to height 218",
    "crop rows 20..197: the 178x178 square at top 20, left 0",
    "scale to float32 in [0, 1] (divide by 255)",
    "resize to {s}x{s}: bilinear, half-pixel centres, no antialiasing",
    "layout N x 3 x {s} x {s}, RGB order, no mean/std normalisation",
]


class ProbabilityNet(nn.Module):
    """The trained network followed by the sigmoid: probabilities, not logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(images))


def example_inputs(image_size: int, batch: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, image_size, image_size, generator=generator)


def export_program(net: nn.Module, path: Path, image_size: int) -> None:
    """A ``torch.export`` program of the network and sigmoid, any batch size from 1 up."""
    with torch.no_grad():
        program = torch.export.export(
            ProbabilityNet(net).eval(),
            (example_inputs(image_size),),
            dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
        )
    torch.export.save(program, str(path))


def export_torchscript(net: nn.Module, path: Path) -> None:
    scripted = torch.jit.script(ProbabilityNet(net).eval())
    scripted.save(str(path))


def export_onnx(net: nn.Module, path: Path, image_size: int) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(
            f"--onnx needs the {err.name} package: pip install 'lit_celeba[onnx]'"
        ) from None
    program = torch.onnx.export(
        ProbabilityNet(net).eval(),
        (example_inputs(image_size),),
        input_names=["images"],
        output_names=["probability"],
        dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
        dynamo=True,
        verbose=False,
    )
    program.save(str(path), external_data=False)  # one self-contained file


def max_difference(expected: torch.Tensor, actual: Any) -> float:
    return float((expected - torch.as_tensor(actual)).abs().max())


def check_program(net: nn.Module, path: Path, inputs: torch.Tensor) -> float:
    """The largest difference between the saved torch.export program and ``net`` (with the
    sigmoid); ``inputs`` has another batch size than the export's example, so the dynamic batch
    dimension is checked too."""
    with torch.no_grad():
        expected = ProbabilityNet(net).eval()(inputs)
        actual = torch.export.load(str(path)).module()(inputs)
    return max_difference(expected, actual)


def check_torchscript(net: nn.Module, path: Path, inputs: torch.Tensor) -> float:
    """The largest difference between the TorchScript model and ``net`` (with the sigmoid)."""
    with torch.no_grad():
        expected = ProbabilityNet(net).eval()(inputs)
        actual = torch.jit.load(str(path), map_location="cpu")(inputs)
    return max_difference(expected, actual)


def check_onnx(net: nn.Module, path: Path, inputs: torch.Tensor) -> float | None:
    """The largest difference between ONNX Runtime and PyTorch; ``None`` without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["probability"], {"images": inputs.numpy()})
    with torch.no_grad():
        expected = ProbabilityNet(net).eval()(inputs)
    return max_difference(expected, actual)


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
    data_hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    image_size = int(model.hparams.get("image_size", data_hparams.get("image_size", 64)))
    inputs = example_inputs(image_size, batch=5, seed=1)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths["onnx"].unlink(missing_ok=True)  # an earlier export's ONNX would no longer match
        written = [paths["program"], paths["torchscript"]]
        export_program(model.net, paths["program"], image_size)
        differences = {
            "torch_export_vs_checkpoint": check_program(model.net, paths["program"], inputs)
        }
        export_torchscript(model.net, paths["torchscript"])
        differences["torchscript_vs_checkpoint"] = check_torchscript(
            model.net, paths["torchscript"], inputs
        )
        if onnx:
            export_onnx(model.net, paths["onnx"], image_size)
            written.append(paths["onnx"])
            differences["onnxruntime_vs_pytorch"] = check_onnx(model.net, paths["onnx"], inputs)
        attrs = list(model.target_attrs)
        info = {
            "checkpoint": str(Path(ckpt_path).expanduser().resolve()),
            "model_class": type(model).__module__ + "." + type(model).__qualname__,
            "target_attr": data_hparams.get("target_attr", attrs[0] if len(attrs) == 1 else attrs),
            "target_attrs": attrs,
            "input": {
                "name": "images",
                "shape": ["N", 3, image_size, image_size],
                "dtype": "float32",
            },
            "output": {
                "name": "probability",
                "shape": ["N", len(attrs)],
                "meaning": "sigmoid of the logit; column k is the probability of target_attrs[k]",
            },
            "preprocessing": [step.format(s=image_size) for step in PREPROCESSING],
            "files": [p.name for p in written],
            "max_abs_difference": differences,
            "tolerance": TOLERANCE,
        }
        info_path.write_text(json.dumps(info, indent=2) + "\n")
    except OSError as err:
        where = Path(err.filename) if err.filename else out_dir
        raise ExportError(
            f"Cannot write to --out {out_dir} ({where}: {err.strerror or err}). Choose a folder "
            "you can write to."
        ) from None
    return info


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
    for name, difference in info["max_abs_difference"].items():
        if difference is None:
            print(f"{name}: skipped, onnxruntime is not installed (pip install onnxruntime)")
            continue
        ok = difference <= TOLERANCE
        agree = agree and ok
        print(f"{name}: max |difference| {difference:.2e} ({'ok' if ok else 'TOO LARGE'})")
    return 0 if agree else 1
