"""``data.framing``: training and evaluation frame a CelebA face as ``predict`` frames a photo
(lit_celeba.data.framing), on generated faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_celeba.base.errors import SettingError
from lit_celeba.data.cache import build_cache, cache_key
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.datasets import CelebAImages
from lit_celeba.data.faces import CELEBA_LANDMARKS
from lit_celeba.data.framing import process_detector
from lit_celeba.data.photos import PhotoDataset
from lit_celeba.data.settings import Subsets
from lit_celeba.data.transforms import columns_read
from tests.conftest import TINY_SIZES

COLUMNS = columns_read(64)


def train_names(count: int) -> list[str]:
    return [f"{i:06d}.jpg" for i in range(1, count + 1)]


def test_training_and_predict_give_the_network_the_same_crop(tiny_root: Path) -> None:
    names = train_names(12)
    image_dir = tiny_root / "celeba" / "img_align_celeba"
    training = CelebAImages(image_dir, names, np.zeros(12), COLUMNS, framing="detector")
    # predict, told to look for faces in CelebA-sized photos too.
    photos = PhotoDataset([image_dir / n for n in names], COLUMNS, align="always")
    same = 0
    for i in range(len(names)):
        item = photos[i]
        if not item.faces:
            continue  # no face found: predict has no crop; training keeps CelebA's framing
        assert len(item.faces) == 1  # a generated face is the image's only face
        image, _ = training[i]
        assert torch.equal(image, item.image[0]), names[i]
        same += 1
    assert same >= 10  # the detector finds nearly every generated face


def test_reframed_faces_have_their_landmarks_on_the_template(tiny_root: Path) -> None:
    image_dir = tiny_root / "celeba" / "img_align_celeba"
    names = train_names(8)
    every_column = np.arange(178)
    framed = CelebAImages(image_dir, names, np.zeros(8), every_column, framing="detector")
    detector = process_detector()
    offsets = []
    for i in range(len(names)):
        image, _ = framed[i]
        faces = detector(Image.fromarray(image.numpy()))
        if faces:
            offsets.append(np.abs(np.array(faces[0].landmarks) - CELEBA_LANDMARKS).mean())
    # Found again on the template, to the detector's own noise (a few pixels).
    assert len(offsets) >= 6 and np.median(offsets) < 4.0


def test_the_cache_keeps_each_framing_apart(tiny_root: Path, tmp_path: Path) -> None:
    image_dir = tiny_root / "celeba" / "img_align_celeba"
    names = train_names(8)
    assert cache_key(image_dir, names, COLUMNS) != cache_key(image_dir, names, COLUMNS,
                                                             "detector")  # fmt: skip
    plain = np.load(build_cache(image_dir, names, tmp_path, COLUMNS, workers=1))
    framed_path = build_cache(image_dir, names, tmp_path, COLUMNS, workers=2, framing="detector")
    framed = np.load(framed_path)
    uncached = CelebAImages(image_dir, names, np.zeros(8), COLUMNS, framing="detector")
    assert np.array_equal(framed, np.stack([uncached[i][0].numpy() for i in range(8)]))
    assert not np.array_equal(plain, framed)


def test_the_data_module_frames_every_split(tiny_root: Path, tmp_path: Path) -> None:
    module = CelebADataModule(
        root=str(tiny_root), subsets=Subsets(train=TINY_SIZES["train"], val=16, test=16),
        num_workers=0, cache_dir=str(tmp_path), framing="detector",
    )  # fmt: skip
    module.setup("fit")
    module.setup("test")
    plain = CelebADataModule(root=str(tiny_root), cache_dir=str(tmp_path),
                             subsets=Subsets(TINY_SIZES["train"], val=16, test=16))
    plain.setup("test")
    assert not torch.equal(module.datasets["test"][0][0], plain.datasets["test"][0][0])
    with pytest.raises(SettingError, match="framing.*celeba, detector"):
        CelebADataModule(root=str(tiny_root), framing="yunet")
