"""Today's methods (docs/beyond_the_recipe.md): the mechanics of each, and the recipe unchanged
while they are off."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing import event_accumulator
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torchvision.transforms import v2

from lit_celeba.cli import cli_main
from lit_celeba.commands.export import export
from lit_celeba.data.datamodule import CelebADataModule
from lit_celeba.data.transforms import BatchTransform
from lit_celeba.methods.averaging import HostCountedAverage, warmup_ema_avg_fn
from lit_celeba.methods.calibration import calibration_from_state
from lit_celeba.methods.colour import ColourChanges, batch_color_jitter
from lit_celeba.methods.flip import flip_averaged_logit
from lit_celeba.models.nets import RecipeCNN, count_parameters
from lit_celeba.models.schedules import WarmupCosineLR, optimizer_config
from tests.conftest import CONFIGS, cli_in_process, recipe_model, run_cli, tiny_overrides

BASE = str(CONFIGS / "base.yaml")


# --- the recipe while every method is off --------------------------------------------------


def test_defaults_are_the_recipe() -> None:
    model = recipe_model()
    assert count_parameters(model.net) == 388_673
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert (model.label_smoothing, model.tta_flip, model.ema_decay) == (0.0, False, None)
    # no weight averaging; the last epoch validates (the calibration of the final weights)
    assert [type(c).__name__ for c in model.configure_callbacks()] == ["ValidateTheLastEpoch"]
    data = CelebADataModule()
    assert data.batch_transform.colour == (0.0, 0.0, 0.0)
    # Saved as plain values (checkpoints load weights_only), however the data module was built.
    colour = CelebADataModule(colour=ColourChanges(brightness=0.5)).hparams_initial["colour"]
    assert colour == {"brightness": 0.5, "contrast": 0.0, "saturation": 0.0}
    assert type(colour) is dict


def test_recipe_loss_is_plain_bce() -> None:
    torch.manual_seed(0)
    model = recipe_model().eval()  # eval: no dropout, so the logits are repeatable
    images, targets = torch.rand(6, 3, 64, 64), torch.tensor([[1.0], [0], [1], [0], [1], [1]])
    loss = model.training_step((images, targets), 0)["loss"]
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(model(images), targets))


# --- batch norm ------------------------------------------------------------------------------


def test_batch_norm_after_each_convolution() -> None:
    net = RecipeCNN(batch_norm=True)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [n.num_features for n in norms] == [32, 64, 128, 256]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs)  # the norms' shifts replace the biases
    # 2 x (32 + 64 + 128 + 256) = 960 norm parameters in, 480 conv biases out.
    assert count_parameters(net) == 388_673 - 480 + 960 == 389_153
    layers = list(net.features)
    for conv in convs:  # each norm directly follows its convolution, before the ReLU
        i = layers.index(conv)
        assert isinstance(layers[i + 1], nn.BatchNorm2d) and isinstance(layers[i + 2], nn.ReLU)
    assert RecipeCNN(batch_norm=True).eval()(torch.rand(2, 3, 64, 64)).shape == (2, 1)


# --- label smoothing -------------------------------------------------------------------------


def test_label_smoothing_loss_by_hand() -> None:
    torch.manual_seed(1)
    model = recipe_model(label_smoothing=0.2).eval()
    images, targets = torch.rand(4, 3, 64, 64), torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    loss = model.training_step((images, targets), 0)["loss"]
    z = model(images).detach().flatten().tolist()
    expected = 0.0
    for logit, y in zip(z, [1, 0, 1, 0], strict=True):
        smoothed = 0.9 if y else 0.1  # 1 - 0.2/2 and 0.2/2
        p = 1 / (1 + math.exp(-logit))
        expected -= smoothed * math.log(p) + (1 - smoothed) * math.log(1 - p)
    assert loss.item() == pytest.approx(expected / 4, rel=1e-5)
    # Validation keeps the plain BCE, so its loss compares between runs with and without.
    with torch.no_grad():
        val = model.validation_step((images, targets), 0)["loss"]
        plain = F.binary_cross_entropy_with_logits(model(images), targets)
    assert val.item() == pytest.approx(plain.item())


# --- flip test-time augmentation ---------------------------------------------------------------


def test_flip_tta_is_the_mean_of_the_two_passes() -> None:
    torch.manual_seed(2)
    model = recipe_model(tta_flip=True).eval()
    images = torch.rand(5, 3, 64, 64)
    with torch.no_grad():
        plain = torch.sigmoid(model(images))
        mirrored = torch.sigmoid(model(images.flip(-1)))
        tta = model.predict_step((images,), 0)["probabilities"]
    torch.testing.assert_close(tta, (plain + mirrored) / 2)
    assert not torch.allclose(plain, mirrored)  # the two passes differ, so the mean is news
    model.tta_flip = False
    with torch.no_grad():
        torch.testing.assert_close(model.predict_step((images,), 0)["probabilities"], plain)


def test_flip_averaged_logit_stays_finite_at_saturation() -> None:
    a, b = torch.tensor([40.0, -40.0, 3.0]), torch.tensor([45.0, -50.0, -1.0])
    out = flip_averaged_logit(a, b)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(
        torch.sigmoid(out)[2], (torch.sigmoid(a[2]) + torch.sigmoid(b[2])) / 2
    )


# --- warm-up then cosine, per step -------------------------------------------------------------


def test_warmup_cosine_learning_rate_at_chosen_steps() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = WarmupCosineLR(optimizer, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(13):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    # Steps 0-3: 1/4 .. 4/4 of the rate; then half a cosine over 8 steps down to 0 at step 12.
    assert lrs[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    assert lrs[8] == pytest.approx(0.05)  # half way down the cosine
    assert lrs[6] == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert lrs[12] == pytest.approx(0.0, abs=1e-12)


def _warmup_cosine(step: int, warmup: int, total: int, final: float) -> float:
    """The schedule in closed form: ``(step + 1) / warmup`` during the warm-up, then half a cosine
    from 1 down to ``final`` at ``total`` (over at least one step), and ``final`` after it."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _rates(optimizer: torch.optim.Optimizer, schedule: WarmupCosineLR, steps: int) -> list[float]:
    """The learning rate of each of the next ``steps`` optimizer steps."""
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


