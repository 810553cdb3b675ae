"""Checkpoints that survive crashes and cannot run code: atomic saves, safe loads, exact resume.

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the same folder,
  fsyncs it and renames it over the old one, so a crash while saving leaves the previous good
  checkpoint in place. It loads with ``weights_only=True``: tensors and plain values only.
- :func:`load_checkpoint` and :func:`check_checkpoint` refuse, with one clear message, a file that
  would run code when unpickled, a truncated or foreign file, a model class outside lit_celeba,
  and a checkpoint trained for another target attribute; :func:`check_fits_model` refuses one
  whose weights do not fit the network.
- :class:`ExactResume` keeps the random generators in the checkpoint and flushes the logs each
  epoch, so a run resumed from an epoch-end checkpoint equals one that never stopped;
  :func:`find_last_checkpoint` finds the previous run's ``last.ckpt``.
- :class:`InterruptNotice` tells the user how to resume after SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lit_celeba.attributes import attribute_list
from lit_celeba.module import AttributeClassifier

# ckpt_path values that name no file: Lightning resolves them itself.
CKPT_KEYWORDS = frozenset({"last", "best", "hpc", "registry"})
OWN_PACKAGE = "lit_celeba."


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that never leaves a half-written checkpoint and never unpickles code.

    A save goes to ``.NAME.PID.RANDOM.tmp`` next to the target, is flushed to disk, then renamed
    over the target (``os.replace`` is atomic on POSIX and Windows). Temporaries left by a process
    that was killed mid-save are removed on the next save.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            # Remote storage: fsspec's own transaction is the best available.
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            # O_EXCL: never write through someone else's file; 0o666 lets the umask decide, as for
            # any other file the user creates.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _fsync_folder(path.parent)
        _remove_stale_temporaries(path)

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only)
        # None means "not chosen": choose the safe way whatever torch's default is.
        return load_checkpoint(path, map_location, weights_only=weights_only is not False)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]+\.tmp$")
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        match = pattern.match(leftover.name)
        if match and not _process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else
    return True


def load_checkpoint(
    path: _PATH, map_location: Any = "cpu", weights_only: bool = True
) -> dict[str, Any]:
    """``torch.load`` a local checkpoint that holds tensors and plain values only.

    Raises :class:`CheckpointError` for a missing, truncated or foreign file, and for one that
    holds other Python objects: unpickling those could run code from the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} does not exist. Give the path of a .ckpt file written by `fit` "
            "(logs/<config>/version_N/checkpoints/), or --ckpt_path last for the newest one."
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        # torch's weights-only unpickler stops at the first thing that is not a tensor or a
        # plain value: a global (a class or function to import and call) is what runs code;
        # anything else is a file that is no checkpoint at all.
        culprit = re.search(r"Unsupported global: (GLOBAL \S+)", str(err))
        if culprit is None:
            detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
            raise _unreadable(path, detail.group(1) if detail else err) from None
        detail = f" ({culprit.group(1)})"
        raise CheckpointError(
            f"Refused to load {path}: besides tensors and plain values it holds Python "
            f"objects{detail}, and unpickling those could run code from the file. Checkpoints "
            "written by lit_celeba never do; use one of those, or a file from a source you trust "
            "converted to a plain state_dict."
        ) from None
    except PermissionError:
        raise CheckpointError(
            f"Cannot read checkpoint {path}: permission denied. Copy it somewhere you can read, "
            "or fix its permissions."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise _unreadable(path, err) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (it has no state_dict). Use a .ckpt file "
            "written by `python -m lit_celeba fit`."
        )
    return checkpoint


def _unreadable(path: Path, err: BaseException | str) -> CheckpointError:
    text = str(err).strip()
    reason = text.splitlines()[0] if text else type(err).__name__
    return CheckpointError(
        f"Cannot read checkpoint {path}: it is truncated, damaged or not a PyTorch file "
        f"(torch.load said: {reason}). Use another checkpoint, e.g. the best one next to it in "
        "the same folder."
    )


