"""The recipe's train and eval transforms, one batched implementation for every path.

Every image reaches them as uint8 (B, 218, W, 3) RGB at CelebA's 178x218 framing, holding only
the source columns that the resize reads (:func:`columns_read`; :func:`keep_columns` brings a
decoded image to that layout): batches of the decoded cache, of JPEGs decoded on access
(``data.cache: false``), of the user's framed photos, and the augmentation preview's. They run on
the batch's own device (``CelebADataModule.on_after_batch_transfer``) as :class:`BatchTransform`:

train: random 178x178 crop (only the vertical offset 0..40 varies), resize, random horizontal flip.
eval:  crop rows 20..197, resize.
Both return float32 (B, 3, S, S) in [0, 1]. Colour changes (brightness, contrast, saturation:
:mod:`lit_celeba.methods.colour`), which the post lists but its recipe does not use, can follow
the flip in training; they are off by default.
The resize is ``tf.image.resize``'s default: bilinear with half-pixel centres and no
antialiasing, as ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
antialias=False)`` computes it; the values are not rounded back to uint8, as in TensorFlow.
tests/test_transforms.py checks the result against a resize computed by hand from that rule.
"""

from __future__ import annotations

from dataclasses import astuple

import numpy as np
import torch

from lit_celeba.methods.colour import RECIPE_COLOUR, ColourChanges, batch_color_jitter
from lit_celeba.methods.degradations import Degrade, PhotoDegradations