@pytest.mark.parametrize(
    "warmup, total, final",
    [(0, 10, 0.0), (1, 10, 0.0), (4, 12, 0.1), (4, 3, 0.2), (4, 5, 0.5), (250, 2000, 0.05)],
    ids=["no-warmup", "one-step-warmup", "floor", "run-shorter-than-warmup", "one-step-cosine",
         "tuned-like"],
)  # fmt: skip
def test_warmup_cosine_is_the_closed_form_at_every_step(warmup: int, total: int, final: float):
    # torch's LinearLR, CosineAnnealingLR and ConstantLR in a SequentialLR step multiplicatively;
    # every step's rate is still the closed form's, past the last step too.
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.004)
    schedule = WarmupCosineLR(optimizer, warmup_steps=warmup, total_steps=total, final_ratio=final)
    expected = [0.004 * _warmup_cosine(step, warmup, total, final) for step in range(total + 20)]
    assert _rates(optimizer, schedule, total + 20) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("stop", [2, 6, 11], ids=["mid-warmup", "mid-cosine", "last-step"])
def test_warmup_cosine_resumes_exactly_from_its_state(stop: int) -> None:
    def fresh() -> tuple[torch.optim.Optimizer, WarmupCosineLR]:
        optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.1)
        return optimizer, WarmupCosineLR(optimizer, warmup_steps=4, final_ratio=0.1)

    optimizer, schedule = fresh()
    schedule.set_total_steps(12)
    whole = _rates(optimizer, schedule, 16)
    optimizer, schedule = fresh()
    schedule.set_total_steps(12)
    _rates(optimizer, schedule, stop)
    saved_optimizer, saved_schedule = optimizer.state_dict(), schedule.state_dict()
    # As Lightning resumes: the optimizers and schedulers built again (this run would be 20 steps
    # long), then the optimizer's state loaded, then the scheduler's, whose total wins.
    optimizer, schedule = fresh()
    schedule.set_total_steps(20)
    optimizer.load_state_dict(saved_optimizer)
    schedule.load_state_dict(saved_schedule)
    assert schedule.total_steps == 12 and schedule.last_epoch == stop
    assert _rates(optimizer, schedule, 16 - stop) == whole[stop:]
    # A schedule that never learnt the run's length takes it from the state.
    optimizer, schedule = fresh()
    optimizer.load_state_dict(saved_optimizer)
    schedule.load_state_dict(saved_schedule)
    assert _rates(optimizer, schedule, 16 - stop) == whole[stop:]


