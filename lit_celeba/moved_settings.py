"""Settings of earlier lit_celeba versions (issue 33's moves), and what each one says now.

A key that moved or went, typed or in a config file, is answered with one line that names its
new form (:mod:`lit_celeba.cli_messages` prints it); ``fit --ckpt_path last`` still resumes a run
saved with them (:mod:`lit_celeba.checkpoints.runs`, :mod:`lit_celeba.checkpoints.legacy`).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from lit_celeba.checkpoints.legacy import OLD_MODEL_CLASSES, OLD_NET_SETTINGS


def _moved(new: str) -> str:
    """What an old key that moved to ``new`` (``prediction.output``) says."""
    section, name = new.split(".", 1)
    return (f"is now --{new} (in a config file: {section}: {{{name}: ...}} at the top level, not "
            "under data:)")  # fmt: skip


# Data settings of earlier versions (issue 33's moves), and what their key says now. A run saved
# with them still resumes: checkpoints/legacy.upgrade_saved_config reads its config.yaml in
# today's form (the moved keys as the keys they became; the gone ones changed nothing fit
# computes).
OLD_DATA_KEYS = {
    "data.predict_output": _moved("prediction.output"),
    "data.predict_overwrite": _moved("prediction.overwrite"),
    "data.predict_maps": _moved("prediction.maps"),
    "data.predict_split": "is gone: predict without --data.predict.path always reads the test "
    "split (as test does); validate or calibrate cover the validation split",
    "data.device_resident": "is gone: it is a value of --data.cache now: --data.cache device for "
    "true, --data.cache memory for false; true, the default, keeps the cache on a CUDA GPU when "
    "it fits (what device_resident null did)",
    "data.train_subgroups": "is gone: the training batches carry the subgroup values whenever "
    "there is one target_attr and model.subgroups",
    "data.group_balanced": "true is now --data.sampler group_balanced, and false --data.sampler "
    "random, the default (in a config file: data: {sampler: group_balanced})",
    "data.synthetic_seed": "is now --data.synthetic.seed (in a config file: data: {synthetic: "
    "{seed: 1}})",
    "data.synthetic_correlate": "is now --data.synthetic.correlate (in a config file: data: "
    "{synthetic: {correlate: [Blond_Hair, Male, 0.05]}})",
    **{
        f"data.{old}": f"is now --data.subsets.{new}, one of the subsets' settings (in a config "
        f"file: data: {{subsets: {{{new}: {example}}}}})"
        for old, new, example in (
            ("train_size", "train", 16000),
            ("val_size", "val", 1000),
            ("test_size", "test", "null"),
            ("subset_order", "order", "tfds"),
        )
    },
    **{
        f"data.{old}": f"is now --data.predict.{new}, one of predict's photo settings (in a "
        f"config file: data: {{predict: {{{new}: {example}}}}})"
        for old, new, example in (
            ("predict_path", "path", "my_photos/"),
            ("align", "align", "never"),
            ("min_face_size", "min_face_size", 0),
        )
    },
    **{
        f"data.{name}": f"is now --data.colour.{name}, one of the colour changes (in a config "
        f"file: data: {{colour: {{{name}: 0.2}}}})"
        for name in ("brightness", "contrast", "saturation")
    },
}
# The model before the network was injected (issue 33, step 9): a class per network, which took
# the network's arguments beside its own, all under model.init_args in a config file
# (checkpoints/legacy.py reads them in today's form).
OLD_MODEL_FORM = (
    "The network is model.net now, with its own settings (in a config file: model: {net: "
    "{class_path: lit_celeba.models.nets.RecipeCNN or ResNet, init_args: {channels, dropout, "
    "pooling, init, batch_norm or arch}}}), and the module's settings (channels_last, "
    "label_smoothing, ...) go straight under model:, without class_path or init_args."
)
# A config file that holds an old key is most often an earlier run's config.yaml, which holds
# every key at its value then.
_OLD_NAMES = [key.removeprefix("data.") for key in OLD_DATA_KEYS]
OLD_RUN_CONFIG = (
    f"If the config file is an earlier run's config.yaml, delete {', '.join(_OLD_NAMES[:-1])} "
    f"and {_OLD_NAMES[-1]} from its data: section (at the defaults it saved they change nothing;"
    " a value you chose goes to its new key)."
)


def old_model_key(argv: list[str]) -> str | None:
    """What the first option of ``argv`` in the model's old form says, if there is one."""
    for index, arg in enumerate(argv):
        name, _, value = arg.partition("=")
        if name == "--model" and not value and index + 1 < len(argv):
            value = argv[index + 1]
        if name == "--model" and value.rsplit(".", 1)[-1] in OLD_MODEL_CLASSES:
            new = OLD_MODEL_CLASSES[value.rsplit(".", 1)[-1]]
            return f"--model {value} is now --model.net {new}. {OLD_MODEL_FORM}"
        parts = name.removeprefix("--model.").split(".") if name.startswith("--model.") else []
        old_long_form = parts[:1] == ["init_args"] and len(parts) > 1
        key = parts[1] if old_long_form else (parts[0] if parts else "")
        if key in OLD_NET_SETTINGS or old_long_form:
            new = f"--model.net.{key}" if key in OLD_NET_SETTINGS else f"--model.{key}"
            return f"{name} is now {new}. {OLD_MODEL_FORM}"
    return None


