"""The data module's settings, checked before anything runs (its numbers, and what the group
settings need): each wrong one is a :class:`~lit_celeba.base.errors.SettingError` that names it and
says what it must be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from lit_celeba.attributes import attribute_list
from lit_celeba.base.errors import SettingError
from lit_celeba.data.demo_set import DemoSet, check_demo_set
from lit_celeba.data.order import SubsetOrder
from lit_celeba.data.photos import check_predict_photos
from lit_celeba.methods.colour import check_colour
from lit_celeba.methods.groups import needs_groups

if TYPE_CHECKING:
    from lit_celeba.data.photos import PredictPhotos
    from lit_celeba.methods.colour import ColourChanges

# data.cache: decoded once (True: on a CUDA device's memory when it fits), or decoded on access.
Cache = bool | Literal["memory", "device"]
# Whether each cache setting keeps a subset on the training device (None: on a CUDA device).
ON_DEVICE: dict[bool | str, bool | None] = {True: None, "memory": False, "device": True,
                                            False: False}  # fmt: skip
# data.sampler: how the training images are drawn each epoch (group_balanced: every group equally
# often, data/sampling.py).
Sampler = Literal["random", "group_balanced"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)


@dataclass(frozen=True)
class Subsets:
    """``data.subsets``: the images each stage reads, the first ``train``, ``val`` and ``test``
    of CelebA's train, validation and test splits in ``order`` (the recipe: 16,000 / 1,000 /
    all); null takes the whole split. ``order``: ``file``, the order of ``list_eval_partition``
    (000001.jpg, ...), or ``tfds``, the order TensorFlow Datasets stores each split in, which
    gives the recipe's very subsets (:mod:`lit_celeba.data.order`); a tfds copy has only
    ``tfds``. One setting, a group of keys (``--data.subsets.train 3000``; in a config file
    ``data: {subsets: {train: 3000}}``, which keeps the other keys)."""

    train: int | None = 16000
    val: int | None = 1000
    test: int | None = None
    order: SubsetOrder = "file"


# data.subsets' default: the recipe's sizes in list_eval_partition's order.
RECIPE_SUBSETS = Subsets()


def check_numbers(
    *,
    subsets: Subsets,
    colour: ColourChanges,
    batch_size: int,
    num_workers: int,
    image_size: int,
    synthetic: DemoSet | None,
    cache: object,
    predict: PredictPhotos,
) -> None:
    """Raise a :class:`SettingError` for the first setting out of its range."""
    if not isinstance(cache, bool) and not (isinstance(cache, str) and cache in ON_DEVICE):
        raise SettingError("cache", f"must be true, memory, device or false; got {cache!r}")
    check_colour(colour)
    for name in ("train", "val", "test"):
        value = getattr(subsets, name)
        if value is not None and value < 1:
            raise SettingError(f"subsets.{name}", f"must be a positive number or null, got {value}")
    if batch_size < 1:
        raise SettingError("batch_size", f"must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise SettingError("num_workers", f"must be 0 or more, got {num_workers}")
    check_predict_photos(predict)
    if image_size < 8:
        raise SettingError("image_size", f"must be at least 8, got {image_size}")
    check_demo_set(synthetic, subsets)


def target_and_subgroup_lists(
    target_attr: str | list[str],
    subgroups: list[str] | None,
    *,
    sampler: str,
) -> tuple[list[str], list[str]]:
    """``target_attr`` and ``subgroups`` as lists of names. Refuses no target, an unknown
    ``sampler``, and the ``group_balanced`` sampler without groups (one target, some
    subgroups)."""
    target_attrs = attribute_list(target_attr, "target_attr")
    if not target_attrs:
        raise SettingError("target_attr", "names no attribute")
    subgroups = attribute_list(subgroups, "subgroups")
    if sampler not in SAMPLERS:
        raise SettingError("sampler", f"must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if sampler == "group_balanced" and (len(target_attrs) != 1 or not subgroups):
        raise SettingError("sampler", f"group_balanced {needs_groups(target_attrs, subgroups)}")
    return target_attrs, subgroups
