"""The training images' colour changes (``data.colour``: brightness, contrast, saturation), which
the post lists but its recipe does not use: off by default.
:class:`~lit_celeba.data.transforms.BatchTransform` applies them after the flip."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torchvision.transforms import v2

from lit_celeba.base.errors import SettingError


@dataclass(frozen=True)
class ColourChanges:
    """The training images' colour changes (``data.colour``), after the flip: each image's
    factor uniform in [1 - s, 1 + s] (torchvision's ``ColorJitter``); 0, the recipe's, leaves
    the training transform exactly as it is.

    One setting of three keys (``--data.colour.brightness 0.2``; in a config file ``data:
    {colour: {brightness: 0.2, contrast: 0.2}}``): jsonargparse parses a dataclass as a group,
    so a later config file's ``colour: {contrast: 0.5}`` changes that key and keeps the others
    (a plain dict would be replaced whole)."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0


RECIPE_COLOUR = ColourChanges()  # none: the recipe's training transform


def check_colour(colour: ColourChanges) -> None:
    for name, value in dataclasses.asdict(colour).items():
        if not 0.0 <= value <= 1.0:
            raise SettingError(f"colour.{name}", f"must be from 0 (off) to 1, got {value}")


def _strength_factors(strength: float, batch: int, device: torch.device) -> torch.Tensor:
    """One factor per image, uniform in [max(0, 1 - strength), 1 + strength] as ColorJitter."""
    low = max(0.0, 1.0 - strength)
    return (low + torch.rand(batch, 1, 1, 1, device=device) * (1.0 + strength - low))


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * images + (1.0 - factor) * other).clamp_(0.0, 1.0)


def batch_color_jitter(
    images: torch.Tensor, brightness: float, contrast: float, saturation: float
) -> torch.Tensor:
    """torchvision's brightness, contrast and saturation adjustments on a float (B, 3, H, W)
    batch in [0, 1], each image with its own random factors, in that fixed order (ColorJitter
    draws an order per image; the order matters little at small strengths)."""
    batch, device = len(images), images.device
    # torchvision's own luma: Python scalars, no table copied to the device in each step.
    grey_of = v2.functional.rgb_to_grayscale
    if brightness > 0:
        images = (images * _strength_factors(brightness, batch, device)).clamp_(0.0, 1.0)
    if contrast > 0:
        mean = grey_of(images).mean((2, 3), keepdim=True)
        images = _blend(images, mean, _strength_factors(contrast, batch, device))
    if saturation > 0:
        images = _blend(images, grey_of(images), _strength_factors(saturation, batch, device))
    return images
