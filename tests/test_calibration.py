"""``test/ece``: the expected calibration error that ``test`` reports next to the accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from lit_celeba.base.errors import CheckpointError
from lit_celeba.commands.export import export as export_command
from lit_celeba.commands.predictor import Predictor
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.settings import Subsets
from lit_celeba.data.synthetic import generate_celeba
from lit_celeba.methods.calibration import (
    calibration_from_state,
    calibration_state,
    evaluated_with,
    fit_calibration,
    fit_scaling,
)
from lit_celeba.methods.thresholds import choose_thresholds
from lit_celeba.models.evaluation import calibration_errors
from lit_celeba.models.module import AttributeClassifier
from lit_celeba.models.outputs import Calibration
from tests.conftest import CONFIGS, TINY_SIZES, cli_in_process, recipe_model, tiny_overrides


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """By hand: 15 equal-width bins of the probability, |share of positives - mean probability|
    in each, weighted by the bin's share of the images."""
    which = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap = abs(targets[members].mean() - probs[members].mean())
            total += gap * members.mean()
    return total


def test_test_split_reports_the_expected_calibration_error(tiny_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    # PyTorch's own initialisation spreads the untrained probabilities over several bins.
    model = recipe_model(channels=(8, 8, 16, 16), init="torch", dropout=0.0).eval()
    data = CelebADataModule(
        root=str(tiny_root),
        subsets=Subsets(test=TINY_SIZES["test"]),
        num_workers=0,
        batch_size=16,
        cache=False,  # JPEGs decoded on access: no cache file written for this test
    )
    # Without a logger a run's files go to default_root_dir, the working folder by default.
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    assert {"test/acc", "test/loss", "test/ece"} <= set(metrics)

    probs, targets = [], []
    with torch.no_grad():
        for batch in data.test_dataloader():
            images, batch_targets = data.on_after_batch_transfer(batch, 0)  # as the trainer does
            probs.append(torch.sigmoid(model(images)).reshape(-1))
            targets.append(batch_targets.reshape(-1))
    probs_np, targets_np = torch.cat(probs).numpy(), torch.cat(targets).numpy()
    expected = expected_calibration_error(probs_np, targets_np)
    assert expected > 0.01  # not a degenerate case where anything would pass
    assert metrics["test/ece"] == pytest.approx(expected, abs=1e-5)


# ---- fitting the calibration --------------------------------------------------------------------


def test_temperature_scaling_recovers_a_known_overconfidence() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 2, generator=gen) * 2
    targets = (torch.rand(20000, 2, generator=gen) < torch.sigmoid(z)).long()
    # Logits three and a half times too large for the first attribute, right for the second.
    temperatures, _ = fit_scaling(z * torch.tensor([3.5, 1.0]), targets)
    assert temperatures.tolist() == pytest.approx([3.5, 1.0], rel=0.05)


def test_platt_scaling_recovers_a_known_temperature_and_bias() -> None:
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(20000, 2, generator=gen) * 2
    # The truth is sigmoid(z / 2 + 1.5) for the first attribute, sigmoid(z - 0.8) for the second.
    truth = torch.sigmoid(z / torch.tensor([2.0, 1.0]) + torch.tensor([1.5, -0.8]))
    targets = (torch.rand(20000, 2, generator=gen) < truth).long()
    calibration = fit_calibration(z, targets, temperature=True, bias=True)
    assert calibration.temperature.tolist() == pytest.approx([2.0, 1.0], rel=0.06)
    assert calibration.bias.tolist() == pytest.approx([1.5, -0.8], abs=0.06)
    probabilities, _ = calibration.apply(z)
    torch.testing.assert_close(probabilities, truth, atol=0.02, rtol=0)
    # A temperature alone cannot move the line between the classes: its bias stays 0, and the
    # bias is what brings the calibration error down.
    without = fit_calibration(z, targets, temperature=True, bias=False)
    assert without.bias.tolist() == [0.0, 0.0]
    errors = [calibration_errors(c.apply(z)[0], targets) for c in (calibration, without)]
    assert float(errors[0].max()) < 0.02 < float(errors[1].max())


