"""``data.synthetic``: the demo set's setting, its check, and its generation on first use. Apart
from the generator (:mod:`lit_celeba.data.synthetic`): the data module's signature names the
setting, and a run on CelebA imports no generator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_celeba.base.errors import SettingError


@dataclass(frozen=True)
class DemoSet:
    """``data.synthetic``: generate a CelebA-format demo set at ``data.root`` on first use (with
    ``data.subsets``' numbers of images) instead of reading a real one; null,
    the default, reads CelebA. It never overwrites a folder it did not generate.

    ``seed``: the generated set's seed. ``correlate``: ``[target, spurious, share]``, in the
    generated train split the share of faces whose ``spurious`` label equals their ``target``
    label (docs/groups.md). One setting, a group of keys (``--data.synthetic.seed 1``; in a
    config file ``data: {synthetic: {seed: 1}}``, or ``{}`` for the defaults)."""

    seed: int = 0
    correlate: tuple[str, str, float] | None = None


def check_demo_set(synthetic: DemoSet | None, subsets: Any) -> None:
    if synthetic is not None and (subsets.train is None or subsets.val is None):
        raise SettingError(
            "synthetic", "needs data.subsets.train and data.subsets.val as numbers, not null"
        )


def prepare_demo_set(root: Path, synthetic: DemoSet, subsets: Any) -> None:
    """Generates the demo set at ``root`` with ``subsets``' numbers of images, unless it is
    there."""
    # Imported when chosen: a run on CelebA loads no generator (issue 33's import list).
    from lit_celeba.data.synthetic.setting import generate_demo_set

    sizes = (subsets.train, subsets.val, subsets.test or subsets.val)
    generate_demo_set(root, sizes, synthetic.seed, synthetic.correlate)
