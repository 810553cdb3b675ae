"""The recipe's batched transforms against a bilinear resize computed by hand (tf.image.resize's
rule) and against ``interpolate`` on the whole crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_celeba.data.transforms import BatchTransform, columns_read, keep_columns
from lit_celeba.methods.colour import ColourChanges


def tf_resize_reference(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear, half-pixel centres, no antialiasing, written out from the definition:
    source coordinate = (out + 0.5) * in / out_size - 0.5, clamped at the borders."""

    def weights(n_in: int, n_out: int) -> np.ndarray:
        matrix = np.zeros((n_out, n_in))
        for o in range(n_out):
            src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
            lo = int(np.floor(src))
            hi = min(lo + 1, n_in - 1)
            frac = src - lo
            matrix[o, lo] += 1 - frac
            matrix[o, hi] += frac
        return matrix

    rows, cols = weights(image.shape[1], size), weights(image.shape[2], size)
    return rows @ image @ cols.T


def face() -> torch.Tensor:
    # Fine detail everywhere (independent pixels), so any shift or wrong sampling shows.
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, 218, 178), dtype=torch.uint8, generator=generator)


def reference(image: torch.Tensor, top: int, size: int = 64) -> np.ndarray:
    crop = image[:, top : top + 178, :].double().numpy() / 255.0
    return tf_resize_reference(crop, size)


def interpolate_reference(image: torch.Tensor, top: int, size: int) -> torch.Tensor:
    """The crop at ``top`` through torch's own bilinear resize, which is tf.image.resize's rule
    (float32 like the transform, so the two agree to float rounding at every size)."""
    crop = image[None, :, top : top + 178].float() / 255.0
    resized = F.interpolate(crop, (size, size), mode="bilinear", align_corners=False,
                            antialias=False)  # fmt: skip
    return resized[0]


def as_read(faces: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, 218, 178) faces in the layout the transforms read (the decoded cache's)."""
    return torch.stack([keep_columns(f, columns_read(size)) for f in faces])


def candidates(image: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Every training crop of ``image`` (offsets 0..40) resized, then the same ones flipped."""
    crops = torch.stack([interpolate_reference(image, top, size) for top in range(41)])
    return torch.cat([crops, crops.flip(-1)])


def faces(count: int) -> torch.Tensor:
    return torch.stack([face()] + [torch.randint(0, 256, (3, 218, 178), dtype=torch.uint8)
                                   for _ in range(count - 1)])  # fmt: skip


def test_eval_matches_hand_computed_resize() -> None:
    image = face()
    out = BatchTransform(64).eval(as_read(image[None], 64))
    assert out.dtype == torch.float32 and out.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(out[0].numpy(), reference(image, top=20), atol=1e-6)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_eval_other_size() -> None:
    image = face()
    # Both frameworks compute the scale 178/96 in float32; on pixel noise that moves values by
    # ~1e-5, far below one grey level (0.004).
    out = BatchTransform(96).eval(as_read(image[None], 96))
    np.testing.assert_allclose(out[0].numpy(), reference(image, 20, 96), atol=5e-5)


def test_train_is_a_recipe_crop_resize_and_flip() -> None:
    image = face()
    refs = np.stack([reference(image, top) for top in range(41)])
    every = np.concatenate([refs, refs[..., ::-1]])  # 41 offsets, then the same flipped
    torch.manual_seed(0)
    out = BatchTransform(64).train(as_read(image[None], 64).expand(200, -1, -1, -1)).numpy()
    tops, flips = [], []
    for result in out:
        errors = np.abs(every - result).reshape(len(every), -1).max(axis=1)
        best = int(errors.argmin())
        assert errors[best] < 1e-6, "not a 178x178 crop at offset 0..40, resized, maybe flipped"
        tops.append(best % 41)
        flips.append(best >= 41)
    # Offsets are uniform over 0..40 inclusive and flips happen half the time.
    assert min(tops) == 0 and max(tops) == 40
    assert len(set(tops)) > 30
    assert 0.4 < np.mean(flips) < 0.6


def test_keep_columns_is_the_cache_layout() -> None:
    image = face()  # channels-first in memory
    decoded = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # as torchvision decodes
    for either in (image, decoded):
        kept = keep_columns(either, columns_read(64))
        assert kept.shape == (218, 128, 3) and kept.dtype == torch.uint8 and kept.is_contiguous()
        # The cache's own selection (data/cache.py).
        assert torch.equal(kept, image.permute(1, 2, 0)[:, columns_read(64)])
        assert torch.equal(keep_columns(either, columns_read(96)), image.permute(1, 2, 0))


def test_batch_transform_equals_interpolate_on_the_whole_crop() -> None:
    # The layout keeps only the columns the resize reads; on pixel noise any other column, a
    # wrong tap or a wrong weight would show at once.
    batch = faces(8)
    cached = as_read(batch, 64)
    assert cached.shape == (8, 218, 128, 3)
    transform = BatchTransform(64)
    expected = torch.stack([interpolate_reference(f, 20, 64) for f in batch])
    torch.testing.assert_close(transform.eval(cached), expected, atol=1e-6, rtol=0)

    torch.manual_seed(0)
    out = transform.train(cached)
    for image, result in zip(batch, out, strict=True):
        errors = (candidates(image) - result).abs().flatten(1).max(dim=1).values
        assert errors.min() < 1e-6


def test_batch_transform_draws_per_sample_and_reproducibly() -> None:
    image = keep_columns(face(), columns_read(64))
    batch = image.expand(64, *image.shape).contiguous()  # the same face 64 times
    transform = BatchTransform(64)
    torch.manual_seed(7)
    first = transform.train(batch)
    torch.manual_seed(7)
    assert torch.equal(first, transform.train(batch))
    distinct = {tuple(x.flatten()[:50].tolist()) for x in first}
    assert len(distinct) > 20  # each sample got its own crop and flip


def test_an_empty_batch_gives_an_empty_batch() -> None:
    # A predict batch of photos none of which could be read.
    empty = torch.empty((0, 218, 128, 3), dtype=torch.uint8)
    transform = BatchTransform(64, ColourChanges(brightness=0.2))
    for out in (transform.eval(empty), transform.train(empty)):
        assert out.shape == (0, 3, 64, 64) and out.dtype == torch.float32


def test_columns_read_at_other_sizes() -> None:
    for size in (32, 64, 89):
        columns = columns_read(size)
        assert len(columns) == 2 * size and columns.min() >= 0 and columns.max() <= 177
    # From 90 pixels 2S taps would outnumber the source's columns: the cache keeps all 178.
    for size in (90, 128, 224):
        assert np.array_equal(columns_read(size), np.arange(178))


@pytest.mark.parametrize("size", [89, 96, 128])
def test_batch_transform_is_exact_at_other_sizes(size: int) -> None:
    batch = faces(4)
    transform = BatchTransform(size)
    expected = torch.stack([interpolate_reference(f, 20, size) for f in batch])
    # Float rounding only: at 96 both this and interpolate lie 1.4e-5 from the float64 resize,
    # as float32 source coordinates do, and 2e-6 from each other.
    torch.testing.assert_close(transform.eval(as_read(batch, size)), expected, atol=5e-6, rtol=0)
    torch.manual_seed(0)
    out = transform.train(as_read(batch, size))
    for image, result in zip(batch, out, strict=True):
        errors = (candidates(image, size) - result).abs().flatten(1).max(dim=1).values
        assert errors.min() < 5e-6