def test_a_bias_keeps_every_decision_where_the_temperature_is_turned_off() -> None:
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(500, 2, generator=gen) * 3
    calibration = Calibration(torch.tensor([0.7, 1.4]), torch.tensor([0.62, 0.35]),
                              "balanced_accuracy", torch.tensor([-1.1, 0.4]))  # fmt: skip
    plain = evaluated_with(calibration, temperature_scaling=False, rule="balanced_accuracy")
    assert plain.temperature.tolist() == [1.0, 1.0] and plain.bias.tolist() == [0.0, 0.0]
    assert torch.equal(plain.apply(z)[1], calibration.apply(z)[1])
    torch.testing.assert_close(plain.apply(z)[0], torch.sigmoid(z))
    # The fixed rule is "calibrated probability above 0.5", with the temperature folded in or not
    # (the order of the two used to matter: the fold first put the cut at a logit of 0).
    fixed = evaluated_with(calibration, temperature_scaling=True, rule="fixed")
    fixed_plain = evaluated_with(calibration, temperature_scaling=False, rule="fixed")
    assert fixed.threshold.tolist() == [0.5, 0.5]
    assert torch.equal(fixed_plain.apply(z)[1], fixed.apply(z)[1])
    above = (z / calibration.temperature + calibration.bias > 0).long()
    assert torch.equal(fixed.apply(z)[1], above)


def test_the_bias_travels_in_checkpoints_and_exports_and_old_ones_load_with_bias_zero() -> None:
    calibration = Calibration(torch.tensor([0.7]), torch.tensor([0.6]), "f1", torch.tensor([-0.9]))
    state = calibration_state(calibration, fitted_at_step=12)
    again = calibration_from_state(state, 1)
    assert again.bias.tolist() == pytest.approx([-0.9]) and again.rule == "f1"
    old = {k: v for k, v in state.items() if k != "bias"}  # written before the bias existed
    assert calibration_from_state(old, 1).bias.tolist() == [0.0]
    with pytest.raises(CheckpointError, match="has bias for 3 attribute.s. but its network has 1"):
        calibration_from_state({**state, "bias": torch.zeros(3)}, 1)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
    images = torch.rand(4, 3, 8, 8)
    net(images)
    predictor = Predictor(net, calibration)
    got, want = predictor(images), calibration.apply(net(images))
    torch.testing.assert_close(got[0], want[0])
    assert torch.equal(got[1], want[1])


def test_thresholds_maximise_balanced_accuracy_and_f1_among_all_cuts() -> None:
    gen = torch.Generator().manual_seed(1)
    probabilities = torch.rand(300, 1, generator=gen)
    targets = (torch.rand(300, 1, generator=gen) < probabilities**3).long()  # rare positives
    p, y = probabilities[:, 0], targets[:, 0].bool()

    def scores(threshold: float) -> tuple[float, float]:
        decided = p > threshold
        tp, fp = (decided & y).sum().item(), (decided & ~y).sum().item()
        fn, tn = (~decided & y).sum().item(), (~decided & ~y).sum().item()
        return (tp / (tp + fn) + tn / (tn + fp)) / 2, 2 * tp / (2 * tp + fp + fn)

    every_cut = [scores(float(t)) for t in p]
    for rule, index in (("balanced_accuracy", 0), ("f1", 1)):
        (chosen,) = choose_thresholds(probabilities, targets, rule).tolist()
        assert scores(chosen)[index] == pytest.approx(max(s[index] for s in every_cut))
    assert choose_thresholds(probabilities, targets, "fixed").tolist() == [0.5]
    one_class = choose_thresholds(probabilities, torch.zeros_like(targets), "f1")
    assert one_class.tolist() == [0.5]  # nothing to choose from


