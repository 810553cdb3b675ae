"""The one way every command reads a checkpoint: :func:`load`, and :func:`rebuild` for the network.

- :func:`load_checkpoint` unpickles tensors and plain values only (``weights_only``), with one
  clear message for a missing, truncated, foreign or code-running file; Lightning's own second
  read (``AtomicCheckpointIO.load_checkpoint``) goes through it too.
  Hyperparameters written before the network was injected are read in today's form
  (:mod:`.legacy`).
- :func:`load` adds the checks: a network of lit_celeba's own, the data settings the
  checkpoint fixes (:mod:`.fixed_settings`: image size, targets) and the target attributes.
- :func:`model_settings` reads the model's arguments (the network's among them) from the
  hyperparameters, for the CLI (which puts them into its config) and :func:`rebuild` (which
  builds the LightningModule, for ``export`` and ``compare``); :func:`check_fits_model` refuses
  weights that do not fit it.
"""

import inspect
import pickle
import re
import sys
import zipfile
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.types import _PATH

from lit_celeba.base.errors import CheckpointError
from lit_celeba.checkpoints.fixed_settings import (
    FITTING_COMMANDS,
    apply_model_settings,
    check_targets,
    restore_data_settings,
    stale_calibration_note,
)
from lit_celeba.checkpoints.legacy import upgrade_hyperparameters
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.nets import NETS_PACKAGE, Net


def load(
    path: _PATH,
    data: MutableMapping[str, Any] | None = None,
    typed: Sequence[str] = (),
    model: Any = None,
    command: str = "",
) -> dict[str, Any]:
    """Read ``path`` safely (:func:`load_checkpoint`) and refuse a model class outside
    lit_celeba. With ``data`` (a command's parsed ``data`` section): set the data settings the
    checkpoint fixes, saying so on stderr for each one the config had otherwise, and refuse one
    typed on the command line (``typed``, the arguments) that disagrees, and other targets.
    With ``model`` (its parsed ``model`` section): the evaluation settings typed on the command
    line replace the checkpoint's, and the others that disagree are refused
    (:func:`~.fixed_settings.apply_model_settings`, for ``command``)."""
    checkpoint = load_checkpoint(path)
    _check_model_class(checkpoint, path)
    if data is not None:
        for note in restore_data_settings(data, checkpoint, path, typed, command):
            print(note, file=sys.stderr)
        check_targets(checkpoint, path, data.get("target_attr"))
    notes = apply_model_settings(checkpoint, model, typed, path, command)
    if command not in FITTING_COMMANDS:
        notes.append(stale_calibration_note(checkpoint, path))
    for note in filter(None, notes):
        print(note, file=sys.stderr)
    return checkpoint