CROP_SIZE = 178
EVAL_CROP_TOP = 20


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output pixel: the two source pixels and the weight of the second, by the rule of
    ``interpolate(align_corners=False)`` and ``tf.image.resize`` (half-pixel centres, clamped),
    computed in float32 as both frameworks do."""
    scale = np.float32(n_in) / np.float32(n_out)
    src = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    lo = np.minimum(src.astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)


def columns_read(image_size: int) -> np.ndarray:
    """The source columns of the 178-wide crop that the transforms read, and the decoded cache
    keeps, for a resize to ``image_size``. Up to 89 pixels, the columns that resize reads: each
    output column's left tap, then each one's right tap, ``[l0, l1, ..., r0, r1, ...]`` (128 of
    178 at 64x64); the two halves let the horizontal resize run on contiguous rows
    (``BatchTransform``). From 90 pixels, 2S taps would be more than the source has, and all 178
    columns are kept in their order. Either way no output value changes."""
    lo, hi, _ = _bilinear_taps(CROP_SIZE, image_size)
    if 2 * image_size > CROP_SIZE:
        return np.arange(CROP_SIZE)
    return np.concatenate([lo, hi])


def keep_columns(image: torch.Tensor, columns: np.ndarray) -> torch.Tensor:
    """A decoded uint8 3x218x178 image in the layout that :class:`BatchTransform` reads and the
    decoded cache stores: 218xWx3, only the source ``columns`` (:func:`columns_read`)."""
    # torchvision decodes into HxWx3 memory: the permute is free, and index_select takes the
    # columns in 40 us an image, a third of what indexing with the array takes (measured).
    return image.permute(1, 2, 0).index_select(1, torch.as_tensor(columns))


class BatchTransform:
    """The recipe's transforms on batches of uint8 (B, 218, W, 3) RGB images holding the
    ``columns_read(S)`` columns (W = 2S up to 89 pixels, else 178), transformed on their own
    device: the one implementation that training, evaluation, predict and the augmentation
    preview all use.

    The resize is written out as its two taps per axis instead of calling ``interpolate`` on the
    crop: it reads only the 2S source rows and columns it needs from each image, about a sixth of
    the pixels at 64x64, which keeps augmentation out of the training time on a CPU. The result
    equals ``interpolate`` on the full crop to float rounding (tests/test_transforms.py).
    """

    def __init__(
        self,
        image_size: int = 64,
        colour: ColourChanges = RECIPE_COLOUR,
        photo: PhotoDegradations | None = None,
    ) -> None:
        self.image_size = image_size
        self.colour = astuple(colour)  # all 0: the recipe, no extra draws
        self.degrade = Degrade(photo)  # off by default: no extra draws either
        row_lo, row_hi, row_w = _bilinear_taps(CROP_SIZE, image_size)
        col_lo, col_hi, col_w = _bilinear_taps(CROP_SIZE, image_size)
        # Whole columns in the cache (image sizes from 90): the taps are picked per batch.
        self._whole_columns = 2 * image_size > CROP_SIZE
        self._host = {
            "col_lo": torch.from_numpy(col_lo),
            "col_hi": torch.from_numpy(col_hi),
            "rows": torch.from_numpy(np.stack([row_lo, row_hi], axis=1).reshape(-1)),
            "row_w": torch.from_numpy(row_w)[:, None, None],
            # One weight per column and RGB channel, stored whole rather than broadcast over the
            # channels: the lerp then runs over contiguous rows, 3x faster on a CPU (measured).
            "col_w": torch.from_numpy(col_w)[:, None].expand(image_size, 3).contiguous(),
        }
        self._on_device: dict[torch.device, dict[str, torch.Tensor]] = {}

    def _tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._on_device:
            self._on_device[device] = {k: v.to(device) for k, v in self._host.items()}
        return self._on_device[device]

    def _crop_resize(self, images: torch.Tensor, tops: torch.Tensor) -> torch.Tensor:
        t = self._tables(images.device)
        batch, height, width, channels = images.shape
        size = self.image_size
        # The 2S rows the resize reads, as (upper, lower) tap pairs, for each sample's offset.
        rows = tops + t["rows"] + height * torch.arange(batch, device=images.device)[:, None]
        picked = images.reshape(batch * height, width * channels).index_select(0, rows.reshape(-1))
        picked = picked.view(batch, size, 2, width, channels)  # (B, S, row tap, W, 3)
        if self._whole_columns:
            left = picked.index_select(3, t["col_lo"]).float()
            right = picked.index_select(3, t["col_hi"]).float()
        else:  # every tap's S columns lie side by side
            left, right = picked.float().split(size, dim=3)
        # Horizontal taps first, then vertical, in the order interpolate sums them.
        across = torch.lerp(left, right, t["col_w"])  # (B, S, 2, S, 3)
        resized = torch.lerp(across[:, :, 0], across[:, :, 1], t["row_w"])  # (B, S, S, 3)
        # Channels-first view with channels-last strides, and TensorFlow's resize-then-/255 order.
        return resized.permute(0, 3, 1, 2).div_(255.0)

    def train(self, images: torch.Tensor) -> torch.Tensor:
        """Per sample a random vertical offset 0..H-178 and a random flip (p=0.5), drawn from
        torch's RNG on the batch's device, so ``seed_everything`` makes them reproducible; then
        the colour changes, if any strength is above 0 (:mod:`lit_celeba.methods.colour`), and the
        photo degradations, if any is on (:class:`~lit_celeba.methods.degradations.Degrade`)."""
        device = images.device
        tops = torch.randint(0, images.shape[1] - CROP_SIZE + 1, (len(images), 1), device=device)
        flips = torch.rand(len(images), device=device) < 0.5
        resized = self._crop_resize(images, tops)
        images = torch.where(flips[:, None, None, None], resized.flip(-1), resized)
        if any(self.colour):
            images = batch_color_jitter(images, *self.colour)
        return self.degrade(images)

    def eval(self, images: torch.Tensor) -> torch.Tensor:
        """The recipe's fixed crop (rows 20..197, ``tf.image.crop_to_bounding_box(image, 20, 0,
        178, 178)``), resized."""
        tops = torch.full((len(images), 1), EVAL_CROP_TOP, device=images.device)
        return self._crop_resize(images, tops)
