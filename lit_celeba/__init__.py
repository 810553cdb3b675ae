"""lit_celeba: the CelebA face-attribute CNN recipe on PyTorch Lightning.

Light to import: the classes below load Lightning only when first used, so that
``lit_celeba.data.celeba`` (a text-file parser) and the synthetic data stay quick to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CelebADataModule": "lit_celeba.data.datamodule",
    "AttributeClassifier": "lit_celeba.models.module",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lit_celeba' has no attribute {name!r}")