@pytest.mark.slow
def test_an_overtrained_network_is_calibrated_by_fit_and_keeps_its_decisions(
    tmp_path: Path,
) -> None:
    """A network trained for 300 epochs on 96 generated faces learns them by heart and is
    overconfident on other faces; the temperature fitted on 400 validation faces lowers the ECE
    on 400 test faces, and the decisions at 0.5 stay what they were. Measured (seeds 0, 1, 2):
    temperature 4.1 / 4.3 / 6.4, test ECE 0.063 / 0.051 / 0.058 before and 0.039 / 0.039 /
    0.034 after. Without label noise: noisy labels make the validation NLL, which the
    temperature minimises, ask for more than the test's ECE wants."""
    root = tmp_path / "celeba"
    generate_celeba(root, 96, 400, 400, seed=3, progress=False, label_noise=0.0)
    pl.seed_everything(0)
    model = recipe_model(channels=(16, 32, 64, 64), dropout=0.0, image_size=32)
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=3e-3)
    data = CelebADataModule(root=str(root), subsets=Subsets(train=96, val=400, test=400),
                            image_size=32, batch_size=16, num_workers=0,
                            cache_dir=str(tmp_path / "cache"))  # fmt: skip
    trainer = pl.Trainer(accelerator="cpu", max_epochs=300, check_val_every_n_epoch=300,
                         num_sanity_val_steps=0, logger=False, default_root_dir=tmp_path,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    (temperature,) = model.calibration.temperature.tolist()
    assert temperature > 2  # overconfident: the logits are divided down
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    assert metrics["test/ece"] < 0.75 * metrics["test/ece_uncalibrated"]
    data.setup("test")
    batch = data.on_after_batch_transfer(next(iter(data.test_dataloader())), 0)
    calibrated = model.predict_step(batch, 0)
    model.calibration = Calibration.identity(1)  # as the network was before calibration
    plain = model.predict_step(batch, 0)
    assert torch.equal(calibrated["predictions"], plain["predictions"])
    assert not torch.allclose(calibrated["probabilities"], plain["probabilities"])


# ---- the calibrate command, and checkpoints from before calibration -----------------------------


@pytest.mark.slow
def test_calibrate_writes_a_calibrated_copy_that_test_and_export_use(
    tiny_checkpoint: Path, tiny_root: Path, tmp_path: Path
) -> None:
    # The commands in this process: what they write is the test, not a process of their own.
    before = tiny_checkpoint.read_bytes()
    flags = ["--config", str(CONFIGS / "base.yaml"), *tiny_overrides(tiny_root, tmp_path / "logs")]
    done = cli_in_process("calibrate", *flags, f"--ckpt_path={tiny_checkpoint}",
                          "--thresholds=balanced_accuracy", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = tmp_path / "logs" / "base" / "version_0" / "calibrated.ckpt"
    assert f"Wrote {written}" in done.stderr + done.stdout
    assert tiny_checkpoint.read_bytes() == before  # the checkpoint it read is untouched
    calibrated = torch.load(written, weights_only=True)
    assert calibrated["calibration"]["rule"] == "balanced_accuracy"
    original = torch.load(tiny_checkpoint, weights_only=True)
    for key, value in original["state_dict"].items():
        assert torch.equal(calibrated["state_dict"][key], value)
    # A second calibrate into the same file is refused; the file stays.
    again = cli_in_process("calibrate", *flags, f"--ckpt_path={tiny_checkpoint}",
                           f"--out={written}", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 2 and "already exists" in again.stderr
    tested = cli_in_process("test", *flags, f"--ckpt_path={written}", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    assert export_command(written, tmp_path / "exported")["threshold_rule"] == "balanced_accuracy"


def test_a_checkpoint_from_before_calibration_loads_as_temperature_one_and_threshold_half(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    del checkpoint["calibration"]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    model = AttributeClassifier.load_from_checkpoint(old, map_location="cpu").eval()
    assert model.calibration.is_identity
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = model.predict_step(images, 0)
        plain = torch.sigmoid(model(images))
    torch.testing.assert_close(outputs["probabilities"], plain)
    assert torch.equal(outputs["predictions"], (plain > 0.5).long())


def test_last_ckpt_carries_the_calibration_of_its_own_weights(
    tiny_root: Path, tmp_path: Path, capsys
) -> None:
    """Issue 32, item 2: with check_val_every_n_epoch 2 and 3 epochs, the last epoch validates
    too, so last.ckpt's temperature is the one its own weights fit (calibrate fits it again);
    a checkpoint whose calibration is older than its weights is named as such."""
    from lit_celeba.checkpoints.load import load_checkpoint
    from lit_celeba.cli import cli_main

    logs = tmp_path / "logs"
    flags = [*tiny_overrides(tiny_root, logs), "--model.net.channels=[8, 16, 16, 16]",
             "--data.image_size=32", "--data.batch_size=16", "--trainer.limit_train_batches=2",
             "--trainer.limit_val_batches=2"]  # fmt: skip
    cli_main(["fit", "--config", str(CONFIGS / "base.yaml"), *flags, "--trainer.max_epochs=3",
              "--trainer.check_val_every_n_epoch=2"])  # fmt: skip
    last = logs / "base" / "version_0" / "checkpoints" / "last.ckpt"
    saved = load_checkpoint(last)
    assert saved["calibration"]["fitted_at_step"] == saved["global_step"] == 6
    again = tmp_path / "again.ckpt"
    cli_main(["calibrate", "--config", str(CONFIGS / "base.yaml"), *flags,
              f"--ckpt_path={last}", f"--out={again}"])  # fmt: skip
    refitted = load_checkpoint(again)["calibration"]["temperature"]
    assert torch.allclose(saved["calibration"]["temperature"], refitted, rtol=1e-4)
    capsys.readouterr()
    saved["calibration"]["fitted_at_step"] = 4  # as saved after an epoch without validation
    stale = tmp_path / "stale.ckpt"
    torch.save(saved, stale)
    cli_main(["validate", "--config", str(CONFIGS / "base.yaml"), *flags, f"--ckpt_path={stale}"])
    err = capsys.readouterr().err
    assert "was fitted at step 4, to earlier weights than its own (step 6" in err


def test_an_attribute_of_one_class_keeps_temperature_one_without_warnings() -> None:
    """Issue 32, item 3: an attribute whose validation images are all positive (or negative)
    is calibrated to temperature 1 (not 0.01 or 100), and its undefined metrics are NaN without
    torchmetrics' warnings, which do not say which attribute."""
    import warnings

    from lit_celeba.methods.calibration import fit_calibration
    from lit_celeba.models.evaluation import attribute_metrics
    from lit_celeba.models.one_class import one_class_note

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 3, generator=generator) * 3
    targets = (torch.rand(64, 3, generator=generator) < 0.5).long()
    targets[:, 1], targets[:, 2] = 1, 0
    calibration = fit_calibration(logits, targets)
    assert calibration.temperature[1] == 1 and calibration.temperature[2] == 1
    assert calibration.temperature[0] != 1
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        metrics = attribute_metrics(*calibration.apply(logits), targets)
    # torchmetrics' "No positive samples in targets, true positive value should be meaningless"
    assert not [w for w in seen if "samples in targets" in str(w.message)]
    assert torch.isnan(metrics["auroc"][1:]).all() and not torch.isnan(metrics["auroc"][0])
    note = one_class_note("val", ["Male", "Young", "Bald"], targets)
    assert "validation images hold one class only of Young (all 1), Bald (all 0)" in note
    assert one_class_note("val", ["Male"], targets[:, :1]) is None


def test_fit_names_an_attribute_of_one_class_once(tiny_root: Path, tmp_path: Path, caplog) -> None:
    """The tiny set's validation split has no Double_Chin: said once for a two-epoch fit, and
    its temperature in the checkpoint is 1."""
    from lit_celeba.checkpoints.load import load_checkpoint
    from lit_celeba.cli import cli_main

    caplog.set_level("INFO")
    logs = tmp_path / "logs"
    cli_main(["fit", "--config", str(CONFIGS / "base.yaml"), *tiny_overrides(tiny_root, logs),
              "--model.net.channels=[8, 16, 16, 16]", "--data.image_size=32",
              "--data.target_attr=[Male, Double_Chin]", "--trainer.limit_train_batches=2",
              "--trainer.max_epochs=2"])  # fmt: skip
    assert caplog.text.count("hold one class only of Double_Chin (all 0)") == 1
    saved = load_checkpoint(logs / "base" / "version_0" / "checkpoints" / "last.ckpt")
    assert saved["calibration"]["temperature"][1] == 1
