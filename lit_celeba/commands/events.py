"""A run's TensorBoard event files, read for ``report`` and ``compare``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import types_pb2

from lit_celeba.base.errors import ReportError

EVENT_GLOB = "events.out.tfevents.*"


def load_run(run_dir: Path) -> event_accumulator.EventAccumulator:
    """All scalars, pictures and tensors (text, PR curves) of the event files directly inside
    ``run_dir``."""
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
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0,
                       event_accumulator.TENSORS: 0},  # fmt: skip
    )
    events.Reload()
    return events


def epoch_series(
    events: event_accumulator.EventAccumulator, tag: str
) -> tuple[list[float], list[float]]:
    """``tag``'s values against the epoch they were logged in, 1-based (Lightning logs ``epoch``
    at every step where it logs metrics); the last value wins where a step repeats.

    A tag logged k times within one epoch (validation with ``val_check_interval`` below 1) falls
    at e + 1/k, e + 2/k, ..., e + 1 for epoch e (from 0), in order: one point each, the last at
    the epoch's end, never two at one epoch."""
    scalars = events.Tags()["scalars"]
    if tag not in scalars:
        return [], []
    epoch_at = {e.step: int(e.value) for e in events.Scalars("epoch")} if "epoch" in scalars else {}
    by_step = {e.step: e.value for e in events.Scalars(tag)}
    steps = sorted(by_step)
    epochs = [epoch_at.get(s, i) for i, s in enumerate(steps)]  # from 0
    per_epoch = Counter(epochs)
    seen: Counter[int] = Counter()
    positions = []
    for epoch in epochs:
        seen[epoch] += 1
        positions.append(epoch + seen[epoch] / per_epoch[epoch])
    return positions, [by_step[s] for s in steps]


def text_summaries(events: event_accumulator.EventAccumulator) -> dict[str, str]:
    """The last text (TensorBoard's Text tab: the test tables) logged under each tag."""
    texts = {}
    for tag in events.Tags()["tensors"]:
        if events.SummaryMetadata(tag).plugin_data.plugin_name != "text":
            continue  # PR curves, the custom scalars' layout, ...
        last = events.Tensors(tag)[-1].tensor_proto
        if last.dtype == types_pb2.DT_STRING and last.string_val:
            # add_text(tag, ...) stores it as "<tag>/text_summary".
            texts[tag.removesuffix("/text_summary")] = last.string_val[0].decode("utf-8")
    return texts
