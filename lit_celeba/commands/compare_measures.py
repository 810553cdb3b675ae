"""What one finished ``compare`` run measured (:mod:`lit_celeba.commands.compare_runs`), read
from its own files: its last and best-validation checkpoints, the parameters of its network,
the test metrics and the validation curve its TensorBoard events hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lit_celeba.base.errors import UsageError
from lit_celeba.checkpoints.load import load, rebuild
from lit_celeba.commands.events import epoch_series, load_run
from lit_celeba.models.nets import count_parameters

REACH_SHARE = 0.9  # "epochs to reach 90 % of the final validation accuracy"
# The test scalars a run records besides the accuracy (each a mean over the attributes).
TEST_SUMMARY = ("test/ece", "test/ece_uncalibrated", "test/balanced_acc", "test/auroc")


def last_checkpoint(fit_dir: Path) -> Path | None:
    last = fit_dir / "checkpoints" / "last.ckpt"
    return last if last.is_file() else None


def best_and_last(fit_dir: Path) -> tuple[Path, Path | None]:
    """The fit's ``last.ckpt`` and its best-validation checkpoint (from the monitored
    ModelCheckpoint's state inside ``last.ckpt``; ``None`` without a monitored checkpoint, and
    ``None`` too when the best is the last epoch, whose weights ``last.ckpt`` holds)."""
    last = fit_dir / "checkpoints" / "last.ckpt"
    checkpoint = load(last)
    states = checkpoint.get("callbacks") or {}
    monitored = [
        s for key, s in states.items()
        if key.startswith("ModelCheckpoint") and s.get("monitor") and s.get("best_model_path")
    ]  # fmt: skip
    monitored.sort(key=lambda s: s.get("monitor") != "val/acc")  # val/acc first
    if not monitored:
        return last, None
    best = Path(monitored[0]["best_model_path"])
    if not best.is_absolute():
        best = fit_dir / "checkpoints" / best.name
    if load(best).get("global_step") == checkpoint.get("global_step"):
        return last, None
    return last, best


def parameter_count(ckpt: Path) -> int:
    """Trainable parameters of the checkpoint's network, rebuilt as every command rebuilds it."""
    return count_parameters(rebuild(load(ckpt), ckpt).net)


def test_metrics(test_dir: Path) -> dict[str, float]:
    """``test/acc`` and those of :data:`TEST_SUMMARY` that the test run logged."""
    events = load_run(test_dir)
    logged = events.Tags()["scalars"]
    if "test/acc" not in logged:
        raise UsageError(f"{test_dir} logged no test/acc")
    return {tag: float(events.Scalars(tag)[-1].value)
            for tag in ("test/acc", *TEST_SUMMARY) if tag in logged}  # fmt: skip


def validation_curve(fit_dir: Path) -> list[float]:
    _, values = epoch_series(load_run(fit_dir), "val/acc")
    return [float(v) for v in values]


def epochs_to_reach(curve: Sequence[float], share: float = REACH_SHARE) -> int | None:
    """The first (1-based) epoch whose validation accuracy is at least ``share`` of the last."""
    if not curve:
        return None
    return next(i for i, v in enumerate(curve, 1) if v >= share * curve[-1])
