"""Which checkpoint ``--ckpt_path`` means: the newest one a run wrote, and the run folder to go
on in (:func:`resolve_last`); ``best`` and no checkpoint at all refused where they cannot work
(:func:`check_checkpoint_choice`). Each command's run folder, created and held while it runs:
:mod:`.run_folders`.

``fit --ckpt_path last`` goes on in an earlier run only if that run was started with the same
settings (:func:`find_matching_run`): otherwise a new run killed in its first epoch would resume
someone else's finished run with other settings and overwrite its checkpoints.
"""

import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from lightning_fabric.utilities.types import _PATH

from lit_celeba.base.errors import CheckpointError, UsageError
from lit_celeba.checkpoints.legacy import upgrade_saved_config

# ckpt_path values that name no file: Lightning resolves them itself.
CKPT_KEYWORDS = frozenset({"last", "best", "hpc", "registry"})

# Settings a resumed run may change without changing what it computes. The log folder is where
# the run was found (it may have been moved since); the cache is keyed by its content. Callbacks
# are left out too: the configs' callbacks only observe and save (checkpoints, dashboards, the
# learning-rate monitor), and a hook added for one session (a debugging or pausing callback)
# must not make a run unresumable.
RESULT_NEUTRAL_SETTINGS = frozenset(
    {
        "config",
        "ckpt_path",
        "trainer.logger.init_args.version",
        "trainer.logger.init_args.save_dir",
        "trainer.callbacks",
        "prediction",
        "data.predict",
        "trainer.enable_progress_bar",
        "trainer.enable_model_summary",
        "data.num_workers",
        "data.cache_dir",
    }
)


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


