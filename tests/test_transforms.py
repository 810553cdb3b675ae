"""The recipe's transforms against a bilinear resize computed by hand (tf.image.resize's rule)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_celeba.data.transforms import BatchTransform, columns_read, eval_transform, train_transform


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


def test_eval_transform_matches_hand_computed_resize() -> None:
    image = face()
    out = eval_transform(64)(image)
    assert out.dtype == torch.float32 and out.shape == (3, 64, 64)
    np.testing.assert_allclose(out.numpy(), reference(image, top=20), atol=1e-6)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_eval_transform_other_size() -> None:
    image = face()
    # Both frameworks compute the scale 178/96 in float32; on pixel noise that moves values by
    # ~1e-5, far below one grey level (0.004).
    np.testing.assert_allclose(
        eval_transform(96)(image).numpy(), reference(image, 20, 96), atol=5e-5
    )


def test_train_transform_is_a_recipe_crop_resize_and_flip() -> None:
    image = face()
    refs = np.stack([reference(image, top) for top in range(41)])
    candidates = np.concatenate([refs, refs[..., ::-1]])  # 41 offsets, then the same flipped
    torch.manual_seed(0)
    transform = train_transform(64)
    tops, flips = [], []
    for _ in range(200):
        out = transform(image).numpy()
        errors = np.abs(candidates - out).reshape(len(candidates), -1).max(axis=1)
        best = int(errors.argmin())
        assert errors[best] < 1e-6, "not a 178x178 crop at offset 0..40, resized, maybe flipped"
        tops.append(best % 41)
        flips.append(best >= 41)
    # Offsets are uniform over 0..40 inclusive and flips happen half the time.
    assert min(tops) == 0 and max(tops) == 40
    assert len(set(tops)) > 30
    assert 0.4 < np.mean(flips) < 0.6


def test_train_transform_reproducible_under_seed() -> None:
    image = face()
    torch.manual_seed(123)
    first = [train_transform(64)(image) for _ in range(5)]
    torch.manual_seed(123)
    second = [train_transform(64)(image) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_batch_transform_equals_the_per_sample_transforms_on_fine_detail() -> None:
    # The cache keeps only the columns the resize reads; on pixel noise any other column, a
    # wrong tap or a wrong weight would show at once.
    faces = torch.stack([face()] + [torch.randint(0, 256, (3, 218, 178), dtype=torch.uint8)
                                    for _ in range(7)])  # fmt: skip
    cached = faces.permute(0, 2, 3, 1)[:, :, columns_read(64)].contiguous()
    assert cached.shape == (8, 218, 128, 3)
    batch = BatchTransform(64)
    expected = torch.stack([eval_transform(64)(f) for f in faces])
    torch.testing.assert_close(batch.eval(cached), expected, atol=1e-6, rtol=0)

    torch.manual_seed(0)
    out = batch.train(cached)
    for image, result in zip(faces, out, strict=True):
        refs = np.stack([reference(image, top) for top in range(41)])
        candidates = np.concatenate([refs, refs[..., ::-1]])
        errors = np.abs(candidates - result.numpy()).reshape(len(candidates), -1).max(axis=1)
        assert errors.min() < 1e-6


def test_batch_transform_draws_per_sample_and_reproducibly() -> None:
    image = face().permute(1, 2, 0)[:, columns_read(64)]
    batch = image.expand(64, *image.shape).contiguous()  # the same face 64 times
    transform = BatchTransform(64)
    torch.manual_seed(7)
    first = transform.train(batch)
    torch.manual_seed(7)
    assert torch.equal(first, transform.train(batch))
    distinct = {tuple(x.flatten()[:50].tolist()) for x in first}
    assert len(distinct) > 20  # each sample got its own crop and flip


def test_columns_read_at_other_sizes() -> None:
    for size in (32, 64, 89):
        columns = columns_read(size)
        assert len(columns) == 2 * size and columns.min() >= 0 and columns.max() <= 177
    # From 90 pixels 2S taps would outnumber the source's columns: the cache keeps all 178.
    for size in (90, 128, 224):
        assert np.array_equal(columns_read(size), np.arange(178))


@pytest.mark.parametrize("size", [89, 96, 128])
def test_batch_transform_is_exact_at_other_sizes(size: int) -> None:
    faces = torch.stack([face()] + [torch.randint(0, 256, (3, 218, 178), dtype=torch.uint8)
                                    for _ in range(3)])  # fmt: skip
    cached = faces.permute(0, 2, 3, 1)[:, :, columns_read(size)].contiguous()
    batch = BatchTransform(size)
    expected = torch.stack([eval_transform(size)(f) for f in faces])
    # Float rounding only: at 96 both this and interpolate lie 1.4e-5 from the float64 resize,
    # as float32 source coordinates do, and 2e-6 from each other.
    torch.testing.assert_close(batch.eval(cached), expected, atol=5e-6, rtol=0)
    torch.manual_seed(0)
    out = batch.train(cached)
    for image, result in zip(faces, out, strict=True):
        # The eval crop of the image shifted up by top-20 rows is the training crop at top.
        crops = torch.stack([eval_transform(size)(image.roll(20 - top, dims=1))
                             for top in range(41)])  # fmt: skip
        candidates = torch.cat([crops, crops.flip(-1)])
        errors = (candidates - result).abs().flatten(1).max(dim=1).values
        assert errors.min() < 5e-6
