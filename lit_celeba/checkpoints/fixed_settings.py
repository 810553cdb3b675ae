"""The data settings a checkpoint fixes: a network trained at one image size and for some
attributes is evaluated on images of that size and for those attributes, whatever the config.

LightningCLI restores the model's hyperparameters from ``--ckpt_path`` but not the data
module's, so ``test --config configs/base.yaml --ckpt_path X`` would feed a network trained at
128 px with 64 px images. :func:`restore_data_settings` takes them from the checkpoint instead;
a value the user typed on the command line that disagrees is an error, not silently replaced.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from lightning_fabric.utilities.types import _PATH

from lit_celeba.attributes import attribute_list
from lit_celeba.errors import CheckpointError

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
    data: Any, checkpoint: Mapping[str, Any], path: _PATH, args: Sequence[str]
) -> list[str]:
    """Set ``data``'s (the parsed ``data`` section) fixed settings to the checkpoint's; returns a
    note for each one that the config had otherwise. Raises :class:`CheckpointError` for an
    image size typed on the command line that the checkpoint disagrees with (a different
    ``--data.target_attr`` is left for ``check_checkpoint``, whose message names both lists)."""
    trained = checkpoint.get("datamodule_hyper_parameters")
    if not isinstance(trained, Mapping):
        return []  # a checkpoint without data settings: the config's stand
    notes = []
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