def last_checkpoints(run_root: _PATH) -> list[Path]:
    """Every ``*/checkpoints/last.ckpt`` under a logger's folder (``save_dir/name``), newest
    first."""
    candidates = [p for p in Path(run_root).glob("*/checkpoints/last.ckpt") if p.is_file()]
    return sorted(candidates, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def find_last_checkpoint(run_root: _PATH) -> Path | None:
    """The newest ``*/checkpoints/last.ckpt`` under a logger's folder, of any run."""
    return next(iter(last_checkpoints(run_root)), None)


def flat_settings(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data.image_size": 64, ...}``: nested mappings as dotted keys; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_settings(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def settings_as_now(config: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`flat_settings` of ``config`` in today's form (an earlier version's config.yaml
    read by :func:`~.legacy.upgrade_saved_config`: a saved ``data.group_balanced: true`` is
    ``data.sampler: group_balanced``)."""
    return flat_settings(upgrade_saved_config(config))


def differing_keys(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two configs (old keys read as
    :func:`settings_as_now` reads them), leaving out :data:`RESULT_NEUTRAL_SETTINGS` and
    everything under them."""
    return _differing(settings_as_now(saved), settings_as_now(current))


def _differing(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    def neutral(key: str) -> bool:
        return any(key == n or key.startswith(f"{n}.") for n in RESULT_NEUTRAL_SETTINGS)

    keys = sorted(k for k in old.keys() | new.keys() if not neutral(k))
    return [k for k in keys if old.get(k) != new.get(k)]


# How long a fit trains: a run that differs only in these is the same run, trained longer.
TRAINING_LENGTH = {"trainer.max_epochs", "trainer.max_steps", "trainer.max_time",
                   "trainer.min_epochs", "trainer.min_steps"}  # fmt: skip


def changed_settings(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The settings that differ between two configs, as ``key: saved -> current``, leaving out
    :data:`RESULT_NEUTRAL_SETTINGS` and everything under them."""
    old, new = settings_as_now(saved), settings_as_now(current)
    return _changes(_differing(old, new), old, new)


def _changes(keys: list[str], old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys]


def find_matching_run(
    run_root: _PATH, current: Mapping[str, Any]
) -> tuple[Path | None, list[str]]:
    """The newest ``last.ckpt`` under ``run_root`` whose run folder's ``config.yaml`` has the
    settings of ``current`` (a config as LightningCLI saves it), and one line for each newer run
    that was skipped, saying why."""
    skipped = []
    new = settings_as_now(current)
    for last in last_checkpoints(run_root):
        run_dir = last.parent.parent
        config_file = run_dir / "config.yaml"
        try:
            saved = yaml.safe_load(config_file.read_text())
        except (OSError, yaml.YAMLError) as err:
            skipped.append(f"{run_dir}: its config.yaml cannot be read ({type(err).__name__})")
            continue
        old = settings_as_now(saved if isinstance(saved, Mapping) else {})
        keys = _differing(old, new)
        if not keys:
            return last, skipped
        changes = _changes(keys, old, new)
        more = f"; and {len(changes) - 3} more" if len(changes) > 3 else ""
        shown = "; ".join(changes[:3]) + more
        longer = ""
        if set(keys) <= TRAINING_LENGTH:
            # A resumed run must equal an uninterrupted one, which a longer run is not; training
            # its weights on is still a fit from the checkpoint itself, into a new run folder.
            longer = (f"; to train that run's weights on for longer, give its checkpoint itself: "
                      f"--ckpt_path {last}")  # fmt: skip
        skipped.append(f"{run_dir}: other settings ({shown}){longer}")
    return None, skipped


def free_config_name(run_dir: _PATH) -> str:
    """``config.yaml`` if free, else ``config_resume_N.yaml``: a resumed run keeps the first."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        return "config.yaml"
    n = 1
    while (run_dir / f"config_resume_{n}.yaml").exists():
        n += 1
    return f"config_resume_{n}.yaml"


def check_checkpoint_choice(subcommand: str, ckpt_path: str | None) -> None:
    """Refuse evaluating an untrained network, and ``best`` outside the ``fit`` that found it."""
    if ckpt_path is None and subcommand != "fit":
        raise UsageError(
            f"`{subcommand}` needs a trained network: without --ckpt_path it would "
            f"{'write the predictions' if subcommand == 'predict' else 'report the accuracy'} "
            "of a randomly initialised one. Pass --ckpt_path last (the newest run's last "
            "checkpoint) or the path of a checkpoint (logs/<name>/version_N/checkpoints/*.ckpt)."
        )
    if ckpt_path == "best":
        raise CheckpointError(
            "--ckpt_path best only exists inside the `fit` process that tracked the best epoch. "
            "Give that checkpoint's path (the epochNN-val_acc....ckpt file in "
            "logs/<name>/version_N/checkpoints/), or --ckpt_path last."
        )
    if ckpt_path in ("hpc", "registry"):
        source = (
            "the checkpoints that SLURM's auto-requeue saves (hpc_ckpt_N.ckpt)"
            if ckpt_path == "hpc"
            else "a model registry"
        )
        raise CheckpointError(
            f"--ckpt_path {ckpt_path} is Lightning's keyword for {source}, which lit_celeba does "
            "not use. Give the path of a .ckpt file, or --ckpt_path last."
        )


def ckpt_path_help(subcommand: str) -> str:
    """``--help``'s line for ``--ckpt_path``: the choices that work for ``subcommand``
    (Lightning's own lists ``best`` and ``hpc``, which do not, see above)."""
    if subcommand == "fit":
        return (
            "resume training: 'last' (the newest last.ckpt under the logger's folder whose run "
            "has these settings) or the path of a .ckpt file; none starts a new run"
        )
    return (
        "the checkpoint to use (required): 'last' (the newest run's last.ckpt under the "
        "logger's folder) or the path of a .ckpt file written by fit"
    )


def resolve_last(
    subcommand: str, config: Any, settings: Callable[[], Mapping[str, Any]]
) -> Path | None:
    """``--ckpt_path last`` in ``config`` (a command's parsed config) made a path: for ``fit``,
    the newest last.ckpt of an earlier run under the logger's folder that was started with the
    same settings (``settings()``: this command's config as LightningCLI saves it); for the other
    subcommands (which write nothing into that run), the newest last.ckpt of any run. Returns the
    run folder that ``fit`` goes on in, whose logger version it sets; ``None`` otherwise.

    Lightning itself only looks in the new run's own (empty) checkpoint folder. ``fit`` goes
    on in the same run folder, so checkpoints, best-model tracking and TensorBoard curves
    continue where they stopped. A run with other settings is never resumed (nor written into).
    """
    init_args = getattr(config.trainer.get("logger"), "init_args", None)
    save_dir = getattr(init_args, "save_dir", None)
    if save_dir is None or _checkpoint_dirpath_given(config.trainer.get("callbacks")):
        return None  # no versioned log folder: Lightning's own resolution applies
    run_root = Path(save_dir).expanduser() / (getattr(init_args, "name", None) or "")
    if subcommand != "fit":
        last = find_last_checkpoint(run_root)
        if last is None:
            raise CheckpointError(
                f"--ckpt_path last: no last.ckpt under {run_root}. Train with `fit` first, "
                "or give the path of a checkpoint."
            )
        config.ckpt_path = str(last)
        return None
    last, skipped = find_matching_run(run_root, settings())
    for reason in skipped:
        print(f"Not resuming {reason}.", file=sys.stderr)
    if last is None:
        where = "with these settings " if skipped else ""
        print(
            f"No last.ckpt under {run_root} {where}yet: training from the start.", file=sys.stderr
        )
        config.ckpt_path = None
        return None
    config.ckpt_path = str(last)
    init_args.version = last.parent.parent.name
    # Going on in a run folder that has checkpoints is the point of resuming.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* is not empty")
    print(f"Resuming from {last}", file=sys.stderr)
    return last.parent.parent


def _checkpoint_dirpath_given(callbacks: Any) -> bool:
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    return any(
        str(getattr(c, "class_path", "")).endswith("ModelCheckpoint")
        and getattr(c.init_args, "dirpath", None) is not None
        for c in callbacks
    )
