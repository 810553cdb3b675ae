"""What a parse error of a setting that is a group of keys says, where jsonargparse's own message
hides it: the optimizer and the scheduler (a class and its settings) and the data module's
groups (``subsets``, ``colour``, ``predict``, ``synthetic``: dataclasses).
:mod:`lit_celeba.cli_messages` asks here first."""

from __future__ import annotations

import dataclasses
import inspect
import pydoc
import re
from typing import Any

import torch

from lit_celeba.base.errors import UsageError
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.demo_set import DemoSet
from lit_celeba.data.photos import PredictPhotos
from lit_celeba.data.settings import Subsets
from lit_celeba.methods.colour import ColourChanges
from lit_celeba.models.schedules import PLATEAU_NEEDS_MONITOR
from lit_celeba.moved_settings import SYNTHETIC_WAS_A_SWITCH

# The data module's settings that are groups of keys, and what each key takes beyond its type.
DATA_GROUPS = {
    "subsets": (Subsets, ""),
    "colour": (ColourChanges, ", each from 0 (off) to 1"),
    "predict": (PredictPhotos, ""),
    "synthetic": (DemoSet, ""),
}
# The groups whose null means something (synthetic: read CelebA, generate nothing): those the
# data module defaults to null.
_NULLABLE = {name for name, parameter in inspect.signature(CelebADataModule).parameters.items()
             if name in DATA_GROUPS and parameter.default is None}  # fmt: skip


def group_message(key: str | None, text: str) -> str | None:
    """The message for jsonargparse's error ``text`` about ``key`` (the parser key it names, if
    any), or ``None`` where it is not about a group's keys."""
    if key in ("model.optimizer", "model.scheduler"):
        return _optimization_message(key, text)
    if key == "data.synthetic" and re.search(
        r"Given value: (true|false)\b|Got value: (True|False)\b", text, flags=re.IGNORECASE
    ):
        return f"{SYNTHETIC_WAS_A_SWITCH}."
    unknown = re.search(rf"(?:arguments: --|option ')data\.({'|'.join(DATA_GROUPS)})\.(\w+)", text)
    if unknown:
        group, name = unknown.groups()
        said = f"Invalid setting: data.{group} has no {name!r}; {_takes(group)}"
        if group == "predict" and name in ("output", "overwrite", "maps"):
            said += f" Where predictions go is the writer's: --prediction.{name}."
        return said
    misplaced = re.search(r"arguments: --prediction\.(path|align|min_face_size)\b", text)
    if misplaced:
        return (f"--prediction.{misplaced.group(1)}: the photos predict reads and how it finds "
                f"faces are data settings: --data.predict.{misplaced.group(1)}; --prediction.* is "
                "where the predictions go (output, overwrite, maps).")  # fmt: skip
    given = re.search(r"Unable to load config ['\"](.*?)['\"]", text)
    if key and key.removeprefix("data.") in DATA_GROUPS and given:
        name = key.removeprefix("data.")
        if given.group(1) in ("null", "None"):
            return _not_null(name)
        if given.group(1).lstrip().startswith("{"):
            return (f"Invalid setting: {key} {given.group(1)} could not be read as a group of "
                    "keys: write it as YAML, with a space after each colon ({key: value, ...}); "
                    + _takes(name))  # fmt: skip
        return one_value_message(name)
    return None


def one_value_message(group: str) -> str:
    """What a data group given one value (a number, a list, a file) says."""
    first = dataclasses.fields(DATA_GROUPS[group][0])[0].name
    return (f"Invalid setting: data.{group} is a group of settings, not one value: "
            f"--data.{group}.{first} VALUE, or in a config file data: {{{group}: {{{first}: "
            f"VALUE}}}}; {_takes(group)}")  # fmt: skip


def check_groups_are_groups(data: Any) -> None:
    """Refuse a config file's ``null`` for a data group that has no null form (``subsets``,
    ``colour``, ``predict``), and a number or a list for any group: jsonargparse passes both on
    to a traceback when it builds the data module."""
    for name in DATA_GROUPS:
        value = (data or {}).get(name, {})
        if value is None and name not in _NULLABLE:
            raise UsageError(_not_null(name))
        if value is not None and not hasattr(value, "items") and not dataclasses.is_dataclass(
            value
        ):
            raise UsageError(f"{one_value_message(name)} (got {value!r})")


