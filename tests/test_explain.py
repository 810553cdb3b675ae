"""lit_celeba.explain: the activation maps, the faces chosen for them, their pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lit_celeba.callbacks.evaluation_pictures import maps_picture
from lit_celeba.data.synthetic.faces import draw_face
from lit_celeba.explain.candidates import MapCandidates, faces_per_kind
from lit_celeba.explain.maps import activation_maps, overlaid, overlay, split
from lit_celeba.models.nets import RecipeCNN, ResNet

SIZE = 64
REGION = (slice(0, SIZE // 2), slice(0, SIZE // 2))  # the top-left quarter of the input


def _marked_faces(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated faces at SIZE px. Label 1: a green 8x8 mark somewhere inside REGION; half of
    all faces, whatever their label, also get one somewhere outside it. Only REGION tells the
    label."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    half = SIZE // 2
    for index in range(count):
        face, _ = draw_face(seed, index, 0.0)
        pixels = np.asarray(face.resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)
        pixels = pixels.transpose(2, 0, 1) / 255
        label = index % 2
        marks = [tuple(rng.integers(0, half - 8, size=2))] if label else []
        if rng.random() < 0.5:  # a distractor in one of the three other quarters
            y, x = rng.integers(0, half - 8, size=2)
            dy, dx = [(0, half), (half, 0), (half, half)][rng.integers(3)]
            marks.append((y + dy, x + dx))
        for y, x in marks:
            pixels[:, y : y + 8, x : x + 8] = np.array([0.0, 1.0, 0.0])[:, None, None]
        images.append(pixels)
        labels.append(label)
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


@pytest.mark.slow
def test_the_map_is_brightest_where_the_label_is_drawn() -> None:
    # The recipe's CNN with batch norm (configs/tuned.yaml's), narrowed, trained for 150 steps.
    torch.manual_seed(0)
    images, labels = _marked_faces(256, seed=5)
    net = RecipeCNN((8, 16, 32, 32), dropout=0.0, image_size=SIZE, batch_norm=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(150):
        batch = torch.randint(0, len(images), (64,))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net(images[batch])[:, 0], labels[batch].float()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    test, truth = _marked_faces(64, seed=6)
    with torch.no_grad():
        said = (net(test)[:, 0] > 0).long()
    assert (said == truth).float().mean() > 0.9  # it learnt where the mark is
    positive = (truth == 1) & (said == 1)
    count = int(positive.sum())
    with torch.inference_mode():  # as at the end of a validation epoch
        maps = activation_maps(net, test[positive], torch.zeros(count, dtype=torch.long),
                               torch.ones(count))  # fmt: skip
    assert maps.shape[1:] == (SIZE // 8, SIZE // 8) and maps.max() <= 1 and maps.min() >= 0
    cells = maps.shape[-1] // 2  # REGION on the map
    inside = maps[:, :cells, :cells].mean((1, 2))
    outside = (maps.sum((1, 2)) - inside * cells**2) / (maps[0].numel() - cells**2)
    assert (inside > outside).float().mean() >= 0.9  # brighter there in (nearly) every face
    mean_map = maps.mean(0)
    brightest = int(mean_map.argmax())
    assert brightest // mean_map.shape[1] < cells and brightest % mean_map.shape[1] < cells


def test_maps_of_every_network_leave_it_as_it_was() -> None:
    torch.manual_seed(0)
    nets = [RecipeCNN(image_size=64), RecipeCNN(image_size=64, batch_norm=True),
            ResNet("resnet18", num_outputs=3)]  # fmt: skip
    images = torch.rand(4, 3, 64, 64)
    for net in nets:
        net.eval()
        before = {k: v.clone() for k, v in net.state_dict().items()}
        outputs = net(images).shape[1]
        attributes = torch.tensor([0, outputs - 1, 0, outputs - 1])
        maps = activation_maps(net, images, attributes, torch.tensor([1.0, -1.0, 1.0, -1.0]))
        trunk, head = split(net)
        with torch.no_grad():
            assert torch.allclose(head(trunk(images)), net(images), atol=1e-6)
        side = 2 if hasattr(net, "layer4") else 8  # 64 / 32, 64 / 8
        assert maps.shape == (4, side, side)
        assert torch.all(maps >= 0) and torch.all(maps <= 1)
        assert not net.training and all(p.grad is None for p in net.parameters())
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_class_map_and_its_opposite_split_the_evidence() -> None:
    # On a GAP network the "yes" and "no" maps are the positive and negative parts of one map.
    torch.manual_seed(1)
    net = RecipeCNN(image_size=32).eval()
    images = torch.rand(2, 3, 32, 32)
    attribute = torch.zeros(2, dtype=torch.long)
    yes = activation_maps(net, images, attribute, torch.ones(2))
    no = activation_maps(net, images, attribute, -torch.ones(2))
    assert torch.all((yes == 0) | (no == 0))


def test_candidates_keep_the_most_confident_right_and_wrong_answers() -> None:
    keep = MapCandidates(2)
    images = torch.arange(6.0).reshape(6, 1, 1, 1).expand(6, 3, 2, 2)
    probabilities = torch.tensor([[0.9], [0.2], [0.6], [0.95], [0.45], [0.01]])
    predictions = (probabilities > 0.5).long()
    targets = torch.tensor([[1], [0], [0], [0], [1], [0]])
    keep.update(images[:3], probabilities[:3], predictions[:3], targets[:3])
    keep.update(images[3:], probabilities[3:], predictions[3:], targets[3:])
    chosen = keep.chosen(0)
    # Right: image 5 (0.99 for "no"), then image 0 (0.9 for "yes"); wrong: 3 (0.95), then 2.
    assert chosen["right"].images[:, 0, 0, 0].tolist() == [5.0, 0.0]
    assert chosen["wrong"].images[:, 0, 0, 0].tolist() == [3.0, 2.0]
    assert chosen["wrong"].targets.tolist() == [0, 0]
    keep.reset()
    keep.update(images[:1], probabilities[:1], predictions[:1], targets[:1])
    assert len(keep.chosen(0)["wrong"].images) == 0  # no mistake seen: none shown


def test_the_maps_picture_has_a_row_per_kind() -> None:
    torch.manual_seed(0)
    net = RecipeCNN(image_size=32, num_outputs=2).eval()
    keep = MapCandidates(3)
    images = torch.rand(8, 3, 32, 32)
    probabilities = torch.rand(8, 2)
    targets = torch.randint(0, 2, (8, 2))
    keep.update(images, probabilities, (probabilities > 0.5).long(), targets)
    laid = overlaid(net, [keep.chosen(0), keep.chosen(1)])
    assert laid[0]["right"].images.shape[1:] == (3, 32, 32)
    picture = maps_picture(laid[0], ("Female", "Male"))
    kinds = sum(len(c.images) > 0 for c in laid[0].values())
    assert picture.shape[0] > 128 * kinds and picture.shape[2] == 3
    assert maps_picture({}, ("Female", "Male")) is None


def test_the_overlay_colours_the_map_and_keeps_the_face() -> None:
    images = torch.zeros(1, 3, 8, 8)
    maps = torch.zeros(1, 2, 2)
    maps[0, 0, 0] = 1.0
    laid = overlay(images, maps)
    assert laid.shape == (1, 3, 8, 8)
    assert laid[0, 0, 0, 0] > laid[0, 2, 0, 0]  # hot: red
    assert laid[0, 2, 7, 7] > laid[0, 0, 7, 7]  # cold: blue


def test_many_attributes_get_fewer_faces_each() -> None:
    assert [faces_per_kind(4, k) for k in (1, 3, 8, 9, 40)] == [4, 4, 4, 3, 1]
    assert faces_per_kind(0, 1) == 0 and faces_per_kind(2, 1) == 2
