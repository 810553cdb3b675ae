"""The commands beside ``fit``, ``validate``, ``test`` and ``predict``, under the same program:
``python -m lit_celeba compare|report|export ...``.

Each module here has ``main(argv) -> int`` (the exit status) with an argparse parser of its own,
and raises a :class:`lit_celeba.base.errors.LitCelebaError` for input it cannot use: ``cli_main``
runs the command named first on the command line (before LightningCLI, whose parser knows only the
Trainer's commands), lists them all in ``--help`` and prints the one ``error:`` line. The modules
import downward only (data, models, callbacks, checkpoints, errors), never cli.py nor each other:
the event reading that ``report`` and ``compare`` share is :mod:`.events`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

PROG = "python -m lit_celeba"
# The Trainer's commands' lines in --help (cli.py): Lightning's are its docstrings' first lines,
# cut mid-sentence ("It's separated from fit to make sure you never run on your").
TRAINER_HELP = {
    "fit": "Train a network; --ckpt_path last resumes the newest run with these settings.",
    "validate": "Evaluate a checkpoint on the validation split.",
    "test": "Evaluate a checkpoint on the test split: accuracy, calibration, tables.",
    "predict": "Predict with a checkpoint on your photos or a CelebA split, into a CSV.",
    "calibrate": "Fit a checkpoint's calibration again, into a copy of the checkpoint.",
}
# name -> the one line --help shows; the module lit_celeba.commands.<name> runs it.
COMMANDS = {
    "compare": "Train and test variants of a config over seeds; one table and one figure.",
    "report": "Write a run's curves and pictures (its TensorBoard logs) as PNG files.",
    "export": "Export a checkpoint as torch.export, TorchScript and ONNX, for use without "
    "Lightning.",
}


def run(name: str, argv: Sequence[str]) -> int:
    """Run the command ``name`` with its arguments ``argv``; returns its exit status."""
    # Imported when run: compare, report and export need nothing of each other.
    return importlib.import_module(f"{__name__}.{name}").main(list(argv))
