"""What photos have and CelebA's aligned faces lack, as training augmentations (``data.photo``).

CelebA's faces are celebrity portraits, aligned by CelebA's own landmarks. ``predict`` meets
faces that a detector found and aligned (:mod:`lit_celeba.data.faces`), often small, blurred,
noisy, compressed hard, or in grey. Each training image here gets, with probability ``p`` each
and independently, after the recipe's crop, resize, flip and colour changes:

- ``shift``, ``scale``, ``angle``: the alignment moved as a detector's landmark errors move it,
  a random similarity transform (uniform shift up to ``shift`` pixels of the 178x218 frame,
  scale up to ``1 +- scale``, rotation up to ``+- angle`` degrees; black outside the image, as
  ``predict`` pads a face at a photo's edge);
- ``low_res``: ``[a, b]``, the face seen at a fraction of the network's input size, drawn from
  ``a`` to ``b`` (a 64-pixel input holds a face about 31 pixels wide: 0.5 is a 16-pixel face),
  shrunk with antialiasing and enlarged again as ``predict``'s alignment enlarges a small face;
- ``blur``: a Gaussian blur with sigma up to this, in input pixels;
- ``noise``: Gaussian noise with a standard deviation up to this (images in [0, 1]);
- ``grayscale``: with its own probability, whatever ``p``, a grey photo, as torchvision's luma;
- ``erase``: ``[a, b]``, a rectangle covering a share of the image drawn from ``a`` to ``b``
  (aspect ratio 1/3 to 3) filled with noise: a hand, a microphone, another head in front of
  the face (random erasing, Zhong et al. 2020);
- ``jpeg``: ``[q1, q2]``, JPEG compression at a quality drawn from ``q1`` to ``q2``, last, as
  a photo is saved after all the rest.

A key other than ``grayscale`` needs ``p``; ``p: 0`` turns them off (:data:`RANGES` says what
each key takes, :func:`check` checks it). Every draw comes from torch's generator on the batch's
device, so ``seed_everything`` repeats it. torchvision's v2 transforms draw one set of
parameters per call, for the whole batch; these draw one per image, which a batch of faces needs
(the reason they are written here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypedDict

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as tvf

from lit_celeba.base.errors import SettingError

FRAME_WIDTH = 178  # pixels of the aligned frame that ``shift`` counts in


class PhotoDegradations(TypedDict, total=False):
    """``data.photo``'s keys (all optional; an empty dict or null is off)."""

    p: float
    shift: float
    scale: float
    angle: float
    low_res: tuple[float, float]
    blur: float
    noise: float
    grayscale: float
    erase: tuple[float, float]
    jpeg: tuple[int, int]


# What each key takes, as the errors and the command line's help say it.
RANGES = {
    "p": "from 0 to 1",
    "shift": "0 (off) or more, in pixels",
    "scale": "from 0 to under 1",
    "angle": "0 (off) or more, in degrees",
    "low_res": "[a, b], 0 < a <= b <= 1",
    "blur": "0 (off) or more, in input pixels",
    "noise": "0 (off) or more",
    "grayscale": "from 0 to 1",
    "erase": "[a, b], 0 <= a <= b <= 1",
    "jpeg": "[q1, q2], whole numbers, 1 <= q1 <= q2 <= 100",
}
_PAIRS = ("low_res", "erase", "jpeg")
_OFF = {"low_res": (1.0, 1.0), "erase": (0.0, 0.0), "jpeg": (100, 100)}


def key_ranges() -> str:
    """Every key of ``data.photo`` with what it takes, for messages."""
    return "; ".join(f"{key} {what}" for key, what in RANGES.items())


def _number(value: object, whole: bool = False) -> bool:
    kinds = (int,) if whole else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)


