"""A run's TensorBoard logs as PNG files for a report: ``python -m lit_celeba report RUN_DIR``.

Writes into the run's folder (or ``--out``):

- ``curves.png``: the original post's figure, loss and accuracy per epoch, train vs validation,
  side by side (matplotlib, 1200x400 pixels);
- one PNG per picture that :mod:`lit_celeba.callbacks.dashboards` logged, from its last step:
  ``train_augmentations.png``, ``val_predictions.png``, ``val_confusion_matrix.png`` for a ``fit``
  run, ``test_predictions.png`` and ``test_confusion_matrix.png`` for a ``test`` run. These are the
  PNGs stored in the event files, byte for byte.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tensorboard.backend.event_processing import event_accumulator

from lit_celeba.errors import ReportError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVES_FILE = "curves.png"
CURVES_SIZE_INCHES = (12, 4)  # the post's figsize
CURVES_DPI = 100
EVENT_GLOB = "events.out.tfevents.*"


def load_run(run_dir: Path) -> event_accumulator.EventAccumulator:
    """All scalars and pictures of the event files directly inside ``run_dir``."""
    if not run_dir.is_dir():
        raise ReportError(
            f"{run_dir} is not a folder; pass a run folder such as logs/demo/version_0"
        )
    if not any(run_dir.glob(EVENT_GLOB)):
        runs = sorted({str(p.parent) for p in run_dir.rglob(EVENT_GLOB)})
        hint = f"; runs below it: {', '.join(runs)}" if runs else ""
        raise ReportError(
            f"No TensorBoard event files ({EVENT_GLOB}) in {run_dir}{hint}. "
            "Pass one run folder, such as logs/demo/version_0."
        )
    events = event_accumulator.EventAccumulator(
        str(run_dir),
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0},
    )
    events.Reload()
    return events


def epoch_series(
    events: event_accumulator.EventAccumulator, tag: str
) -> tuple[list[int], list[float]]:
    """``tag``'s values against the 1-based epoch they were logged in (Lightning logs ``epoch``
    at every step where it logs metrics); the last value wins where a step repeats."""
    scalars = events.Tags()["scalars"]
    if tag not in scalars:
        return [], []
    epoch_at = {e.step: int(e.value) for e in events.Scalars("epoch")} if "epoch" in scalars else {}
    by_step = {e.step: e.value for e in events.Scalars(tag)}
    steps = sorted(by_step)
    epochs = [epoch_at[s] + 1 if s in epoch_at else i + 1 for i, s in enumerate(steps)]
    return epochs, [by_step[s] for s in steps]


def curves_figure(events: event_accumulator.EventAccumulator) -> Figure | None:
    """The post's side-by-side loss and accuracy figure, or ``None`` without per-epoch curves."""
    # Imported here: every CLI command imports this module, only `report` draws.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = (("loss", "Loss", "loss"), ("acc", "Accuracy", "acc."))
    series = {
        (stage, metric): epoch_series(events, f"{stage}/{metric}")
        for stage in ("train", "val")
        for metric, _, _ in panels
    }
    if not any(values for _, values in series.values()):
        return None
    figure = Figure(figsize=CURVES_SIZE_INCHES, dpi=CURVES_DPI)  # no pyplot: no display needed
    for column, (metric, ylabel, legend) in enumerate(panels):
        ax = figure.add_subplot(1, 2, column + 1)
        ax.plot(*series["train", metric], "-o", label=f"Train {legend}")
        ax.plot(*series["val", metric], "--<", label=f"Validation {legend}")
        ax.legend(fontsize=15)
        ax.set_xlabel("Epoch", size=15)
        ax.set_ylabel(ylabel, size=15)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure


def picture_file_name(tag: str) -> str:
    """The PNG file of an image tag: ``val/confusion_matrix`` -> ``val_confusion_matrix.png``;
    any character that is not a letter, digit, ``-`` or ``.`` becomes ``_``, so that a tag (with
    an attribute name in it, say) always makes one valid file name inside the report folder."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", tag).lstrip(".") + ".png"


def write_report(run_dir: Path | str, out_dir: Path | str | None = None) -> list[Path]:
    """Write ``curves.png`` and one PNG per logged picture; returns the files written."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    events = load_run(run_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        figure = curves_figure(events)
        if figure is not None:
            figure.savefig(out_dir / CURVES_FILE, dpi=CURVES_DPI)
            written.append(out_dir / CURVES_FILE)
        for tag in events.Tags()["images"]:
            last = events.Images(tag)[-1]
            path = out_dir / picture_file_name(tag)
            path.write_bytes(last.encoded_image_string)
            written.append(path)
    except OSError as err:
        where = Path(err.filename) if err.filename else out_dir
        raise ReportError(
            f"Cannot write the report into {out_dir} ({where}: {err.strerror or err}). Pass a "
            "folder you can write to with --out."
        ) from None
    if not written:
        raise ReportError(
            f"{run_dir} has neither train/val curves nor pictures; was it logged with "
            "lit_celeba.callbacks.dashboards.TensorBoardDashboards (configs/base.yaml)?"
        )
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lit_celeba report",
        description="Turn a run's TensorBoard logs into PNG files: the loss/accuracy curves, "
        "the prediction gallery, the augmentation grid and the confusion matrix.",
    )
    parser.add_argument("run_dir", type=Path, help="a run folder, e.g. logs/demo/version_0")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: run_dir)")
    return parser


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """``report RUN_DIR [--out DIR]``; raises :class:`ReportError` for a folder it cannot use."""
    args = build_parser().parse_args(argv)
    written = write_report(args.run_dir, args.out)
    for path in written:
        print(f"Wrote {path}")
    return written


if __name__ == "__main__":
    from lit_celeba.cli import cli_main

    cli_main(["report", *sys.argv[1:]])
