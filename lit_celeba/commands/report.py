"""A run's TensorBoard logs as PNG files for a report: ``python -m lit_celeba report RUN_DIR``.

Writes into the run's folder (or ``--out``):

- ``curves.png``: the original post's figure, loss and accuracy per epoch, train vs validation,
  side by side (matplotlib, 1200x400 pixels);
- one PNG per picture that :mod:`lit_celeba.callbacks.dashboards` logged, from its last step:
  ``train_augmentations.png``, ``val_predictions.png``, ``val_confusion_matrix.png`` for a ``fit``
  run, ``test_predictions.png`` and ``test_confusion_matrix.png`` for a ``test`` run, and each
  stage's reliability diagram (``val_reliability.png``, ``test_reliability.png``). These are the
  PNGs stored in the event files, byte for byte;
- one Markdown file per text the run logged: the test tables, ``test_attributes.md`` (accuracy,
  balanced accuracy, AUROC, average precision, F1, ECE, the share of positives, the majority
  baseline and the threshold of each attribute) and ``test_groups.md``.
- ``maps.png``: a page of the activation maps, every attribute's last ``{stage}/maps`` picture
  (:mod:`lit_celeba.commands.maps_page`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tensorboard.backend.event_processing import event_accumulator

from lit_celeba.base.errors import ReportError
from lit_celeba.base.files import atomic_write
from lit_celeba.base.processes import FolderLock, describe_holders
from lit_celeba.commands import PROG
from lit_celeba.commands.events import epoch_series, load_run, text_summaries
from lit_celeba.commands.maps_page import write_maps_page
from lit_celeba.paths import writing_into

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVES_FILE = "curves.png"
CURVES_SIZE_INCHES = (12, 4)  # the post's figsize
CURVES_DPI = 100


def curves_figure(events: event_accumulator.EventAccumulator) -> Figure | None:
    """The post's side-by-side loss and accuracy figure, or ``None`` without per-epoch curves."""
    # Imported when drawing: matplotlib alone takes about a second to import.
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
    advice = "Pass a folder you can write to with --out."
    with writing_into(out_dir, "the report into", advice, ReportError):
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        figure = curves_figure(events)
        if figure is not None:
            with atomic_write(out_dir / CURVES_FILE, "wb") as fh:
                figure.savefig(fh, format="png", dpi=CURVES_DPI)
            written.append(out_dir / CURVES_FILE)
        for tag in events.Tags()["images"]:
            last = events.Images(tag)[-1]
            path = out_dir / picture_file_name(tag)
            with atomic_write(path, "wb") as fh:
                fh.write(last.encoded_image_string)
            written.append(path)
        for tag, text in text_summaries(events).items():
            path = (out_dir / picture_file_name(tag)).with_suffix(".md")
            with atomic_write(path) as fh:
                fh.write(text + "\n")
            written.append(path)
        page = write_maps_page(events, out_dir)
        written += [page] if page is not None else []
    if not written:
        raise ReportError(
            f"{run_dir} has neither train/val curves nor pictures; was it logged with "
            "lit_celeba.callbacks.dashboards.TensorBoardDashboards (configs/base.yaml)?"
        )
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} report",
        description="Turn a run's TensorBoard logs into files: the loss/accuracy curves, the "
        "prediction gallery, the augmentation grid, the confusion matrix, the reliability "
        "diagram and the activation maps as PNG, the test tables as Markdown.",
    )
    parser.add_argument("run_dir", type=Path, help="a run folder, e.g. logs/demo/version_0")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: run_dir)")
    return parser


def unfinished_note(run_dir: Path) -> str | None:
    """A line when a command still writes ``run_dir`` (it holds the run folder's lock: a fit
    that still trains, say), None otherwise."""
    lock = FolderLock(run_dir)
    if not run_dir.is_dir() or not lock.holders():
        return None
    return (f"Note: {run_dir} is still being written by {describe_holders(lock)}: this report "
            "shows the run as far as it got. Run report again when it has ended.")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``report RUN_DIR [--out DIR]``; raises :class:`ReportError` for a folder it cannot use."""
    args = build_parser().parse_args(argv)
    note = unfinished_note(args.run_dir)
    for path in write_report(args.run_dir, args.out):
        print(f"Wrote {path}")
    if note is not None:
        print(note)
    return 0
