"""The data and model settings of a training run that a checkpoint carries on, and the commands
that read it must keep or may change: how its faces were framed (``data.framing``) and degraded
(``data.photo``), and the subgroups of an objective that weighs the loss by group (which the
model does not save, and ``fit`` needs to resume it). See :mod:`.fixed_settings` for the rest.
"""

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_fabric.utilities.types import _PATH

from lit_celeba.base.errors import CheckpointError


def shown(value: Any) -> str:
    """A value as it is typed: false, 0.5, [32, 64], balanced_accuracy, {p: 0.5, blur: 1.0}."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _plain_photo(photo: Any) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in dict(photo or {}).items()}


def restore_training_data(
    data: Any, trained: Mapping[str, Any], path: _PATH, args: Sequence[str], command: str
) -> list[str]:
    """``data.framing`` (how the faces are framed) for every command but ``predict`` on photos
    (framed by the detector whatever it says), and ``data.photo`` (the degradations) for
    ``fit``, which resumes: the checkpoint's where the config says otherwise, with a note. One
    typed otherwise is refused by ``fit`` (it would resume on other images) and applies, with a
    note, to an evaluation."""
    notes = []
    for setting in ("framing", "photo"):
        if setting not in trained or (setting == "photo" and command != "fit"):
            continue
        photos = (data.get("predict") or {}).get("path")
        if setting == "framing" and command == "predict" and photos:
            continue
        value, asked = trained[setting], data.get(setting)
        if setting == "photo" and _plain_photo(value) == _plain_photo(asked):
            continue
        if setting == "framing" and value == asked:
            continue
        shown_value, shown_asked = shown(value), shown(asked)
        typed = any(a.split("=", 1)[0] in (f"--data.{setting}", f"--data.init_args.{setting}")
                    or a.startswith(f"--data.{setting}.") for a in args)  # fmt: skip
        if typed and command == "fit":
            raise CheckpointError(
                f"{path} was trained with data.{setting} {shown_value}, but --data.{setting} is "
                f"{shown_asked}: `fit` resumes a run on the images it was trained on. Leave "
                f"--data.{setting} out (it is taken from the checkpoint), or train with it: fit "
                "without --ckpt_path."
            )
        if typed:
            notes.append(f"Using --data.{setting} {shown_asked} over the {shown_value} of "
                         f"{path}: the network sees faces framed otherwise than in its "
                         "training.")  # fmt: skip
            continue
        data[setting] = value
        why = "fit resumes the run" if command == "fit" else "a network is evaluated"
        notes.append(f"Using data.{setting} {shown_value} from {path} (the config says "
                     f"{shown_asked}): {why} on the images it was trained on.")  # fmt: skip
    return notes


def resumed_subgroups(checkpoint: Mapping[str, Any], config: Any, command: str) -> dict[str, Any]:
    """For ``fit --ckpt_path X`` (``config``, the command's parsed config): the subgroups X was
    trained with, as model arguments, when its objective weighs the loss by group and the config
    names none (the model does not save them; the data module does). ``{}`` otherwise, and for
    the other commands, which do not train: only ``fit`` checks that a group objective has its
    groups (:func:`~lit_celeba.methods.groups.check_group_objective`), so that test, predict
    and the rest of such a checkpoint ask for no subgroups. A note says when they are taken."""
    if command != "fit":
        return {}
    path = config.ckpt_path
    hparams = checkpoint.get("hyper_parameters") or {}
    objective = hparams.get("objective", "erm") if isinstance(hparams, Mapping) else "erm"
    init_args = getattr(getattr(config, "model", None), "init_args", None) or {}
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    saved = data.get("subgroups") if isinstance(data, Mapping) else None
    if objective == "erm" or init_args.get("subgroups") or not saved:
        return {}
    print(
        f"Using model.subgroups {shown(saved)} from {path}: its model.objective {objective} "
        "weighs the training loss by these groups, and fit resumes it.",
        file=sys.stderr,
    )
    return {"subgroups": list(saved)}