# The optimizer and scheduler before they were the model's callables (issue 33, step 10):
# LightningCLI's top-level groups. Their settings kept their names below the new key.
OLD_TRAINING_KEYS = {"optimizer": "model.optimizer", "lr_scheduler": "model.scheduler"}


def _training_key_now(old: str) -> str:
    """``--optimizer.lr`` -> ``--model.optimizer.lr``; ``lr_scheduler`` -> ``model.scheduler``."""
    group, dot, rest = old.partition(".")
    return f"{OLD_TRAINING_KEYS[group]}{dot}{rest}"


OLD_TRAINING_FORM = (
    "The optimizer and the learning-rate schedule are the model's settings now (in a config "
    "file: model: {optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}, "
    "scheduler: {class_path: ..., init_args: ...}}, not at the top level)."
)


def old_training_key(argv: list[str]) -> str | None:
    """What the first ``--optimizer...`` or ``--lr_scheduler...`` option of ``argv`` says."""
    for arg in argv:
        name = arg.partition("=")[0]
        if name.startswith("--") and name[2:].partition(".")[0] in OLD_TRAINING_KEYS:
            return f"{name} is now --{_training_key_now(name[2:])}. {OLD_TRAINING_FORM}"
    return None


def old_training_section(text: str, config_files: list[str]) -> str | None:
    """What a parse error about a config file's top-level ``optimizer:`` or ``lr_scheduler:``
    (jsonargparse: "does not accept option 'optimizer.init_args.lr'", or under
    ``--print_config`` "Option 'optimizer.init_args.lr' is not accepted") says, naming the file
    among the command's ``config_files``."""
    found = re.search(
        r"(?:does not accept option|Option) '((optimizer|lr_scheduler)\b[\w.]*)'", text
    )
    if found is None:
        return None
    files = [name for name in config_files if found.group(2) in config_file_keys(name)]
    return (
        f"{files[0] if files else 'A config file'} has a top-level {found.group(2)}: section, "
        f"which is "
        f"model: {{{OLD_TRAINING_KEYS[found.group(2)].split('.')[1]}: ...}} now. "
        f"{OLD_TRAINING_FORM} If the file is an earlier run's config.yaml, move the section "
        "there; the run's checkpoint still resumes (--ckpt_path)."
    )


def config_file_keys(name: str, section: str | None = None) -> set[str]:
    """The keys of the config file ``name`` (of its ``section``, if given); none when it cannot
    be read: the messages that ask are about another error already."""
    try:
        loaded = yaml.safe_load(Path(name).read_text())
    except (OSError, yaml.YAMLError):
        return set()
    if section is not None and isinstance(loaded, dict):
        loaded = loaded.get(section)
    return set(loaded) if isinstance(loaded, dict) else set()


# data.synthetic was true or false before it held the demo set's settings (issue 33).
SYNTHETIC_WAS_A_SWITCH = (
    "--data.synthetic is the demo set's settings now, not true or false: --data.synthetic "
    "'{seed: 0}' (or --data.synthetic.seed N) generates it, and null, the default, reads a CelebA "
    "copy (in a config file: data: {synthetic: {seed: 0}}, or synthetic: null)"
)