def check_checkpoint(checkpoint: Mapping[str, Any], path: _PATH, target_attr: str | None) -> None:
    """Refuse a checkpoint of a model outside lit_celeba or of another target attribute.

    The CLI rebuilds the model from the class path saved in the checkpoint, which imports it:
    only lit_celeba's own classes are allowed, so a crafted file cannot import other modules.
    """
    hparams = checkpoint.get("hyper_parameters") or {}
    class_path = hparams.get("_class_path") if isinstance(hparams, Mapping) else None
    if class_path is not None:
        if not isinstance(class_path, str) or not class_path.startswith(OWN_PACKAGE):
            raise CheckpointError(
                f"{path} was saved by another model ({class_path!r}), not by lit_celeba. Use a "
                "checkpoint written by `python -m lit_celeba fit`."
            )
        _check_own_model_class(class_path, path)
    datamodule = checkpoint.get("datamodule_hyper_parameters") or {}
    trained_for = datamodule.get("target_attr") if isinstance(datamodule, Mapping) else None
    if target_attr is None or trained_for is None:
        return
    trained, asked = attribute_list(trained_for), attribute_list(target_attr)
    if trained != asked:
        raise CheckpointError(
            f"{path} was trained to predict {len(trained)} attribute(s) {_cli_list(trained)}, "
            f"but --data.target_attr is {_cli_list(asked)}. Pass --data.target_attr "
            f"{_cli_list(trained)}, or use a checkpoint trained for {_cli_list(asked)}."
        )


def _cli_list(names: list[str]) -> str:
    """As the command line takes it: a name, or a quoted YAML list."""
    return names[0] if len(names) == 1 else '"[' + ", ".join(names) + ']"'


def _check_own_model_class(class_path: str, path: _PATH) -> None:
    # Looked up among modules already imported, never imported: importing runs module code
    # (lit_celeba.__main__, for one, starts the CLI).
    module_name, _, class_name = class_path.rpartition(".")
    model_class = getattr(sys.modules.get(module_name), class_name, None)
    if not (isinstance(model_class, type) and issubclass(model_class, AttributeClassifier)):
        raise CheckpointError(
            f"{path} names the model class {class_path!r}, which this version of lit_celeba does "
            "not have. Use a checkpoint written by this version."
        )


def check_fits_model(model: torch.nn.Module, checkpoint: Mapping[str, Any], path: _PATH) -> None:
    """Refuse a checkpoint whose weights do not fit ``model``, listing what differs."""
    expected = model.state_dict()
    found = checkpoint["state_dict"]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [
        f"{k} {tuple(found[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and getattr(found[k], "shape", v.shape) != v.shape
    ]
    if not (missing or unexpected or reshaped):
        return
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape", reshaped)):
        if names:
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            parts.append(f"{label}: {shown}")
    raise CheckpointError(
        f"{path} does not fit the network {type(model).__name__} ({'; '.join(parts)}): it was "
        "saved by a different network. Use a checkpoint of this network, or the --model settings "
        "it was trained with."
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


class ExactResume(Callback):
    """Makes a run resumed from an epoch-end checkpoint equal one that never stopped.

    - Saves the random generators (torch, CUDA, numpy, Python) with every checkpoint and restores
      them on resume. Lightning saves the model, optimizer and loop state but not these, so
      without this a resumed run would draw other shuffles, crops, flips and dropout masks.
      Lightning restores callback state before it builds the train loader, and runs its sanity
      check in an isolated generator state, so nothing draws between this restore and the first
      batch.
    - Flushes the loggers when an epoch starts, so the curves of every finished epoch are on disk
      before the next one begins: a SIGKILL loses nothing that the checkpoint covers.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.save()

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            # numpy's key array as a tensor: a checkpoint must load with weights_only=True.
            "numpy": (
                numpy_state[0],
                torch.from_numpy(numpy_state[1].astype(np.int64)),
                *[v.item() if hasattr(v, "item") else v for v in numpy_state[2:]],
            ),
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["torch.cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        name, keys, *rest = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        if "torch.cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["torch.cuda"])


class InterruptNotice(Callback):
    """On SIGTERM or Ctrl-C during ``fit``, says which checkpoint ``--ckpt_path last`` resumes.

    Lightning already stops at the next batch boundary and closes the loggers; the resume point is
    the last epoch-end checkpoint, so that the resumed run equals one that never stopped.
    """

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            cause = "SIGTERM"
        elif isinstance(exception, KeyboardInterrupt):
            cause = "Ctrl-C"
        else:
            return
        if trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        last = latest_checkpoint(trainer)
        if last:
            hint = (
                f"Run the same command with --ckpt_path last to resume from {last} "
                "(the end of the last finished epoch)."
            )
        else:
            hint = "No epoch had finished, so there is no checkpoint yet: run the command again."
        epoch = trainer.current_epoch
        print(f"Training stopped by {cause} in epoch {epoch}. {hint}", file=sys.stderr)
