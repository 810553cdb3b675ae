"""What a checkpoint fixes, and what the command line may change.

The data settings: a network trained at one image size and for some attributes is evaluated on
images of that size and for those attributes, whatever the config. LightningCLI restores the
model's hyperparameters from ``--ckpt_path`` but not the data module's, so ``test --config
configs/base.yaml --ckpt_path X`` would feed a network trained at 128 px with 64 px images.
:func:`restore_data_settings` takes them from the checkpoint instead; a value the user typed on
the command line that disagrees is an error, not silently replaced (:func:`check_targets`).

The model settings: LightningCLI replaces the config's with the checkpoint's, also those typed
on the command line. :func:`apply_model_settings` applies those that change only how the
outputs are computed or read (flip TTA, temperatures, thresholds) and refuses the others that
disagree; :func:`stale_calibration_note` names a calibration older than the weights.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from lightning_fabric.utilities.types import _PATH

from lit_celeba.attributes import CELEBA_ATTRIBUTES, attribute_list
from lit_celeba.base.errors import CheckpointError
from lit_celeba.checkpoints.training_data import restore_training_data
from lit_celeba.checkpoints.training_data import shown as _shown

# Data settings (CelebADataModule arguments) that must equal the ones the checkpoint was trained
# with. target_attr is compared as a list of names ("Male" and "[Male]" are the same targets).
FIXED_DATA_SETTINGS = ("image_size", "target_attr")


def given_on_command_line(args: Sequence[str], key: str) -> bool:
    """Whether ``--key VALUE`` or ``--key=VALUE`` is among ``args`` (config files not counted)."""
    flag = f"--{key}"
    return any(arg == flag or arg.startswith(f"{flag}=") for arg in args)


def _same(setting: str, a: Any, b: Any) -> bool:
    if setting == "target_attr":
        return attribute_list(a) == attribute_list(b)
    return a == b


def restore_data_settings(
    data: Any, checkpoint: Mapping[str, Any], path: _PATH, args: Sequence[str], command: str = ""
) -> list[str]:
    """Set ``data``'s (the parsed ``data`` section) fixed settings to the checkpoint's; returns a
    note for each one that the config had otherwise. Raises :class:`CheckpointError` for an
    image size typed on the command line that the checkpoint disagrees with (a different
    ``--data.target_attr`` is left for ``check_checkpoint``, whose message names both lists).
    The training data settings of :func:`restore_training_data` follow their own rule."""
    trained = checkpoint.get("datamodule_hyper_parameters")
    if not isinstance(trained, Mapping):
        return []  # a checkpoint without data settings: the config's stand
    notes = restore_training_data(data, trained, path, args, command)
    for setting in FIXED_DATA_SETTINGS:
        if setting not in trained or trained[setting] is None:
            continue
        value, asked = trained[setting], data.get(setting)
        if asked is not None and _same(setting, value, asked):
            continue
        if given_on_command_line(args, f"data.{setting}"):
            if setting == "target_attr":
                continue
            raise CheckpointError(
                f"{path} was trained with data.{setting} {value}, but --data.{setting} is "
                f"{asked}. Leave --data.{setting} out (it is taken from the checkpoint), or pass "
                f"--data.{setting} {value}."
            )
        data[setting] = value
        notes.append(
            f"Using data.{setting} {value} from {path} (the config says {asked}): a network "
            "is evaluated on the inputs it was trained on."
        )
    return notes


# Model settings that change how a trained network's outputs are computed or read, not its
# weights: one typed on the command line applies over the checkpoint's. Turning the temperatures
# off and the thresholds back to 0.5 works anywhere; fitting them (temperatures where the
# checkpoint has none, thresholds by another rule) needs the validation split: fit or calibrate.
EVALUATION_SETTINGS = ("tta_flip", "temperature_scaling", "thresholds", "compile", "channels_last")
FITTING_COMMANDS = ("fit", "calibrate")
# Settings that make other weights: another value is another network. The network's settings
# (net.*) all do but NET_TRAINING_SETTINGS; the rest (label_smoothing, ema_decay, objective, ...)
# act only in training.
SHAPE_SETTINGS = ("target_attrs",)
NET_TRAINING_SETTINGS = ("net.dropout",)


def typed_model_keys(args: Sequence[str]) -> list[str]:
    """The model settings given on the command line: ``--model.KEY`` (with ``=VALUE`` or before
    it), ``net.KEY`` for ``--model.net.KEY`` or ``--model.net.init_args.KEY``, and ``net`` for
    ``--model.net`` (another network class)."""
    keys = []
    for arg in args:
        name = arg.split("=", 1)[0]
        if not name.startswith("--model."):
            continue
        parts = name.removeprefix("--model.").split(".")
        if parts[0] == "net" and len(parts) > 1:
            rest = parts[2:] if parts[1] == "init_args" else parts[1:]
            keys.append(f"net.{rest[0]}" if rest else "net")
        else:
            keys.append(parts[0])
    return [k for k in dict.fromkeys(keys) if k not in ("subgroups", "net.class_path")]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def _setting(section: Any, key: str) -> tuple[bool, Any]:
    """``(found, value)`` of ``key`` in a model section (a dict or a parsed Namespace), where
    ``net.KEY`` is the network's ``init_args``."""
    def get(owner: Any, name: str) -> tuple[bool, Any]:
        if isinstance(owner, Mapping):
            return name in owner, owner.get(name)
        return hasattr(owner, name), getattr(owner, name, None)

    if not key.startswith("net."):
        return get(section, key)
    found, net = get(section, "net")
    found, init_args = get(net, "init_args") if found else (False, None)
    return get(init_args, key.removeprefix("net.")) if found else (False, None)