def _not_null(group: str) -> str:
    return (f"Invalid setting: data.{group} is a group of settings, not null: leave it out to "
            f"keep the values the config files give it (or its defaults), or set a key "
            f"(--data.{group}.KEY VALUE); {_takes(group)}")  # fmt: skip


def _takes(group: str) -> str:
    data_class, ranges = DATA_GROUPS[group]
    names = [field.name for field in dataclasses.fields(data_class)]
    return f"it takes {', '.join(names)}{ranges}."


def _optimization_message(key: str, text: str) -> str | None:
    """What a parse error of ``model.optimizer`` or ``model.scheduler`` says, where jsonargparse's
    own message hides it: the short name ReduceLROnPlateau (two classes), a setting missing,
    unknown or of the wrong type, or an unknown class."""
    if re.search(r"Multiple subclasses with name ReduceLROnPlateau\b", text):
        return (f"Invalid setting: {key} ReduceLROnPlateau names two classes, torch's and "
                "Lightning's; use --model.scheduler pytorch_lightning.cli.ReduceLROnPlateau, "
                "which takes the metric it watches: --model.scheduler.monitor val/loss (or "
                "val/acc with --model.scheduler.mode max).")  # fmt: skip
    chosen = re.search(r"class_path='([\w.]+)'", text)
    chosen_class = chosen.group(1) if chosen else None
    missing = re.search(r"arguments are required: ([\w, ]+)", text)
    if missing and missing.group(1).strip() == "monitor":
        return f"Invalid setting: {key} {PLATEAU_NEEDS_MONITOR}."
    if missing and chosen_class:
        names = [name.strip() for name in missing.group(1).split(",")]
        return (f"Invalid setting: {key} {chosen_class} needs {', '.join(names)}: give "
                f"--{key}.{names[0]} ...")  # fmt: skip
    option = re.search(r"Option '(\w+)' is not accepted", text)
    if option and chosen_class in (None, "typing.Union"):  # a setting, but no class to take it
        return (f"Invalid setting: {key}.{option.group(1)} is a setting of {key}, which names "
                f"no class yet: give the class first (--{key} CLASS --{key}.{option.group(1)} "
                f"..., or in a config file {key.split('.')[1]}: {{class_path: CLASS, init_args: "
                "{...}}).")  # fmt: skip
    if option and option.group(1) == "monitor" and chosen_class.endswith(".ReduceLROnPlateau"):
        return f"Invalid setting: {key} {PLATEAU_NEEDS_MONITOR}."
    if option:
        accepted = [name for name in inspect.signature(pydoc.locate(chosen_class)).parameters
                    if name not in ("self", "params", "optimizer")]  # fmt: skip
        return (f"Invalid setting: {key} {chosen_class} takes no {option.group(1)!r}; its "
                f"settings: {', '.join(accepted)}.")
    setting = re.search(r'callable class: Parser key "(\w+)"', text)
    if setting:
        given = re.search(r"Given value: (.*?)(?:\. Got value|$)", text, flags=re.MULTILINE)
        expected = re.search(r"Expected a <class '(\w+)'>", text)
        return (f"Invalid setting: {key}.{setting.group(1)} of {chosen_class} takes a "
                f"{expected.group(1) if expected else 'other value'}, got "
                f"{given.group(1) if given else 'another value'}.")  # fmt: skip
    unknown = re.search(r"but (\S+) either not accessible", text)
    if unknown is None:
        return None
    if key == "model.optimizer":
        base, module, example = torch.optim.Optimizer, torch.optim, "Adam"
    else:
        base, module = torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler
        example = "lit_celeba.models.schedules.WarmupCosineLR"
    names = sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, base) and not name.startswith("_")
        and value is not base
    )  # fmt: skip
    return (
        f"Unknown {key} {unknown.group(1)!r}. Use one of {module.__name__}: {', '.join(names)} "
        f"(e.g. --{key} {example}), or the full class path of another {base.__name__} subclass."
    )
