"""The CelebA columns a run predicts and groups by: names in, (N, K) targets and (N, G) groups out.

Every dataset (the JPEG one in ``data.py`` or a cached one) takes its labels from
:func:`label_arrays`, so the column selection lives in this one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lit_celeba.celeba import CelebAIndex


class AttributeMismatchError(ValueError):
    """The model and the data disagree on the attributes; the message says which to change."""


def attribute_list(value: str | Sequence[str] | None, field: str = "data.target_attr") -> list[str]:
    """One attribute name or a list of them as a list; ``None`` is the empty list.

    Raises ValueError naming ``field`` for a repeated or empty name.
    """
    if value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    if any(not isinstance(n, str) or not n.strip() for n in names):
        raise ValueError(f"{field} must be attribute names, got {names!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{field} names {', '.join(repeated)} more than once")
    return names


def label_arrays(
    index: CelebAIndex,
    rows: np.ndarray,
    target_attrs: Sequence[str],
    subgroups: Sequence[str] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """The labels of images ``rows``: targets (N, K) float32 and subgroup values (N, G) int64,
    both 0/1, columns in the order given. Unknown names raise CelebAError listing the valid ones.
    """
    target_columns = [index.attr_column(name) for name in target_attrs]
    group_columns = [index.attr_column(name) for name in subgroups]
    selected = index.attributes[rows]
    return (
        selected[:, target_columns].astype(np.float32),
        selected[:, group_columns].astype(np.int64),
    )
