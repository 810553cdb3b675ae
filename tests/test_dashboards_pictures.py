"""The dashboards' pictures, drawn from tensors alone: the prediction gallery (frames, pixels,
captions of one attribute or of 40), the confusion matrices, the evaluation outputs gathered
from the ranks, the class names, the augmentation preview (seeded, and what training draws), and
the activation maps' captions. The pictures in real runs: tests/test_dashboards.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lit_celeba.callbacks.evaluation_pictures import _all_ranks
from lit_celeba.callbacks.pictures import (
    CORRECT_COLOUR,
    WRONG_COLOUR,
    augmentation_preview,
    class_names,
    confusion_matrices_picture,
    confusion_matrix_picture,
    gallery_picture,
    raw_train_images,
)
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.data.synthetic import ATTRIBUTE_NAMES
from lit_celeba.methods.colour import ColourChanges
from tests.conftest import TINY_SIZES


def test_gallery_frames_wrong_predictions_in_red() -> None:
    images = torch.rand(10, 3, 64, 64)
    probabilities = torch.tensor([0.9, 0.2, 0.7, 0.1, 0.6, 0.4, 0.95, 0.05, 0.51, 0.49])
    targets = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    wrong = (probabilities > 0.5).float() != targets
    predictions = (probabilities > 0.5).long()
    picture = gallery_picture(images, probabilities, predictions, targets, class_names("Male"))
    # 2 rows of 5 cards, each a 128-pixel face (64 enlarged twice) in a 4-pixel frame.
    gap, card_w = 6, 128 + 2 * 4
    card_h = (picture.shape[0] - 3 * gap) // 2
    assert picture.shape[1] == 5 * card_w + 6 * gap and picture.dtype == np.uint8
    for index in range(10):
        row, column = divmod(index, 5)
        frame_pixel = picture[gap + row * (card_h + gap) + 1, gap + column * (card_w + gap) + 1]
        expected = WRONG_COLOUR if wrong[index] else CORRECT_COLOUR
        assert tuple(frame_pixel) == expected, index


def test_gallery_shows_the_network_input_pixels() -> None:
    images = torch.zeros(1, 3, 64, 64)
    images[0, 0] = 1.0  # pure red face
    picture = gallery_picture(
        images, torch.tensor([0.3]), torch.tensor([0]), torch.tensor([0.0]), ("a", "b")
    )
    centre = picture[6 + 4 + 64, 6 + 4 + 64]
    assert tuple(centre) == (255, 0, 0)


def test_confusion_matrix_shades_cells_by_their_share_of_the_row() -> None:
    picture = confusion_matrix_picture(torch.tensor([[9, 1], [0, 10]]), class_names("Young"))
    assert picture.ndim == 3 and picture.shape[2] == 3
    # Diagonal cells (most of their row) are darker than the off-diagonal ones.
    left, top, cell_w, cell_h = 150, 70, 130, 70
    corner = [
        [picture[top + i * cell_h + 3, left + j * cell_w + 3] for j in range(2)] for i in range(2)
    ]
    assert corner[0][0].sum() < corner[0][1].sum() and corner[1][1].sum() < corner[1][0].sum()
    assert tuple(corner[1][0]) == (255, 255, 255)  # a count of 0 is not shaded at all


def _frame_colours(picture: np.ndarray, count: int, columns: int = 5) -> list[tuple[int, ...]]:
    """The top-left frame pixel of each of ``count`` equally sized cards in a gallery."""
    gap, rows = 6, -(-count // columns)
    card_w = (picture.shape[1] - (columns + 1) * gap) // columns
    card_h = (picture.shape[0] - (rows + 1) * gap) // rows
    return [
        tuple(
            picture[
                gap + (i // columns) * (card_h + gap) + 1, gap + (i % columns) * (card_w + gap) + 1
            ]
        )
        for i in range(count)
    ]


def test_gallery_with_several_attributes_shows_each_face_once() -> None:
    # Before: the (N, K) probabilities were flattened, 12 captions for 4 faces (a zip() error).
    images = torch.rand(5, 3, 64, 64)
    probabilities = torch.tensor([[0.9, 0.2, 0.7]] * 5)
    targets = torch.tensor([[1.0, 0.0, 1.0]] * 4 + [[1.0, 1.0, 1.0]])  # the last: Young wrong
    predictions = (probabilities > 0.5).long()
    one_line = gallery_picture(
        images, probabilities[:, :1], predictions[:, :1], targets[:, :1], ("a", "b")
    )
    picture = gallery_picture(
        images, probabilities, predictions, targets, ["Male", "Young", "Smiling"]
    )
    assert _frame_colours(picture, 5) == [CORRECT_COLOUR] * 4 + [WRONG_COLOUR]
    # One row of 5 cards; three caption lines instead of two make each card 19 pixels taller.
    assert picture.shape[0] == one_line.shape[0] + 19
    # The caption of the wrong attribute is red, the others green.
    last_card = picture[:, -(picture.shape[1] // 5) :]
    assert (np.all(last_card == WRONG_COLOUR, axis=-1)).sum() > (128 + 8) * 4  # frame + caption


def test_gallery_of_40_attributes_captions_the_first_three() -> None:
    # configs/all_attributes.yaml with batch 8 used to fail here (zip() argument 2 is longer).
    images, probabilities = torch.rand(8, 3, 32, 32), torch.rand(8, 40)
    targets = (torch.rand(8, 40) > 0.5).float()
    predictions = (probabilities > 0.5).long()
    picture = gallery_picture(images, probabilities, predictions, targets, list(ATTRIBUTE_NAMES))
    three = gallery_picture(images, probabilities[:, :3], predictions[:, :3], targets[:, :3],
                            list(ATTRIBUTE_NAMES[:3]))  # fmt: skip
    assert np.array_equal(picture, three)


def test_one_small_confusion_matrix_per_attribute() -> None:
    matrices = torch.tensor([[[9, 1], [0, 10]], [[5, 5], [5, 5]], [[0, 0], [0, 20]]])
    picture = confusion_matrices_picture(matrices, ["Male", "Young", "Smiling"])
    tile_w = (picture.shape[1] - 4 * 6) // 3
    assert picture.ndim == 3 and picture.shape[1] == 3 * tile_w + 4 * 6  # one row of 3 tiles
    left, top, cell_w, cell_h = 52, 40, 64, 36

    def cell(k: int, i: int, j: int) -> np.ndarray:
        return picture[6 + top + i * cell_h + 3, 6 + k * (tile_w + 6) + left + j * cell_w + 3]

    assert cell(0, 0, 0).sum() < cell(0, 0, 1).sum()  # 90 % of the row is darker than 10 %
    assert tuple(cell(0, 1, 0)) == (255, 255, 255) and tuple(cell(2, 0, 0)) == (255, 255, 255)
    assert np.array_equal(cell(1, 0, 0), cell(1, 1, 1))  # 50 % and 50 %
    many = confusion_matrices_picture(torch.randint(0, 9, (40, 2, 2)), list(ATTRIBUTE_NAMES))
    assert many.shape[0] > 7 * many.shape[1] // 5 * (picture.shape[0] - 12) / tile_w  # 8 rows


def test_gather_keeps_each_images_attributes_together() -> None:
    parts = [torch.tensor([[0.1, 0.2, 0.3]]), torch.tensor([[0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])]
    assert _all_ranks(parts, 3, torch.device("cpu")).shape == (3, 3)
    assert _all_ranks([], 3, torch.device("cpu")).shape == (0, 3)  # a rank that saw no batch


def test_class_names() -> None:
    assert class_names("Male") == ("Female", "Male")
    assert class_names("Young") == ("not Young", "Young")


def _preview_data(root: Path, cache_dir: Path, **colour: float) -> CelebADataModule:
    data = CelebADataModule(root=str(root),
                            subsets=Subsets(train=TINY_SIZES["train"], val=TINY_SIZES["valid"]),
                            num_workers=0,
                            cache_dir=str(cache_dir), colour=ColourChanges(**colour))  # fmt: skip
    data.setup("fit")
    return data


def _tiles(picture: np.ndarray, rows: int, columns: int, side: int = 128) -> np.ndarray:
    """The preview's tiles, row by row, at their own size (each pixel was enlarged 128/64)."""
    step = side + 6  # 6-pixel gaps
    tiles = [picture[6 + r * step : 6 + r * step + side : 2, 6 + c * step : 6 + c * step + side : 2]
             for r in range(rows) for c in range(columns)]  # fmt: skip
    return np.stack(tiles)


