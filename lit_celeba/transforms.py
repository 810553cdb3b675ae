"""The recipe's train and eval transforms, on uint8 CxHxW images of CelebA's 178x218 framing.

train: random 178x178 crop (only the vertical offset 0..40 varies), resize, random horizontal flip.
eval:  crop rows 20..197, resize.
Both return float32 in [0, 1]. The resize is ``tf.image.resize``'s default: bilinear with
half-pixel centres and no antialiasing, which ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False, antialias=False)`` reproduces exactly on the same pixels; torchvision's
``Resize(antialias=False)`` calls that on float input. The image becomes float before the resize so
that, as in TensorFlow, the resized values are not rounded back to uint8.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

CROP_SIZE = 178
EVAL_CROP_TOP = 20


def _resize(image_size: int) -> v2.Resize:
    return v2.Resize(
        (image_size, image_size), interpolation=InterpolationMode.BILINEAR, antialias=False
    )


def train_transform(image_size: int = 64) -> v2.Compose:
    """Random vertical crop, resize, random horizontal flip (p=0.5); uint8 in, [0, 1] float out."""
    return v2.Compose(
        [
            v2.RandomCrop((CROP_SIZE, CROP_SIZE)),
            v2.ToDtype(torch.float32, scale=True),
            _resize(image_size),
            v2.RandomHorizontalFlip(p=0.5),
        ]
    )


class EvalCrop(torch.nn.Module):
    """The recipe's fixed crop, ``tf.image.crop_to_bounding_box(image, 20, 0, 178, 178)``."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return v2.functional.crop(image, EVAL_CROP_TOP, 0, CROP_SIZE, CROP_SIZE)


def eval_transform(image_size: int = 64) -> v2.Compose:
    """Crop rows 20..197, resize; uint8 in, [0, 1] float out."""
    return v2.Compose([EvalCrop(), v2.ToDtype(torch.float32, scale=True), _resize(image_size)])