def test_per_step_schedule_gets_the_runs_step_count() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupCosineLR(optimizer, warmup_steps=2)
    trainer = SimpleNamespace(estimated_stepping_batches=30)
    config = optimizer_config(trainer, optimizer, schedule)
    assert config["lr_scheduler"]["interval"] == "step"
    assert schedule.total_steps == 30
    # Other schedulers as Lightning steps them by default (per epoch).
    other = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    assert optimizer_config(trainer, optimizer, other) == {
        "optimizer": optimizer, "lr_scheduler": {"scheduler": other}
    }
    # torch's own per-batch schedules are stepped every batch too.
    cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=30)
    assert optimizer_config(trainer, optimizer, cycle)["lr_scheduler"]["interval"] == "step"


# --- colour augmentation -------------------------------------------------------------------------


def _cached_batch(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    width = 128  # the cached columns at 64 px
    return torch.randint(0, 256, (4, 218, width, 3), dtype=torch.uint8, generator=generator)


def test_colour_off_leaves_the_training_transform_bit_identical() -> None:
    images = _cached_batch()
    transform = BatchTransform(64)
    torch.manual_seed(5)
    out = transform.train(images)
    after = torch.get_rng_state()
    # The recipe's transform as it was written before colour existed: crop, resize, flip.
    torch.manual_seed(5)
    tops = torch.randint(0, 218 - 178 + 1, (4, 1))
    flips = torch.rand(4) < 0.5
    resized = transform._crop_resize(images, tops)
    reference = torch.where(flips[:, None, None, None], resized.flip(-1), resized)
    assert torch.equal(out, reference)
    assert torch.equal(after, torch.get_rng_state())  # no extra random draws either
    assert torch.equal(_seeded(BatchTransform(64, ColourChanges(0.0, 0.0, 0.0)), 5), out)
    assert not torch.equal(_seeded(BatchTransform(64, ColourChanges(brightness=0.3)), 5), out)


def _seeded(transform: BatchTransform, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return transform.train(_cached_batch())


@pytest.mark.parametrize(
    "strengths, adjust",
    [
        ((0.4, 0.0, 0.0), v2.functional.adjust_brightness),
        ((0.0, 0.4, 0.0), v2.functional.adjust_contrast),
        ((0.0, 0.0, 0.4), v2.functional.adjust_saturation),
    ],
    ids=["brightness", "contrast", "saturation"],
)
def test_batch_colour_is_torchvisions_adjustment_per_image(strengths, adjust) -> None:
    images = torch.rand(6, 3, 16, 16)
    torch.manual_seed(3)
    out = batch_color_jitter(images, *strengths)
    torch.manual_seed(3)
    factors = 0.6 + torch.rand(6) * 0.8  # uniform in [1 - 0.4, 1 + 0.4], one per image
    for image, factor, result in zip(images, factors, out, strict=True):
        torch.testing.assert_close(result, adjust(image, float(factor)), atol=1e-5, rtol=0)
    assert len({round(float(f), 4) for f in factors}) == 6  # each image its own factor


# --- weight averaging ----------------------------------------------------------------------------


def test_ema_warmup_decay() -> None:
    avg_fn = warmup_ema_avg_fn(0.99)
    zero, one = torch.zeros(1), torch.ones(1)
    # After n averaged steps the old average keeps min(0.99, (1 + n) / (10 + n)).
    assert avg_fn(zero, one, 1).item() == pytest.approx(1 - 2 / 11)
    assert avg_fn(zero, one, 90).item() == pytest.approx(1 - 91 / 100)
    assert avg_fn(zero, one, 10_000).item() == pytest.approx(0.01)


def test_host_counted_average_is_torchs_average_without_reading_the_count() -> None:
    """The same averages as torch's AveragedModel, update by update, also after its state is
    loaded into a new one (a resume), and no read of the count on the device in an update."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 1))
    kwargs = {"use_buffers": True, "avg_fn": warmup_ema_avg_fn(0.9)}
    theirs, ours = AveragedModel(model, **kwargs), HostCountedAverage(model, **kwargs)

    def train_a_little() -> None:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        model.train()(torch.randn(5, 3, 6, 6))  # new batch-norm statistics too

    def assert_same(a: nn.Module, b: nn.Module) -> None:
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(x, y), name

    reads = []
    original_bool = torch.Tensor.__bool__
    for _ in range(4):
        train_a_little()
        theirs.update_parameters(model)
        torch.Tensor.__bool__ = lambda t: reads.append(t) or original_bool(t)
        try:
            ours.update_parameters(model)
        finally:
            torch.Tensor.__bool__ = original_bool
        assert_same(theirs, ours)
    assert reads == [] and int(ours.n_averaged) == 4
    resumed = HostCountedAverage(model, **kwargs)
    resumed.load_state_dict(ours.state_dict())  # as WeightAveraging.on_load_checkpoint does
    for _ in range(3):
        train_a_little()
        theirs.update_parameters(model)
        resumed.update_parameters(model)
        assert_same(theirs, resumed)


def _scalars(run_dir: Path, tag: str) -> list[float]:
    events = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_ema_and_schedule_in_checkpoint_validation_resume_and_export(
    tiny_root: Path, tmp_path: Path
) -> None:
    """A real fit: validation, the checkpoint's state_dict and the export are the averaged
    weights; the raw ones are kept and both, with the per-step schedule, resume."""
    logs = tmp_path / "logs"
    flags = [
        *tiny_overrides(tiny_root, logs), "--trainer.limit_train_batches=3",
        "--model.ema_decay=0.5", "--model.net.batch_norm=true",
        "--model.scheduler=lit_celeba.models.schedules.WarmupCosineLR",
        "--model.scheduler.warmup_steps=2",
        # No temperature: validate then computes the very loss the fit's validation did.
        "--model.temperature_scaling=false",
    ]  # fmt: skip
    # fit and its resume in this process; validate in a new one (below).
    fit = cli_in_process("fit", "--config", BASE, *flags, "--trainer.max_epochs=1", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    fit_dir = logs / "base" / "version_0"
    last = fit_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert not torch.equal(averaged["net.classifier.weight"], raw["net.classifier.weight"])
    assert checkpoint["averaging_state"]["n_averaged"].item() == 3  # one per optimizer step
    schedule = checkpoint["lr_schedulers"][0]
    assert (schedule["last_epoch"], schedule["total_steps"]) == (3, 3)  # stepped per batch

    # Validation used the averaged weights: validating the checkpoint's state_dict in a new
    # process gives the fit's own validation loss.
    validate = run_cli("validate", "--config", BASE, *flags, f"--ckpt_path={last}", cwd=tmp_path)
    assert validate.returncode == 0, validate.stderr
    fit_loss = _scalars(fit_dir, "val/loss")[-1]
    assert _scalars(logs / "base" / "version_1", "val/loss")[-1] == pytest.approx(fit_loss, 1e-5)

    # The export is the averaged network.
    export(last, tmp_path / "exported")
    scripted = torch.jit.load(str(tmp_path / "exported" / "model.pt"))
    net = RecipeCNN(batch_norm=True).eval()
    net.load_state_dict({k[4:]: v for k, v in averaged.items() if k.startswith("net.")})
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        probabilities, _ = scripted(images)
        calibration = calibration_from_state(checkpoint["calibration"], 1)
        expected = torch.sigmoid(net(images) / calibration.temperature)
        torch.testing.assert_close(probabilities, expected)

    # Resume: the average and the schedule go on from where they were (3 more steps).
    resume = cli_in_process(
        "fit", "--config", BASE, *flags, "--trainer.max_epochs=2", f"--ckpt_path={last}",
        cwd=tmp_path,
    )  # fmt: skip
    assert resume.returncode == 0, resume.stderr
    resumed_last = logs / "base" / "version_2" / "checkpoints" / "last.ckpt"
    resumed = torch.load(resumed_last, weights_only=True)
    assert resumed["averaging_state"]["n_averaged"].item() == 6
    assert resumed["lr_schedulers"][0]["last_epoch"] == 6


# --- bad settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--model.ema_decay=1.5", "Invalid setting: model.ema_decay must be in (0, 1) or null"),
        ("--model.label_smoothing=1", "Invalid setting: model.label_smoothing must be in [0, 1)"),
        ("--data.colour.brightness=-0.1",
         "Invalid setting: data.colour.brightness must be from 0 (off) to 1"),
    ],
    ids=["ema-decay", "label-smoothing", "brightness"],
)  # fmt: skip
def test_bad_method_setting(flag: str, expected: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", BASE, f"--data.root={tmp_path}", flag])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"error: {expected}" in err, err