def test_augmentation_preview_is_seeded_and_leaves_training_randomness_alone(
    tiny_root: Path, tmp_path: Path
) -> None:
    data = _preview_data(tiny_root, tmp_path)
    raw = raw_train_images(data, 2)
    # The pixels training starts from: the decoded cache's layout, the columns the resize reads.
    assert raw.shape == (2, 218, 128, 3) and raw.dtype == torch.uint8
    assert torch.equal(raw[1], data.datasets["train"][1][0])
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = augmentation_preview(data, 2, 5, seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert np.array_equal(first, augmentation_preview(data, 2, 5, seed=1))
    assert not np.array_equal(first, augmentation_preview(data, 2, 5, seed=2))
    # 2 rows of 5 tiles of 128 pixels (64 enlarged twice) with 6-pixel gaps.
    assert first.shape == (2 * 128 + 3 * 6, 5 * 128 + 6 * 6, 3)
    tiles = _tiles(first, 2, 5)
    assert any(not np.array_equal(tiles[0], t) for t in tiles[1:5])  # the augmentations differ


def test_the_preview_draws_what_training_draws_colour_included(
    tiny_root: Path, tmp_path: Path
) -> None:
    colour = dict(brightness=0.4, contrast=0.3, saturation=0.3)
    data = _preview_data(tiny_root, tmp_path, **colour)
    picture = augmentation_preview(data, 2, 3, seed=7)
    # The training transform itself (the data module's own object) under the preview's seed, on
    # the same two images, each repeated for its row.
    torch.manual_seed(7)
    drawn = data.batch_transform.train(raw_train_images(data, 2).repeat_interleave(3, dim=0))
    expected = (drawn * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(_tiles(picture, 2, 3), expected)
    # The colour settings reach the preview: each one changes it, and without them the tiles are
    # the recipe's crops alone.
    for changed in ({**colour, "brightness": 0.0}, {**colour, "saturation": 0.0}, {}):
        other = _preview_data(tiny_root, tmp_path, **changed)
        assert not np.array_equal(augmentation_preview(other, 2, 3, seed=7), picture)


# ---- the activation maps' captions ---------------------------------------------------------------


def test_long_attribute_names_are_not_cut_in_the_map_captions() -> None:
    """Item 9: "not 5_o_Clock_Shadow" under a 128-pixel tile lost both ends."""
    from lit_celeba.callbacks.maps import _card
    from lit_celeba.callbacks.pictures import _font, _text_width

    font = _font(14)
    caption = "not 5_o_Clock_Shadow 95%"
    card = _card(Image.new("RGB", (128, 128)), caption, font)
    assert card.width >= _text_width(caption, font) + 8
    face = torch.rand(1, 3, 64, 64)
    gallery = gallery_picture(face, torch.tensor([0.95]), torch.tensor([0]), torch.tensor([0]),
                              class_names("5_o_Clock_Shadow"))  # fmt: skip
    assert gallery.shape[1] >= _text_width("GT: not 5_o_Clock_Shadow", _font(15))