def load_checkpoint(
    path: _PATH, map_location: Any = "cpu", weights_only: bool = True
) -> dict[str, Any]:
    """``torch.load`` a local checkpoint that holds tensors and plain values only.

    Raises :class:`CheckpointError` for a missing, truncated or foreign file, and for one that
    holds other Python objects: unpickling those could run code from the file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        inside = sorted(path.rglob("*.ckpt"), key=lambda p: (len(p.parts), str(p)))
        shown = f" (there: {', '.join(str(p) for p in inside[:3])})" if inside else ""
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint file. Give the path of a .ckpt file written by "
            f"`fit`{shown}, or --ckpt_path last for the newest run's last.ckpt."
        )
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} does not exist. Give the path of a .ckpt file written by `fit` "
            "(logs/<config>/version_N/checkpoints/), or --ckpt_path last for the newest one."
        )
    exported = _export_kind(path)
    if exported is not None:
        kind, how = exported
        raise CheckpointError(
            f"{path} is an export ({kind}), not a checkpoint: it holds the network for use "
            f"without lit_celeba ({how}; see `python -m lit_celeba export --help`). The commands "
            "take the .ckpt file it was exported from, e.g. logs/<config>/version_N/checkpoints/"
            "last.ckpt."
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        # torch's weights-only unpickler stops at the first thing that is not a tensor or a
        # plain value: a global (a class or function to import and call) is what runs code;
        # anything else is a file that is no checkpoint at all.
        # torch words it "Unsupported global: GLOBAL io.open" for a global it does not know and
        # "Trying to load unsupported GLOBAL posix.system whose module posix is blocked" for
        # one from a module it blocks outright (os, subprocess, ...): both are refusals.
        culprit = re.search(r"unsupported global:? (?:GLOBAL )?(\S+)", str(err), re.IGNORECASE)
        if culprit is None:
            detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
            raise _unreadable(path, detail.group(1) if detail else err) from None
        detail = f" (GLOBAL {culprit.group(1)})"
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
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, dict):
        upgrade_hyperparameters(hparams)
    return checkpoint


def _export_kind(path: Path) -> tuple[str, str] | None:
    """What ``export`` wrote, when ``path`` is one of its files: the kind and how it loads."""
    if path.suffix.lower() == ".onnx":
        return "ONNX", "onnxruntime.InferenceSession(path)"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(name.endswith("/archive_format") for name in names):
        return "torch.export program", "torch.export.load(path).module()"
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        return "TorchScript", "torch.jit.load(path)"
    return None


def _unreadable(path: Path, err: BaseException | str) -> CheckpointError:
    # torch's advice to load with weights_only=False would turn off the protection that keeps a
    # crafted file from running code: never pass it on.
    lines = [
        line.strip()
        for line in str(err).strip().splitlines()
        if line.strip() and "weights_only" not in line and "Weights only load failed" not in line
    ]
    reason = lines[0] if lines else type(err).__name__
    return CheckpointError(
        f"Cannot read checkpoint {path}: it is truncated, damaged or not a PyTorch file "
        f"(torch.load said: {reason}). Use another checkpoint, e.g. the best one next to it in "
        "the same folder."
    )


def _check_model_class(checkpoint: Mapping[str, Any], path: _PATH) -> None:
    """Refuse a checkpoint of a model or network outside lit_celeba: the CLI rebuilds the
    network from the class path saved in the checkpoint, so a crafted file must not name other
    modules. (Old model classes of lit_celeba's were read in today's form by then.)"""
    hparams = checkpoint.get("hyper_parameters") or {}
    if not isinstance(hparams, Mapping):
        return
    if "_class_path" in hparams:
        raise CheckpointError(
            f"{path} was saved by another model ({hparams['_class_path']!r}), not by lit_celeba. "
            "Use a checkpoint written by `python -m lit_celeba fit`."
        )
    net = hparams.get("net")
    if net is not None:
        _own_net_class(net.get("class_path") if isinstance(net, Mapping) else net, path)


def _own_net_class(class_path: Any, path: _PATH) -> type[Net]:
    if not isinstance(class_path, str) or not class_path.startswith(f"{NETS_PACKAGE}."):
        raise CheckpointError(
            f"{path} was saved with a network of another package ({class_path!r}), not one of "
            f"{NETS_PACKAGE}. Use a checkpoint written by `python -m lit_celeba fit`."
        )
    # Looked up in the module, never imported: importing runs module code.
    net_class = getattr(sys.modules[NETS_PACKAGE], class_path.rpartition(".")[2], None)
    if not (isinstance(net_class, type) and issubclass(net_class, Net)):
        raise CheckpointError(
            f"{path} names the network {class_path!r}, which this version of lit_celeba does not "
            "have. Use a checkpoint written by this version."
        )
    return net_class


def model_settings(checkpoint: Mapping[str, Any], path: _PATH) -> dict[str, Any]:
    """The arguments the checkpoint's :class:`AttributeClassifier` was built with, the network
    as ``{"class_path", "init_args"}``; an argument the class does not take is refused."""
    hparams = checkpoint.get("hyper_parameters") or {}
    # LightningCLI records `_instantiator`; the rest are the init arguments.
    init_args = {k: v for k, v in hparams.items() if not str(k).startswith("_")}
    parameters = inspect.signature(AttributeClassifier.__init__).parameters
    unknown = sorted(str(k) for k in init_args if k not in parameters or k == "self")
    if unknown:
        raise CheckpointError(
            f"{path} has hyperparameters that {AttributeClassifier.__name__} does not take: "
            f"{', '.join(unknown)}. It was written by another version of lit_celeba; use it "
            "with that version."
        )
    return init_args


def rebuild(checkpoint: Mapping[str, Any], path: _PATH) -> AttributeClassifier:
    """The checkpoint's LightningModule with its weights, in eval mode on the CPU: built from
    its hyperparameters (:func:`model_settings`), checked to fit (:func:`check_fits_model`)."""
    init_args = model_settings(checkpoint, path)
    # A checkpoint without hyperparameters: the recipe's network, as the CLI's default.
    net = init_args.pop("net", {"class_path": f"{NETS_PACKAGE}.RecipeCNN"})
    try:
        net_class = _own_net_class(net.get("class_path"), path)
        model = AttributeClassifier(net_class(**net.get("init_args", {})), **init_args)
    except (TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(
            f"{path}: its hyperparameters do not build {AttributeClassifier.__name__}: {err}"
        ) from None
    check_fits_model(model, checkpoint, path)
    model.on_load_checkpoint(checkpoint)  # as Lightning does before loading the weights
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def check_fits_model(model: torch.nn.Module, checkpoint: Mapping[str, Any], path: _PATH) -> None:
    """Refuse a checkpoint whose weights do not fit ``model``, listing what differs."""
    expected = model.state_dict()
    found = checkpoint["state_dict"]
    if isinstance(model, pl.LightningModule) and found:
        # The module's own hook first, on a copy, as Lightning calls it before loading: it
        # leaves out state that depends on settings outside the weights (the group buffers of
        # a Group DRO run tested or exported without its subgroups).
        copy = {**checkpoint, "state_dict": dict(found)}
        model.on_load_checkpoint(copy)
        found = copy["state_dict"]
    if not found:
        raise CheckpointError(
            f"{path} holds no weights (its state_dict is empty). Use a checkpoint written by "
            "`python -m lit_celeba fit`."
        )
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
    network = getattr(model, "net", model)
    raise CheckpointError(
        f"{path} does not fit the network {type(network).__name__} ({'; '.join(parts)}): it was "
        "saved by a different network. Use a checkpoint of this network, or the --model settings "
        "it was trained with."
    )
