"""One clear message for each kind of bad input that reaches the command line.

``cli_main`` prints these as ``error: ...`` and exits with status 2. The functions here turn what
jsonargparse, Lightning, the classes' own checks and DataLoader workers raise into that message:
the culprit (file, setting, value) and the fix, without a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from pathlib import Path

import pytorch_lightning as pl

from lit_celeba.base.errors import SettingError, UsageError
from lit_celeba.methods.degradations import key_ranges
from lit_celeba.models.nets import Net
from lit_celeba.moved_settings import (
    OLD_DATA_KEYS,
    OLD_MODEL_FORM,
    OLD_RUN_CONFIG,
    config_file_keys,
    old_model_key,
    old_training_key,
    old_training_section,
)
from lit_celeba.setting_groups import DATA_GROUPS, group_message, one_value_message

# Arguments the CLI sets from another key (cli.py's links): an error in one names the key the user
# sets. model.subgroups is the source of its link, so it stays as it is.
LINKED_KEYS = {
    "model.net.image_size": "data.image_size",
    "model.net.num_outputs": "data.target_attr",
    "model.target_attrs": "data.target_attr",
    "data.subgroups": "model.subgroups",
}


def setting_key(section: str | None, setting: str) -> str:
    """The command-line key of a class's argument ``setting`` in ``section`` (data/model/...)."""
    key = f"{section}.{setting}" if section else setting
    return LINKED_KEYS.get(key, key)


