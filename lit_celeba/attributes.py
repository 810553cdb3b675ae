"""The attribute lists a run predicts and groups by, read in one place for every consumer.

``data.target_attr`` may be one name or a list; :func:`attribute_list` makes both a list, so the
model, metrics, dashboards, prediction writer and export all handle K = 1 and K > 1 alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from lit_celeba.base.errors import AttributeMismatchError, SettingError

# CelebA's 40 attributes, in the order of list_attr_celeba.txt; ``all`` names them all.
CELEBA_ATTRIBUTES: tuple[str, ...] = tuple(
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young".split()
)
ALL = "all"


def attribute_list(value: str | Sequence[str] | None, field: str = "target_attr") -> list[str]:
    """One attribute name or a list of them as a list; ``None`` is the empty list, and ``all``
    (alone, in any case, or as a list of it) is CelebA's 40 attributes in their file's order.

    Raises :class:`SettingError` for ``field`` (the caller's argument name) for a repeated or
    empty name.
    """
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    if len(names) == 1 and isinstance(names[0], str) and names[0].strip().lower() == ALL:
        return list(CELEBA_ATTRIBUTES)  # all, ALL, [all]
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise SettingError(field, f"must be attribute names, got {names!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SettingError(field, f"names {', '.join(repeated)} more than once")
    return names


def count_attributes(value: str | Sequence[str] | None) -> int:
    """How many attributes ``value`` names (:func:`attribute_list`): a network's outputs."""
    return len(attribute_list(value))


def check_same_targets(saved: Sequence[str] | None, current: Sequence[str]) -> None:
    """Refuses a checkpoint trained for other target attributes (``saved``) than a model's."""
    if saved is not None and list(saved) != list(current):
        raise AttributeMismatchError(
            f"The checkpoint was trained to predict {len(saved)} attribute(s) "
            f"({', '.join(saved)}) but this run predicts {list(current)}; set data.target_attr "
            "to the checkpoint's attributes, in the same order (the config the checkpoint was "
            "trained with does)."
        )


def valid_names(name: str, names: Sequence[str]) -> str:
    """For a message about an unknown attribute ``name``: the one of ``names`` it differs from
    only in case, if any, then every valid name and the ``all`` keyword."""
    same = "".join(f"Did you mean {n}? " for n in names if n.lower() == str(name).lower())
    return f"{same}Valid names: {', '.join(names)}; or {ALL}, for all {len(names)}."