def _class_name(net: Any) -> str:
    """``RecipeCNN`` of a network's ``{class_path, init_args}``, as a dict or a Namespace."""
    _, class_path = _setting(net, "class_path")
    return str(class_path or "").rsplit(".", 1)[-1]


def apply_model_settings(
    checkpoint: dict[str, Any], model: Any, args: Sequence[str], path: _PATH, command: str
) -> list[str]:
    """Put the evaluation settings typed on the command line (``args``) into the checkpoint's
    hyperparameters, from which the command builds its model; returns a note for each. A typed
    model setting that the checkpoint disagrees with and that cannot apply is refused
    (:class:`CheckpointError`): the network and its shape, what acts only in training, and
    outside ``fit`` and ``calibrate`` temperatures or thresholds that would need fitting.
    ``model`` is the command's parsed ``model`` section (the typed values)."""
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or model is None:
        return []
    notes = []
    for key in typed_model_keys(args):
        if key == "net":
            trained = _class_name(hparams.get("net"))
            asked = _class_name(getattr(model, "net", None))
            if trained and asked and asked != trained:
                raise CheckpointError(
                    f"{path} holds a {trained}, but --model.net is {asked}: another network. "
                    "Leave --model.net out (it is taken from the checkpoint), or train that "
                    "network with fit."
                )
            continue
        (saved, trained), (given, asked) = _setting(hparams, key), _setting(model, key)
        if not (saved and given):
            continue  # not saved (an older checkpoint): the typed value applies as it is
        if _plain(trained) == _plain(asked):
            continue
        _check_applies(key, trained, asked, checkpoint, path, command)
        hparams[key] = asked
        notes.append(f"Using --model.{key} {_shown(asked)} over the {_shown(trained)} of {path}.")
    return notes


def _check_applies(
    key: str, trained: Any, asked: Any, checkpoint: Mapping[str, Any], path: _PATH, command: str
) -> None:
    leave_out = f"Leave --model.{key} out (it is taken from the checkpoint)"
    other_net = key.startswith("net.") and key not in NET_TRAINING_SETTINGS
    if key in SHAPE_SETTINGS or other_net:
        raise CheckpointError(
            f"{path} was trained with model.{key} {_shown(trained)}, but --model.{key} is "
            f"{_shown(asked)}, which makes another network (other weights). {leave_out}, or "
            f"train that network with fit (without --ckpt_path)."
        )
    if key not in EVALUATION_SETTINGS:
        what = "resumes a run with" if command == "fit" else "evaluates the network as trained,"
        raise CheckpointError(
            f"{path} was trained with model.{key} {_shown(trained)}, but --model.{key} is "
            f"{_shown(asked)}: model.{key} acts only in training, and `{command}` {what} "
            f"model.{key} {_shown(trained)}. {leave_out}, or train with it: fit without "
            "--ckpt_path."
        )
    if command in FITTING_COMMANDS:
        return
    calibration = checkpoint.get("calibration") or {}
    fitted_rule = calibration.get("rule", trained) if key == "thresholds" else None
    needs_fitting = (key == "temperature_scaling" and asked) or (
        key == "thresholds" and asked not in ("fixed", fitted_rule)
    )
    if needs_fitting:
        raise CheckpointError(
            f"--model.{key} {_shown(asked)} needs a calibration fitted on the validation split, "
            f"which {path} (model.{key} {_shown(trained)}) does not hold and `{command}` does "
            f"not fit. Run calibrate --ckpt_path {path} --model.{key} {_shown(asked)}, then "
            f"`{command}` its calibrated.ckpt."
        )


def stale_calibration_note(checkpoint: Mapping[str, Any], path: _PATH) -> str | None:
    """A note when the checkpoint's calibration was fitted to earlier weights than its own (saved
    after an epoch that did not validate), or never; None where it fits them, where the model
    asks for none (no temperatures, thresholds at 0.5), and for checkpoints from before the
    step was kept."""
    state = checkpoint.get("calibration")
    hparams = checkpoint.get("hyper_parameters") or {}
    wanted = hparams.get("temperature_scaling", True) or hparams.get("thresholds") != "fixed"
    if not isinstance(state, Mapping) or "fitted_at_step" not in state or not wanted:
        return None
    fitted, step = state["fitted_at_step"], checkpoint.get("global_step")
    if fitted == step:
        return None
    fix = f"`calibrate --ckpt_path {path}` fits one to them."
    if fitted is None:
        return (
            f"Note: {path} holds no calibration of its weights (step {step}; no validation ran "
            f"before it was saved): temperature 1 and threshold 0.5 apply. {fix}"
        )
    return (
        f"Note: the calibration in {path} was fitted at step {fitted}, to earlier weights than "
        f"its own (step {step}, an epoch that did not validate). {fix}"
    )


def check_targets(checkpoint: Mapping[str, Any], path: _PATH, target_attr: Any) -> None:
    """Refuse a checkpoint trained for other target attributes than ``target_attr``."""
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
    """As the command line takes it: a name, ``all`` for CelebA's 40, or a quoted YAML list."""
    if names == list(CELEBA_ATTRIBUTES):
        return "all"
    return names[0] if len(names) == 1 else '"[' + ", ".join(names) + ']"'

