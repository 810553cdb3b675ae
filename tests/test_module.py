"""The recipe's network and the LightningModule around it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lit_celeba.base.errors import SettingError
from lit_celeba.models.nets import RecipeCNN, count_parameters
from tests.conftest import recipe_model


def test_recipe_parameter_count() -> None:
    # Keras' model.summary() in the post: 896 + 18,496 + 73,856 + 295,168 + 257.
    assert count_parameters(RecipeCNN()) == 388_673
    assert count_parameters(recipe_model()) == 388_673


def test_variations_change_the_network() -> None:
    flatten = RecipeCNN(pooling="flatten", image_size=64)
    assert flatten.classifier.in_features == 256 * 8 * 8
    narrow = RecipeCNN(channels=(8, 16, 32, 64))
    assert count_parameters(narrow) == (3 * 9 * 8 + 8) + (8 * 9 * 16 + 16) + (16 * 9 * 32 + 32) + (
        32 * 9 * 64 + 64
    ) + (64 + 1)
    dropouts = [m.p for m in RecipeCNN(dropout=0.3).modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.3, 0.3]


def test_output_is_one_logit_per_image() -> None:
    for pooling in ("gap", "flatten"):
        out = RecipeCNN(pooling=pooling).eval()(torch.rand(5, 3, 64, 64))
        assert out.shape == (5, 1)


def test_keras_initialisation() -> None:
    torch.manual_seed(0)
    net = RecipeCNN()
    for layer in [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]:
        assert torch.count_nonzero(layer.bias) == 0
        fan_in = layer.weight[0].numel()
        fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound  # uniform over the whole Glorot range
    torch_init = RecipeCNN(init="torch")
    assert torch.count_nonzero(torch_init.classifier.bias) > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pooling": "max"}, "pooling"),
        ({"dropout": 1.0}, "dropout"),
        ({"channels": (8, 16)}, "channels"),
        ({"image_size": 4}, "image_size"),
    ],
)
def test_invalid_network_settings(kwargs, message) -> None:
    # In the network's own terms: its argument name, no CLI key (the CLI adds that).
    with pytest.raises(SettingError) as refused:
        RecipeCNN(**kwargs)
    assert refused.value.setting == message and not str(refused.value).startswith("model.")


def test_accuracy_thresholds_probability_not_logit() -> None:
    # Logits inside [0, 1] are probabilities above 0.5: all of these are "Male" predictions.
    model = recipe_model()
    logits = torch.tensor([[0.2], [0.4], [-0.3], [0.9]])
    targets = torch.tensor([[1.0], [1.0], [0.0], [1.0]])
    model.net = nn.Identity()
    outputs = model.validation_step((logits, targets), 0)
    assert outputs["predictions"].tolist() == [[1], [1], [0], [1]]


@pytest.mark.parametrize("given", [{}, {"optimizer": None}], ids=["default", "null"])
def test_default_optimizer_is_the_recipe_adam(given: dict) -> None:
    """Null too: an earlier run's config.yaml saved "no optimizer given" as null."""
    optimizer = recipe_model(**given).configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-3 and group["betas"] == (0.9, 0.999) and group["eps"] == 1e-7


def test_training_reduces_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = recipe_model(dropout=0.0)
    targets = torch.tensor([0.0, 1.0] * 8).unsqueeze(1)
    images = 0.5 * torch.rand(16, 3, 64, 64) + 0.5 * targets[:, :, None, None]  # bright = 1
    optimizer = model.configure_optimizers()
    losses = []
    for _ in range(30):
        loss = nn.functional.binary_cross_entropy_with_logits(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_predict_step_returns_probabilities() -> None:
    model = recipe_model().eval()
    outputs = model.predict_step((torch.rand(4, 3, 64, 64), torch.zeros(4, 1)), 0)
    probs, predictions = outputs["probabilities"], outputs["predictions"]
    assert probs.shape == (4, 1) and ((probs >= 0) & (probs <= 1)).all()
    assert torch.equal(predictions, (probs > 0.5).long())  # no calibration: the 0.5 rule


def test_hyperparameters_are_plain_types() -> None:
    hparams = dict(recipe_model(channels=[8, 8, 8, 8]).hparams)

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return isinstance(value, (int, float, str, bool, type(None)))

    assert plain(hparams), hparams
    # The network as LightningCLI writes an injected module: its class and every argument.
    assert hparams["net"]["class_path"] == "lit_celeba.models.nets.RecipeCNN"
    assert hparams["net"]["init_args"]["channels"] == [8, 8, 8, 8]


def test_fit_again_after_test_in_the_same_process(tmp_path) -> None:
    """A notebook's fit, test, fit: test leaves the metrics' reset states as inference tensors
    (it runs under torch.inference_mode), which the next fit's validation (under no_grad only)
    must not update in place."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    data = TensorDataset(torch.rand(8, 3, 32, 32), torch.randint(0, 2, (8, 1)).float())
    loader = DataLoader(data, batch_size=4)
    model = recipe_model(channels=(4, 8, 8, 8))

    def trainer() -> pl.Trainer:
        return pl.Trainer(max_epochs=1, accelerator="cpu", logger=False,
                          enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip

    trainer().fit(model, loader, loader)
    trainer().validate(model, loader, verbose=False)
    trainer().test(model, loader, verbose=False)
    again = trainer()
    again.fit(model, loader, loader)
    assert {"train/loss", "val/loss", "val/acc"} <= again.callback_metrics.keys()
