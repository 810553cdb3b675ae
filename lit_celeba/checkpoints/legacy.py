"""Model settings written before the network was injected (issue 33, step 9) or before the
optimizer and schedule were the model's (step 10), in today's form.

Before, the model was a class per network (``RecipeClassifier``, ``ResNetClassifier``) that took
the network's arguments beside its own; a checkpoint saved them flat with ``_class_path``, a
run's ``config.yaml`` as ``model: {class_path, init_args}``. Today there is one LightningModule,
and the network is its ``net: {class_path, init_args}``. :func:`upgrade_model_settings` turns
the one into the other, for checkpoints (:func:`~.load.load_checkpoint`, so every reader sees
today's form) and for saved configs (``fit --ckpt_path last``). The weights' names did not change.
A checkpoint never held the optimizer's settings; a saved config held them at its top level.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lit_celeba.attributes import count_attributes
from lit_celeba.models import nets
from lit_celeba.models.optimization import recipe_adam

# Each old model class: the network it built, and which of its arguments were the network's.
# ResNetClassifier's image_size is left out: torchvision's ResNet takes any size, and the
# network's input size is the data's (datamodule_hyper_parameters keep it).
_OLD_CLASSES = {
    "RecipeClassifier": (
        "RecipeCNN", ("channels", "dropout", "pooling", "image_size", "init", "batch_norm")
    ),
    "ResNetClassifier": ("ResNet", ("arch",)),
}
_DROPPED = {"ResNetClassifier": ("image_size",)}
# The network's settings that the CLI links from the data's (image size, one output per target).
LINKED_NET_SETTINGS = ("image_size", "num_outputs")
# What each old class is now, and the old network settings one may type (the linked ones are
# the data's to set), for the messages that answer an old key (cli_messages).
OLD_MODEL_CLASSES = {old: net for old, (net, _) in _OLD_CLASSES.items()}
OLD_NET_SETTINGS = tuple(dict.fromkeys(
    key for _, keys in _OLD_CLASSES.values() for key in keys if key not in LINKED_NET_SETTINGS
))  # fmt: skip
# The model's optimizer when none is given, as a saved config.yaml names it.
DEFAULT_OPTIMIZER = f"{recipe_adam.__module__}.{recipe_adam.__qualname__}"
# Where the old classes lived: lit_celeba.module before the package had subpackages.
_OLD_MODULES = ("lit_celeba.models.module", "lit_celeba.module")


def old_model_class(class_path: Any) -> str | None:
    """``RecipeClassifier`` or ``ResNetClassifier`` when ``class_path`` names one, else None."""
    if not isinstance(class_path, str):
        return None
    module, _, name = class_path.rpartition(".")
    return name if module in _OLD_MODULES and name in _OLD_CLASSES else None


def upgrade_model_settings(
    old: str, settings: Mapping[str, Any], linked: bool = True
) -> dict[str, Any]:
    """Today's model settings (with ``net``) from an old model class (``RecipeClassifier``,
    :func:`old_model_class`) and its flat arguments. ``linked=False`` leaves out the network's
    :data:`LINKED_NET_SETTINGS`, as a saved config leaves out every link's target."""
    net_class, net_keys = _OLD_CLASSES[old]
    outputs = count_attributes(settings.get("target_attrs", ("Male",)))
    net_args = {key: settings[key] for key in net_keys if key in settings}
    upgraded = {
        key: value for key, value in settings.items()
        if key not in net_keys and key not in _DROPPED.get(old, ())
    }  # fmt: skip
    # Every argument, as a run's config.yaml holds them today, so that the two compare.
    init_args = getattr(nets, net_class).full_settings(**net_args, num_outputs=outputs)
    if not linked:
        init_args = {k: v for k, v in init_args.items() if k not in LINKED_NET_SETTINGS}
    return {"net": {"class_path": f"{nets.NETS_PACKAGE}.{net_class}", "init_args": init_args},
            **upgraded}  # fmt: skip