def _in_range(key: str, value: object) -> bool:
    if key in _PAIRS:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            return False
        low, high = value
        if not (_number(low, key == "jpeg") and _number(high, key == "jpeg")):
            return False
        lowest = {"low_res": 0.0, "erase": 0.0, "jpeg": 1}[key]
        top = 100 if key == "jpeg" else 1.0
        return (lowest < low if key == "low_res" else lowest <= low) and low <= high <= top
    if not _number(value):
        return False
    if key in ("p", "grayscale"):
        return 0.0 <= value <= 1.0
    return 0.0 <= value < 1.0 if key == "scale" else value >= 0.0


def _shown(value: object) -> str:
    return repr(list(value) if isinstance(value, tuple) else value)


def check(photo: PhotoDegradations | None) -> PhotoDegradations:
    """``photo`` with its values checked; a :class:`SettingError` names the first wrong key and
    what it takes: a key without ``p``, which would never apply, is one too."""
    if photo is None:
        return {}
    if not isinstance(photo, Mapping):
        raise SettingError("photo", f"must be a mapping such as {{p: 0.5, blur: 1.0}}, got "
                                    f"{photo!r}; its keys: {key_ranges()}")  # fmt: skip
    photo = dict(photo)
    unknown = set(photo) - set(RANGES)
    if unknown:
        valid = ", ".join(RANGES)
        raise SettingError("photo", f"has no key {sorted(unknown)[0]!r}; valid keys: {valid} "
                                    f"({key_ranges()})")  # fmt: skip
    for key, value in photo.items():
        if not _in_range(key, value):
            raise SettingError(f"photo.{key}", f"must be {RANGES[key]}; got {_shown(value)}")
        if key in _PAIRS:  # YAML gives lists
            photo[key] = tuple(value)
    # Every key but grayscale (its own probability) applies with probability p.
    gated = [key for key in active({**photo, "p": 1.0}) if key != "grayscale"]
    if "p" not in photo and gated:
        raise SettingError(
            "photo.p",
            f"is not given, so {', '.join(gated)} would never apply: each training image gets "
            f"each degradation with probability p. Add it, e.g. {{p: 0.5, {gated[0]}: "
            f"{_shown(photo[gated[0]])}}} (p: 0 turns them off).",
        )
    return photo  # type: ignore[return-value]


def active(photo: PhotoDegradations) -> list[str]:
    """The degradations of a checked ``photo`` that change an image: ``grayscale`` with its own
    probability, the others when ``p`` is above 0."""
    on = [k for k, v in photo.items() if k != "p" and v and tuple(_OFF.get(k, ())) != v]
    return [k for k in on if k == "grayscale" or photo.get("p", 0.0) > 0.0]


