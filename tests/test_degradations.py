"""``data.photo``: the photo degradations of the training transform (methods/degradations.py)."""

from __future__ import annotations

import pytest
import torch

from lit_celeba.base.errors import SettingError
from lit_celeba.data.transforms import BatchTransform, columns_read, keep_columns
from lit_celeba.methods.degradations import Degrade

EACH = {
    "shift": {"shift": 8.0},
    "scale": {"scale": 0.2},
    "angle": {"angle": 15.0},
    "low_res": {"low_res": [0.3, 0.5]},
    "blur": {"blur": 2.0},
    "noise": {"noise": 0.1},
    "grayscale": {"grayscale": 1.0},
    "erase": {"erase": [0.1, 0.3]},
    "jpeg": {"jpeg": [20, 30]},
}


def batch(n: int = 16) -> torch.Tensor:
    # Smooth gradients with a sharp square: every degradation changes something of it.
    ramp = torch.linspace(0.1, 0.9, 64)
    images = torch.stack([ramp[None, :].expand(64, 64), ramp[:, None].expand(64, 64),
                          torch.full((64, 64), 0.4)])  # fmt: skip
    images[:, 24:40, 24:40] = torch.tensor([0.9, 0.1, 0.5])[:, None, None]
    return images.expand(n, -1, -1, -1).clone()


@pytest.mark.parametrize("key", EACH)
def test_each_degradation_changes_the_chosen_images_only(key: str) -> None:
    torch.manual_seed(0)
    images = batch(64)
    out = Degrade({"p": 0.5, **EACH[key]})(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert 0.0 <= out.min() and out.max() <= 1.0
    changed = (out - images).abs().flatten(1).amax(1) > 1e-3
    # Each image is chosen with p = 0.5 (grayscale: its own probability, 1 here).
    assert 10 < changed.sum() < 64 if key != "grayscale" else changed.all()


def test_off_is_the_recipe_and_the_draws_repeat_with_the_seed() -> None:
    images = batch()
    assert Degrade(None)(images) is images
    assert Degrade({"p": 0.0, "blur": 2.0})(images) is images
    assert Degrade({"p": 1.0, "low_res": [1.0, 1.0], "jpeg": [100, 100]})(images) is images
    every = {"p": 0.5, **{k: v for each in EACH.values() for k, v in each.items()}}
    torch.manual_seed(3)
    first = Degrade(every)(images)
    torch.manual_seed(3)
    assert torch.equal(Degrade(every)(images), first)


def test_low_resolution_removes_detail_and_keeps_the_mean() -> None:
    images = batch()
    out = Degrade({"p": 1.0, "low_res": [0.25, 0.25]})(images)
    sharpness = lambda x: (x[..., 1:] - x[..., :-1]).abs().amax()  # noqa: E731
    assert sharpness(out) < 0.5 * sharpness(images)
    assert torch.allclose(out.mean(), images.mean(), atol=0.02)


def test_the_training_transform_applies_them_and_evaluation_does_not() -> None:
    face = torch.randint(0, 256, (4, 3, 218, 178), dtype=torch.uint8, generator=torch.Generator())
    read = torch.stack([keep_columns(f, columns_read(64)) for f in face])
    plain, photo = BatchTransform(64), BatchTransform(64, photo={"p": 1.0, "grayscale": 1.0})
    assert torch.equal(plain.eval(read), photo.eval(read))
    grey = photo.train(read)
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])


@pytest.mark.parametrize(
    ("photo", "message"),
    [
        ({"p": 1.5}, "photo.p"),
        ({"blurr": 1.0}, "has no key 'blurr'; valid keys: p, shift"),
        ({"low_res": [0.8, 0.2]}, "photo.low_res"),
        ({"jpeg": [0, 50]}, "photo.jpeg"),
        ({"erase": [0.5, 0.2]}, "photo.erase"),
        ({"noise": -0.1}, "photo.noise"),
    ],
)
def test_bad_settings_name_the_key(photo: dict, message: str) -> None:
    with pytest.raises(SettingError, match=message.replace(".", r"\.")):
        Degrade(photo)