def _setting_error(err: BaseException) -> SettingError | None:
    """The :class:`SettingError` that ``err`` is or was raised from, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, SettingError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def setting_message(err: BaseException) -> str:
    """The message of a setting that the model, data module or trainer refused while built.

    jsonargparse wraps the class's own error in a "Does not validate against any of the Union
    subtypes" message; the class's error, the innermost one, is the useful part. A
    :class:`SettingError` names the class's own argument; the key is the section of the object
    being built plus that name.
    """
    refused = _setting_error(err)
    if refused is not None:
        key = setting_key(_section_of(refused), refused.setting)
        return f"Invalid setting: {key} {refused.problem}"
    inner = err
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__
    message = str(inner).strip()
    section = _section_of(inner)
    if section is None:
        return f"Invalid setting: {message}"
    return f"Invalid {section} setting: {message}"


def _section_of(err: BaseException) -> str | None:
    """Which object was being built when ``err`` was raised: the innermost frame that belongs to a
    LightningModule, LightningDataModule or Trainer (a network inside the module is "model")."""
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        owner = frame.f_locals.get("self")
        if isinstance(owner, pl.LightningModule):
            return "model"
        if isinstance(owner, Net):  # built by the CLI before the module that takes it
            return "model.net"
        if isinstance(owner, pl.LightningDataModule):
            return "data"
        if isinstance(owner, pl.Trainer):
            return "trainer"
    return None


def argument_message(err: BaseException, argv: list[str] | None = None) -> str:
    """jsonargparse's parse errors, without the union-type noise, plus where to look; ``argv``,
    the command line, for the errors that the order of its options explains."""
    text = str(err)
    later = _configs_after_logger_false(argv or [])
    if later and "trainer.logger" in text:
        return (
            f"--trainer.logger false comes before --config {', '.join(later)}, which is read "
            "after it and sets the logger's settings (trainer.logger.init_args) over \"no "
            "logger\": a later option applies over an earlier one. Put --trainer.logger false "
            "after the --config files."
        )
    old_key = (old_model_key(argv or []) or old_training_key(argv or [])
               or old_training_section(text, _config_files(argv or [])))  # fmt: skip
    if old_key:
        return old_key
    if re.search(r"(Group 'model' .*|does not accept option 'model\.)(class_path|init_args)", text):
        return (
            f"A config file's model: section is in its form before lit_celeba took the network "
            f"as model.net ({text.strip()}). {OLD_MODEL_FORM} An earlier run's checkpoint still "
            "loads (--ckpt_path); its config.yaml needs the new form."
        )
    old = [key for key in OLD_DATA_KEYS if re.search(rf"\b{re.escape(key)}\b", text)]
    if old:  # jsonargparse names one unknown key at a time
        said = " ".join(f"--{key} {OLD_DATA_KEYS[key]}." for key in old)
        typed = any(f"--{key}" in arg for arg in argv or [] for key in old)
        if typed:
            return said
        names = {key.removeprefix("data.") for key in old}
        files = [name for name in _config_files(argv or [])
                 if names & config_file_keys(name, "data")]  # fmt: skip
        where = f"It is under data: in {', '.join(files)}. " if files else ""
        return f"{said} {where}{OLD_RUN_CONFIG}"
    # A link's compute_fn (cli.py: attribute_list) refused the value of the link's source key.
    link = re.search(r"Call to compute_fn of link '\w+\(([\w.]+)\) -->", text)
    refused = _setting_error(err)
    if link and refused is not None:
        return f"Invalid setting: {link.group(1)} {refused.problem}"
    key = re.match(r'Parser key "([^"]+)"', text)
    given = re.search(r"Given value: (.+)$", text, flags=re.MULTILINE)
    said = group_message(key.group(1) if key else None, text)
    if said:
        return said
    if key and key.group(1) == "data.cache" and given:
        return (f"Invalid setting: data.cache takes true, memory, device or false; got "
                f"{given.group(1).strip()}.")  # fmt: skip
    photo = key and key.group(1) == "data.photo"
    noise = (
        "Does not validate against any of the Union subtypes",
        "Subtypes:",
        "Errors:",
        "Given value type:",
        "Given value:",
        "- Expected a <class 'NoneType'>",
    )
    lines = [line.strip(" -") for line in text.splitlines()]
    lines = [line for line in lines if line and not any(n.strip(" -") in line for n in noise)]
    message = " ".join(lines)
    if photo:  # which key is wrong jsonargparse does not say: what each one takes
        return (f"{message}. data.photo takes a mapping such as --data.photo '{{p: 0.5, blur: "
                f"1.0}}', of these keys: {key_ranges()}.")  # fmt: skip
    return f"{message}\n(Run with --help for the accepted options and their types.)"


def _words(argv: list[str]) -> list[str]:
    """The command line with ``--key=value`` as two words."""
    return [w for arg in argv for w in (arg.split("=", 1) if arg.startswith("--") else [arg])]


def group_given_a_file(argv: list[str]) -> str | None:
    """What ``--data.GROUP FILE`` says where FILE is not a config file of the group's keys
    (jsonargparse reads a group's one value as such a file, and fails on a photo's bytes)."""
    words = _words(argv)
    for word, value in zip(words, words[1:], strict=False):
        name = word.removeprefix("--data.")
        if word.startswith("--data.") and name in DATA_GROUPS and Path(value).is_file():
            return f"{one_value_message(name)} (got the file {value})"
    return None


def _config_files(argv: list[str]) -> list[str]:
    """The ``--config`` files of ``argv``, in order."""
    words = _words(argv)
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word in ("--config", "-c")]


def _configs_after_logger_false(argv: list[str]) -> list[str]:
    """The ``--config`` files given after ``--trainer.logger false`` (or ``=false``)."""
    words = _words(argv)
    configs, seen = [], False
    for i, word in enumerate(words[:-1]):
        if word == "--trainer.logger" and words[i + 1].lower() in ("false", "null", "[]"):
            seen = True
        elif seen and word in ("--config", "-c"):
            configs.append(words[i + 1])
    return configs


def worker_message(message: str) -> str:
    """The original message of an error that a DataLoader worker re-raised with its traceback."""
    if message.startswith("Caught ") and "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return message


def check_writable(folder: str | os.PathLike, setting: str) -> None:
    """Create ``folder`` if needed and write a file there, or raise :class:`UsageError`."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        reason = "a file of that name is in the way" if folder.is_file() else err.strerror or err
        raise UsageError(
            f"Cannot write to the log folder {folder}: {reason}. Choose a writable folder with "
            f"--{setting}, or fix the folder's permissions."
        ) from None


# What Lightning's seed_everything (numpy's generator) accepts.
SEED_RANGE = (0, 2**32 - 1)


def check_seed(seed: object, what: str = "--seed_everything") -> None:
    """Refuse a seed outside :data:`SEED_RANGE` (Lightning would stop with a traceback); ``True``
    (a random seed) and ``False`` (no seeding) are choices of their own."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        return
    low, high = SEED_RANGE
    if not low <= seed <= high:
        raise UsageError(f"{what} {seed} is out of range: a seed is a whole number from {low} "
                         f"to {high} (2**32 - 1).")


def run_folder_line(log_dir: str | os.PathLike | None, logged: bool) -> str | None:
    """Where a run's files are, and the command that shows its logs, quoted for a shell."""
    if not log_dir:
        return None
    if not logged:
        return f"Run folder (no logger): {log_dir}"
    return f"Logs: {log_dir}  (view with: tensorboard --logdir {shlex.quote(str(log_dir))})"