def _uniform(low: float, high: float, n: int, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


class Degrade:
    """The degradations of ``photo`` (:class:`PhotoDegradations`) on float (B, 3, S, S) batches in
    [0, 1]; a no-op when every one is off."""

    def __init__(self, photo: PhotoDegradations | None) -> None:
        self.photo = check(photo)
        self.p = self.photo.get("p", 0.0)
        self.active = active(self.photo)

    def _chosen(self, n: int, device: torch.device, p: float | None = None) -> torch.Tensor:
        return torch.rand(n, device=device) < (self.p if p is None else p)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return images
        photo, on, n, device = self.photo, self.active, len(images), images.device
        if {"shift", "scale", "angle"} & set(on):
            images = self._move(images, self._chosen(n, device))
        if "low_res" in on:
            images = self._low_res(images, self._chosen(n, device))
        if "blur" in on:
            images = self._blur(images, self._chosen(n, device))
        if "noise" in on:
            sigma = _uniform(0.0, photo["noise"], n, device) * self._chosen(n, device)
            images = (images + torch.randn_like(images) * sigma[:, None, None, None]).clamp_(0, 1)
        if "grayscale" in on:
            grey = tvf.rgb_to_grayscale(images, num_output_channels=3)
            pick = self._chosen(n, device, photo["grayscale"])[:, None, None, None]
            images = torch.where(pick, grey, images)
        if "erase" in on:
            images = self._erase(images, self._chosen(n, device))
        if "jpeg" in on:
            images = self._jpeg(images, self._chosen(n, device))
        return images

    def _move(self, images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        n, device, photo = len(images), images.device, self.photo
        scale = 1.0 + _uniform(-photo.get("scale", 0.0), photo.get("scale", 0.0), n, device)
        angle = _uniform(-photo.get("angle", 0.0), photo.get("angle", 0.0), n, device)
        angle = angle * (math.pi / 180)
        # affine_grid's coordinates run from -1 to 1 across the image: 2 / 178 per frame pixel.
        reach = 2.0 * photo.get("shift", 0.0) / FRAME_WIDTH
        shift = _uniform(-reach, reach, 2 * n, device).view(n, 2)
        scale, angle = torch.where(chosen, scale, 1.0), torch.where(chosen, angle, 0.0)
        shift = shift * chosen[:, None]
        # The inverse map (output to input), as affine_grid takes it.
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                             torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # fmt: skip
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)  # fmt: skip

    def _low_res(self, images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        size = images.shape[-1]
        low, high = self.photo["low_res"]
        # Eight sizes between the bounds: one resize per size, for the images that drew it.
        sides = torch.linspace(low * size, high * size, 8).round().int().clamp_min(1)
        sides = sides.unique().tolist()  # at least a pixel: a tiny a at a small image size
        drawn = torch.randint(0, len(sides), (len(images),), device=images.device)
        out = images.clone()
        for k, side in enumerate(sides):
            pick = (chosen & (drawn == k)).nonzero().flatten()
            if side >= size or len(pick) == 0:
                continue
            small = F.interpolate(images[pick], size=(side, side), mode="bilinear",
                                  antialias=True, align_corners=False)  # fmt: skip
            out[pick] = F.interpolate(small, size=(size, size), mode="bilinear",
                                      align_corners=False).clamp_(0, 1)  # fmt: skip
        return out

    def _blur(self, images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = images.shape
        top = self.photo["blur"]
        sigma = (_uniform(0.0, top, n, images.device) * chosen).clamp_min(1e-3)
        # Three sigmas, but less than the image's side: reflect padding needs that (a sigma
        # that large leaves the image almost flat anyway).
        radius = max(1, min(math.ceil(3 * top), min(height, width) - 1))
        offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
        kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None].to(images.dtype)) ** 2)
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0)
        flat = images.reshape(1, n * channels, height, width)
        # Separable: across, then down, each image with its own sigma (grouped convolution).
        flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
        flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * channels)
        flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * channels)
        return flat.view(n, channels, height, width)

    def _erase(self, images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        device, (low, high) = images.device, self.photo["erase"]
        area = _uniform(low, high, n, device) * height * width
        aspect = torch.exp(_uniform(math.log(1 / 3), math.log(3), n, device))
        h = (area * aspect).sqrt().clamp(max=height)
        w = (area / aspect).sqrt().clamp(max=width)
        top = torch.rand(n, device=device) * (height - h)
        left = torch.rand(n, device=device) * (width - w)
        rows = torch.arange(height, device=device)[None, :, None]
        cols = torch.arange(width, device=device)[None, None, :]
        inside = ((rows >= top[:, None, None]) & (rows < (top + h)[:, None, None])
                  & (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None]))
        inside = (inside & chosen[:, None, None])[:, None]
        return torch.where(inside, torch.rand_like(images), images)

    def _jpeg(self, images: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        low, high = self.photo["jpeg"]
        qualities = torch.randint(int(low), int(high) + 1, (len(images),), device=images.device)
        qualities = qualities.tolist()
        out = images.clone()
        for i in chosen.nonzero().flatten().tolist():
            # torchvision's codec runs on the CPU: one small image at a time.
            pixels = (images[i] * 255).round_().to(torch.uint8).cpu()
            coded = tvf.jpeg(pixels, qualities[i]).to(images.device)
            out[i] = coded.to(images.dtype) / 255
        return out
