"""Groups (target x subgroup values): naming, metrics, the balanced sampler, the objectives, the
generator's planted correlation, and their settings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from lit_celeba.base.errors import SettingError
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.sampling import GroupBalancedSampler, balanced_sampler
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.data.synthetic.faces import ATTRIBUTE_NAMES, draw_face
from lit_celeba.methods.group_training import (
    group_dro_step,
    group_loss_sums,
    inverse_frequency_weights,
)
from lit_celeba.methods.groups import group_counts, group_index, group_names
from tests.conftest import recipe_model


def test_group_names_and_index_agree() -> None:
    names = group_names("Blond_Hair", ["Male"])
    assert names == ["Blond_Hair=0,Male=0", "Blond_Hair=0,Male=1",
                     "Blond_Hair=1,Male=0", "Blond_Hair=1,Male=1"]  # fmt: skip
    targets = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    males = torch.tensor([[0], [1], [0], [1]])
    assert group_index(targets, males).tolist() == [0, 1, 2, 3]
    assert group_names("A", ["B", "C"])[5] == "A=1,B=0,C=1"
    assert group_index(torch.tensor([[1.0]]), torch.tensor([[0, 1]])).tolist() == [5]


def test_balanced_sampler_draws_every_group_equally_and_shards_one_draw() -> None:
    groups = torch.tensor([0] * 900 + [1] * 80 + [2] * 20)
    whole = list(GroupBalancedSampler(groups, 4, seed=5))
    drawn = group_counts(groups[whole], 4)
    assert len(whole) == 1000 and drawn[3] == 0
    # 1000 draws over three groups: each near 333 (binomial sd 15).
    assert all(abs(int(n) - 1000 / 3) < 70 for n in drawn[:3])
    again = GroupBalancedSampler(groups, 4, seed=5)
    assert list(again) == whole
    again.set_epoch(1)
    assert list(again) != whole
    ranks = [balanced_sampler(groups, 4, seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    assert all(isinstance(r, DistributedSampler) for r in ranks)  # Lightning leaves it as it is
    assert [len(r) for r in ranks] == [500, 500]
    assert sorted(list(ranks[0]) + list(ranks[1])) == sorted(whole)
    # Each rank one slice of the same draw, epoch after epoch (Lightning calls set_epoch on the
    # wrapper, which passes it on).
    for r in ranks:
        r.set_epoch(1)
    assert [list(r) for r in ranks] == [list(again)[0::2], list(again)[1::2]]
    # Three ranks: 1000 rounded up to 1002 draws, 334 each, none repeated from another shard.
    thirds = [balanced_sampler(groups, 4, seed=5, num_replicas=3, rank=r) for r in range(3)]
    assert [len(r) for r in thirds] == [334] * 3
    draw = list(GroupBalancedSampler(groups, 4, seed=5, num_samples=1002))
    assert [list(r) for r in thirds] == [draw[r::3] for r in range(3)]


def test_inverse_frequency_weights_give_each_group_the_same_total() -> None:
    counts = torch.tensor([100.0, 10.0, 0.0, 890.0])
    weights = inverse_frequency_weights(counts)
    assert (weights * counts)[[0, 1, 3]].tolist() == pytest.approx([1000 / 3] * 3)
    assert weights[2] == 0 and (weights * counts).sum().item() == pytest.approx(1000)


def test_group_dro_step_is_sagawas_update() -> None:
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])
    loss = torch.tensor([0.1, 2.0, 0.5, 0.0])
    present = torch.tensor([True, True, True, False])
    new = group_dro_step(q, loss, present, eta=0.5)
    expected = q * torch.exp(0.5 * loss)  # the absent group: exp(0), its weight kept
    assert torch.allclose(new, expected / expected.sum())
    adjusted = group_dro_step(q, loss, present, eta=0.5, adjustment=torch.tensor([1.0] * 4))
    assert adjusted[1] / adjusted[3] > new[1] / new[3]


def test_group_loss_sums_per_group() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    sums, counts = group_loss_sums(losses, torch.tensor([0, 2, 2, 0]), 3)
    assert sums.tolist() == [5.0, 0.0, 5.0] and counts.tolist() == [2.0, 0.0, 2.0]
    sums.sum().backward()
    assert losses.grad.tolist() == [1.0] * 4


def test_group_dro_weights_are_a_checkpointed_buffer() -> None:
    model = recipe_model(target_attrs=["Blond_Hair"], subgroups=["Male"],
                             objective="group_dro")  # fmt: skip
    assert model.state_dict()["dro_q"].tolist() == [0.25] * 4
    model.dro_q.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    plain = recipe_model(target_attrs=["Blond_Hair"], subgroups=["Male"])
    # A plain model loads a Group DRO checkpoint's weights, without its group state ...
    checkpoint = {"state_dict": dict(model.state_dict()), "hyper_parameters": {}}
    plain.on_load_checkpoint(checkpoint)
    plain.load_state_dict(checkpoint["state_dict"])
    # ... and a Group DRO model takes the weights back exactly.
    other = recipe_model(target_attrs=["Blond_Hair"], subgroups=["Male"],
                             objective="group_dro")  # fmt: skip
    checkpoint = {"state_dict": dict(model.state_dict()), "hyper_parameters": {}}
    other.on_load_checkpoint(checkpoint)
    other.load_state_dict(checkpoint["state_dict"])
    assert other.dro_q.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective": "jtt"}, "objective must be one of erm, reweight, group_dro"),
        ({"objective": "group_dro", "dro_eta": 0.0}, "dro_eta must be positive"),
        ({"objective": "group_dro", "dro_adjust": -1.0}, "dro_adjust must be 0"),
    ],
)
def test_bad_objective_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(SettingError, match=message):
        recipe_model(target_attrs=["Blond_Hair"], subgroups=["Male"], **kwargs)


def test_data_group_settings_need_one_target_and_subgroups() -> None:
    with pytest.raises(SettingError, match="group_balanced needs one target_attr and at least"):
        CelebADataModule(target_attr="Blond_Hair", sampler="group_balanced")
    with pytest.raises(SettingError, match="sampler must be one of random, group_balanced; got"):
        CelebADataModule(target_attr="Blond_Hair", subgroups=["Male"], sampler="balanced")
    # The training batches carry the groups exactly when there are groups (issue 33: derived,
    # no longer a setting that model.objective set through a link).
    assert CelebADataModule(target_attr="Blond_Hair", subgroups=["Male"]).train_subgroups
    assert not CelebADataModule(target_attr="Blond_Hair").train_subgroups
    two_targets = CelebADataModule(target_attr=["Blond_Hair", "Young"], subgroups=["Male"])
    assert not two_targets.train_subgroups


def test_default_faces_are_unchanged() -> None:
    # Recorded from the generator before `correlate` existed (same Pillow and numpy): the
    # option must leave the default faces and labels byte for byte as they were.
    digest = hashlib.sha256()
    for index in range(12):
        picture, labels = draw_face(7, index, 0.04)
        digest.update(picture.tobytes())
        digest.update(labels.tobytes())
    assert digest.hexdigest() == "e997b680a868b76237d281a74e0e67842c77108e923a2bd250af7f17e7bf20a2"


def _labels(folder: Path) -> np.ndarray:
    lines = (folder / "list_attr_celeba.txt").read_text().splitlines()[2:]
    return np.array([[int(v) > 0 for v in line.split()[1:]] for line in lines])


def test_correlate_plants_the_correlation_in_train_only(tmp_path: Path) -> None:
    folder = generate_celeba(tmp_path, 600, 10, 600, seed=1, label_noise=0.0, progress=False,
                             correlate=("Blond_Hair", "Male", 0.1))  # fmt: skip
    labels = _labels(folder)
    blond, male = (labels[:, ATTRIBUTE_NAMES.index(n)] for n in ("Blond_Hair", "Male"))
    train, test = slice(0, 600), slice(610, None)
    # Train: 10 % of faces with Male equal to Blond_Hair (binomial sd 1.2 %).
    assert abs((blond[train] == male[train]).mean() - 0.1) < 0.04
    # Test: Male a fair coin for blond and other faces alike.
    assert abs(male[test][blond[test]].mean() - 0.5) < 0.2
    assert abs(male[test][~blond[test]].mean() - 0.5) < 0.08
    assert 0.08 < blond[train].mean() < 0.25  # the target keeps its own rate
    marker = (folder / "SYNTHETIC.json").read_text()
    assert '"correlate"' in marker


@pytest.mark.parametrize(
    ("correlate", "message"),
    [
        (("Blond", "Male", 0.1), "'Blond', which is not one of the 40 attributes"),
        (("Male", "Male", 0.1), "two different attributes"),
        (("Blond_Hair", "Male", 1.5), "share must be a number from 0 to 1"),
    ],
)
def test_bad_correlate(tmp_path: Path, correlate: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_celeba(tmp_path, 5, 5, 5, progress=False, correlate=correlate)


def _recount(predictions: Path, labels_root: Path) -> dict[str, tuple[int, float]]:
    """Images and accuracy per group, counted from predictions.csv and the attribute file."""
    import csv

    labels = _labels(labels_root / "celeba")
    male = labels[:, ATTRIBUTE_NAMES.index("Male")]
    rows = list(csv.DictReader(predictions.open()))
    names = group_names("Blond_Hair", ["Male"])
    tally = {name: [0, 0] for name in names}
    for row in rows:
        image = int(Path(row["image"]).stem) - 1
        truth = int(float(row["true_Blond_Hair"]))
        right = int(float(row["pred_Blond_Hair"])) == truth
        name = names[2 * truth + int(male[image])]
        tally[name][0] += 1
        tally[name][1] += right
    return {name: (n, right / n if n else float("nan")) for name, (n, right) in tally.items()}


def test_blond_hair_config_end_to_end(tiny_root: Path, tmp_path: Path) -> None:
    """configs/blond_hair.yaml through the CLI: the run prints its training groups, checkpoints
    by val/worst_group_acc, saves the Group DRO weights, and the test's group table equals a
    recount from the predictions of the same checkpoint. (In this process: the test is about
    the config, not about a process of each command's own.)"""
    import csv

    from tests.conftest import CONFIGS, cli_in_process, tiny_overrides

    flags = [*tiny_overrides(tiny_root, tmp_path / "logs"), "--data.batch_size=16"]
    config = ["--config", str(CONFIGS / "blond_hair.yaml")]
    fit = cli_in_process("fit", *config, *flags, "--trainer.max_epochs=2", "--model.dro_eta=0.5",
                         cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    labels = _labels(tiny_root / "celeba")[:96]
    blond, male = (labels[:, ATTRIBUTE_NAMES.index(n)] for n in ("Blond_Hair", "Male"))
    expected = ", ".join(
        f"{name}: {int(((blond == t) & (male == m)).sum())}"
        for name, (t, m) in zip(group_names("Blond_Hair", ["Male"]),
                                [(0, 0), (0, 1), (1, 0), (1, 1)], strict=True)  # fmt: skip
    )
    assert f"Training images per group: {expected}" in fit.stdout + fit.stderr
    run_dir = tmp_path / "logs" / "blond_hair" / "version_0"
    best = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("epoch")]
    assert len(best) == 1 and "-worst" in best[0]
    last = run_dir / "checkpoints" / "last.ckpt"
    q = torch.load(last, weights_only=True)["state_dict"]["dro_q"]
    assert q.sum().item() == pytest.approx(1.0) and not torch.allclose(q, torch.full((4,), 0.25))

    test = cli_in_process("test", *config, *flags, f"--ckpt_path={last}", cwd=tmp_path)
    assert test.returncode == 0, test.stderr
    assert "Test accuracy per group (worst " in test.stdout + test.stderr
    table = {row["group"]: row for row in csv.DictReader(
        (tmp_path / "logs" / "blond_hair" / "version_1" / "test_groups.csv").open())}
    out = tmp_path / "predictions.csv"
    predict = cli_in_process("predict", *config, *flags, f"--ckpt_path={last}",
                             f"--prediction.output={out}", cwd=tmp_path)  # fmt: skip
    assert predict.returncode == 0, predict.stderr
    for name, (size, accuracy) in _recount(out, tiny_root).items():
        assert int(table[name]["images"]) == size
        if size:
            assert float(table[name]["accuracy"]) == pytest.approx(accuracy, abs=1e-6)


def _assert_groups_equal_a_recount(metrics: dict[str, float], run: Path, root: Path) -> None:
    """The logged group sizes and accuracies, and the run's test_groups.csv, against a count
    from the run's predictions.csv and the attribute file."""
    import csv

    table = {row["group"]: row for row in csv.DictReader((run / "test_groups.csv").open())}
    for name, (size, accuracy) in _recount(run / "predictions.csv", root).items():
        assert metrics[f"test/group_size/{name}"] == size == int(table[name]["images"])
        assert metrics[f"test/group_acc/{name}"] == pytest.approx(accuracy, abs=1e-6)
        assert float(table[name]["accuracy"]) == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.slow
def test_objectives_raise_the_worst_group(tmp_path: Path) -> None:
    """Blond faces 95 % women in train, Male a fair coin in test: 3,000 / 1,000 generated faces
    (18-31 blond men in train), 16 px, the recipe CNN at widths 16-128 without dropout, 10
    epochs, tested on the 0.99 weight average (benchmarks/groups_over_seeds.py's Setting).

    Measured over seeds 0-9 (`python benchmarks/groups_over_seeds.py`, 2026-12-02; worst group
    / mean of groups, test): ERM 0.282-0.670 / 0.818-0.903, its worst group the blond men every
    time, 0.232-0.536 below its mean; group-balanced sampling 0.929-0.965, +0.264 to +0.662 over
    ERM; Group DRO (eta 0.05) 0.847-0.966, +0.264 to +0.577 (reweight, not run here: 0.875-0.948,
    +0.227 to +0.623). Seed 0: ERM 0.531 / 0.875, balanced 0.945, Group DRO 0.947. The assertions
    sit at about half the smallest gap and gains over the ten seeds."""
    from benchmarks.groups_over_seeds import Setting, generate, train_and_test

    setting, seed = Setting(), 0
    root = generate(tmp_path, seed, setting)
    worst, mean = {}, {}
    for objective in ("erm", "balanced", "group_dro"):
        run = tmp_path / objective
        metrics = train_and_test(root, seed, objective, setting, run)
        _assert_groups_equal_a_recount(metrics, run, root)
        worst[objective] = metrics["test/worst_group_acc"]
        mean[objective] = metrics["test/mean_group_acc"]
    print({name: (round(worst[name], 3), round(mean[name], 3)) for name in worst})
    assert worst["erm"] < mean["erm"] - 0.1
    assert worst["balanced"] > worst["erm"] + 0.12
    assert worst["group_dro"] > worst["erm"] + 0.12


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--model.objective=group_dro", "error: Invalid setting: model.objective group_dro weighs "
         "the training loss by group: it needs one target_attr and at least one subgroup "
         "(model.subgroups, e.g. [Male]); got target_attr ['Male'] and subgroups none"),
        ("--data.sampler=group_balanced", "error: Invalid setting: data.sampler group_balanced "
         "needs one target_attr and at least one subgroup"),
    ],
)  # fmt: skip
def test_group_training_without_subgroups_is_one_error(
    tiny_root: Path, tmp_path: Path, flag: str, message: str
) -> None:
    from tests.conftest import CONFIGS, cli_in_process, tiny_overrides

    result = cli_in_process("fit", "--config", str(CONFIGS / "base.yaml"),
                            *tiny_overrides(tiny_root, tmp_path / "logs"), flag,
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
