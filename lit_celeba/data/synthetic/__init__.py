"""A deterministic fake CelebA in CelebA's own on-disk formats, for the demo and the tests:
:mod:`.traits` chooses each face's attributes, :mod:`.faces` draws it, :mod:`.generate` writes
the faces as a CelebA folder, :mod:`.forms` as CelebA's downloads come, and :mod:`.command` is
``python -m lit_celeba.data.synthetic``."""

from lit_celeba.data.synthetic.generate import (
    ATTRIBUTE_NAMES,
    MARKER_NAME,
    generate_celeba,
    read_marker,
)

__all__ = ["ATTRIBUTE_NAMES", "MARKER_NAME", "generate_celeba", "read_marker"]