def upgrade_hyperparameters(hparams: dict[str, Any]) -> None:
    """A checkpoint's model hyperparameters in today's form, in place. LightningCLI saved the
    old class as ``_class_path``; a checkpoint that names another class is left as it is, for
    the loader to refuse."""
    if "net" in hparams:
        return
    class_path = hparams.get("_class_path")
    # Without a class path, the old default: RecipeClassifier.
    old = old_model_class(class_path) if class_path is not None else "RecipeClassifier"
    if old is None:
        return
    upgraded = upgrade_model_settings(old, {
        k: v for k, v in hparams.items() if not str(k).startswith("_")
    })  # fmt: skip
    private = {k: v for k, v in hparams.items() if str(k).startswith("_") and k != "_class_path"}
    hparams.clear()
    hparams.update({**upgraded, **private})


def upgrade_saved_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's saved config (``config.yaml``) in today's form: its ``model`` section with the
    network as ``net`` (step 9), the top-level ``optimizer`` and ``lr_scheduler`` as the model's
    ``optimizer`` and ``scheduler`` (step 10; none saved was the model's default), and the data
    settings that moved (:func:`_upgrade_data_settings`: ``group_balanced`` as the ``sampler``,
    the subsets' sizes and order as ``subsets``, the colour changes as ``colour``, predict's
    photo settings as ``predict``, ``synthetic`` true or false with ``synthetic_seed`` and
    ``synthetic_correlate`` as the demo set's settings or null) or went."""
    upgraded = dict(config)
    model = upgraded.get("model")
    old = old_model_class(model.get("class_path")) if isinstance(model, Mapping) else None
    if old is not None:
        model = upgrade_model_settings(old, dict(model.get("init_args") or {}), linked=False)
    if isinstance(model, Mapping) and ("optimizer" in upgraded or "lr_scheduler" in upgraded):
        optimizer = upgraded.pop("optimizer", None)
        model = {
            **model,
            "optimizer": DEFAULT_OPTIMIZER if optimizer is None else optimizer,
            "scheduler": upgraded.pop("lr_scheduler", None),
        }
    if model is not None:
        upgraded["model"] = model
    if isinstance(upgraded.get("data"), Mapping):
        upgraded["data"] = _upgrade_data_settings(upgraded["data"])
    return upgraded


# Data settings of earlier versions' config.yaml that are gone and changed nothing fit computes:
# predict's output (now the prediction writer's), the cache's device (a value of data.cache
# now) and whether the training batches carried the groups (derived now).
_GONE_DATA_SETTINGS = ("predict_output", "predict_overwrite", "predict_maps", "predict_split",
                       "device_resident", "train_subgroups")  # fmt: skip
# Data settings of earlier versions that are keys of a group now: group -> its keys' old names.
_GROUPED_DATA_SETTINGS = {
    "subsets": {"train": "train_size", "val": "val_size", "test": "test_size",
                "order": "subset_order"},  # fmt: skip
    "colour": {"brightness": "brightness", "contrast": "contrast", "saturation": "saturation"},
    "predict": {"path": "predict_path", "align": "align", "min_face_size": "min_face_size"},
}


def _upgrade_data_settings(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved ``data`` section in today's form; a key saved in both forms keeps today's."""
    data = {k: v for k, v in saved.items() if k not in _GONE_DATA_SETTINGS}
    if "group_balanced" in data:
        data.setdefault("sampler", "group_balanced" if data.pop("group_balanced") else "random")
    for group, old_names in _GROUPED_DATA_SETTINGS.items():
        moved = {key: data.pop(old) for key, old in old_names.items() if old in data}
        if moved:
            data[group] = {**moved, **(data.get(group) or {})}
    if isinstance(data.get("synthetic"), bool):
        seed, correlate = data.pop("synthetic_seed", 0), data.pop("synthetic_correlate", None)
        data["synthetic"] = {"seed": seed, "correlate": correlate} if data["synthetic"] else None
    return data
