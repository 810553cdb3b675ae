"""Which checkpoint is "last": the newest one a run wrote, and the run folder to go on in."""


from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.utilities.types import _PATH

# ckpt_path values that name no file: Lightning resolves them itself.

# ckpt_path values that name no file: Lightning resolves them itself.
CKPT_KEYWORDS = frozenset({"last", "best", "hpc", "registry"})


def latest_checkpoint(trainer: pl.Trainer) -> str:
    """The newest checkpoint this run wrote for resuming: a ``save_last`` file or the file of a
    checkpoint callback without a monitor (which keeps the latest epoch); "" if none yet."""
    candidates = []
    for callback in trainer.checkpoint_callbacks:
        candidates.append(getattr(callback, "last_model_path", ""))
        if getattr(callback, "monitor", "") is None:
            candidates.append(getattr(callback, "best_model_path", ""))
    existing = [Path(c) for c in candidates if c and Path(c).is_file()]
    return str(max(existing, key=lambda p: p.stat().st_mtime_ns)) if existing else ""


def find_last_checkpoint(run_root: _PATH) -> Path | None:
    """The newest ``*/checkpoints/last.ckpt`` under a logger's folder (``save_dir/name``)."""
    candidates = [p for p in Path(run_root).glob("*/checkpoints/last.ckpt") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns, default=None)


def free_config_name(run_dir: _PATH) -> str:
    """``config.yaml`` if free, else ``config_resume_N.yaml``: a resumed run keeps the first."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        return "config.yaml"
    n = 1
    while (run_dir / f"config_resume_{n}.yaml").exists():
        n += 1
    return f"config_resume_{n}.yaml"


