"""Fitting a :class:`~lit_celeba.models.outputs.Calibration` on a validation set: a temperature
per attribute (temperature scaling, Guo et al. 2017) and a decision threshold per attribute.

The temperature minimises the validation negative log-likelihood of the attribute's logits
divided by it: one convex problem in ``1 / temperature`` per attribute, solved here by Newton's
method on all attributes at once (torch's LBFGS would need autograd inside a validation epoch,
which runs under inference mode). Dividing by a positive temperature keeps every logit's sign,
so decisions at 0.5 and the ranking of the faces (AUROC) do not change; only how confident the
probabilities are. ``calibrate --bias`` fits a bias per attribute beside it (Platt scaling, the
same Newton's method with two unknowns): for photos where the line between the classes sits
elsewhere than on CelebA (``docs/in_the_wild.md``), which a temperature alone cannot move.

The thresholds (``rule``) are :func:`lit_celeba.methods.thresholds.choose_thresholds`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from lit_celeba.base.errors import CheckpointError
from lit_celeba.methods.thresholds import choose_thresholds
from lit_celeba.models.outputs import DEFAULT_THRESHOLD, Calibration

# Where a checkpoint keeps its calibration.
CHECKPOINT_KEY = "calibration"
NEWTON_STEPS = 50
# 1 / temperature stays within these: a network whose logits say nothing (or the opposite of the
# labels) would otherwise be "calibrated" to a constant or a flipped probability.
MIN_INVERSE, MAX_INVERSE = 1e-2, 1e2
# The bias in logit units: 10 moves a probability of 0.5 to 0.99995.
MAX_BIAS = 10.0
LINE_SEARCH_HALVINGS = 12


def fit_scaling(
    logits: torch.Tensor, targets: torch.Tensor, temperature: bool = True, bias: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The temperature and bias (each (K,)) of each attribute that minimise the mean binary
    cross-entropy of ``logits / temperature + bias`` against ``targets`` (both (N, K)); a part
    that is off stays 1 (temperature) or 0 (bias). With both on this is Platt scaling: a
    logistic regression on the logit, two unknowns per attribute, solved by Newton's method."""
    z, y = logits.double(), targets.double()
    count = z.shape[1]
    inverse = torch.ones(count, dtype=torch.float64, device=z.device)
    shift = torch.zeros(count, dtype=torch.float64, device=z.device)
    current = _mean_nll(z, y, inverse, shift)
    for _ in range(NEWTON_STEPS if temperature or bias else 0):
        p = torch.sigmoid(inverse * z + shift)
        w = (p * (1 - p)).clamp(min=1e-12)
        g_a, g_b = ((p - y) * z).mean(0), (p - y).mean(0)
        h_aa, h_ab, h_bb = (w * z * z).mean(0), (w * z).mean(0), w.mean(0)
        if temperature and bias:
            det = (h_aa * h_bb - h_ab * h_ab).clamp(min=1e-12)
            step_a, step_b = (h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det
        elif temperature:
            step_a, step_b = g_a / h_aa.clamp(min=1e-12), torch.zeros_like(g_b)
        else:
            step_a, step_b = torch.zeros_like(g_a), g_b / h_bb
        # A full Newton step can overshoot where the logits barely tell the classes apart (two
        # unknowns, a nearly flat likelihood): each attribute takes the longest of the halved
        # steps that lowers its likelihood, or none.
        if float(torch.maximum(step_a.abs(), step_b.abs()).max()) < 1e-10:
            break  # converged: no line search left to run
        # Most steps are taken whole: one likelihood each. On 20,000 x 40 logits, one core: 198
        # ms a fit, against 65 ms for Newton without a search and 904 ms for a search that tried
        # every halving at every step.
        best_a, best_b, best = inverse, shift, current
        pending = torch.ones(count, dtype=torch.bool, device=z.device)
        for halvings in range(LINE_SEARCH_HALVINGS):
            scale = 0.5**halvings
            a = (inverse - scale * step_a).clamp(MIN_INVERSE, MAX_INVERSE)
            b = (shift - scale * step_b).clamp(-MAX_BIAS, MAX_BIAS)
            nll = _mean_nll(z, y, a, b)
            take = pending & (nll < current)
            best_a, best_b = torch.where(take, a, best_a), torch.where(take, b, best_b)
            best = torch.where(take, nll, best)
            pending &= ~take
            if not bool(pending.any()):
                break
        gain = float((current - best).max())
        inverse, shift, current = best_a, best_b, best
        if gain < 1e-12:
            break
    return (1.0 / inverse).float(), shift.float()


def _mean_nll(
    z: torch.Tensor, y: torch.Tensor, inverse: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """The mean binary cross-entropy (K,) of the logits ``inverse * z + shift``."""
    return binary_cross_entropy_with_logits(inverse * z + shift, y, reduction="none").mean(0)


def fit_calibration(
    logits: torch.Tensor, targets: torch.Tensor, temperature: bool = True, rule: str = "fixed",
    bias: bool = False, keep: Calibration | None = None,
) -> Calibration:  # fmt: skip
    """A calibration fitted on uncalibrated validation ``logits`` and ``targets`` (N, K): the
    temperatures (or 1 where ``temperature`` is off) and, with ``bias``, a bias per attribute
    (Platt scaling; else 0), then the thresholds on the probabilities those give. An attribute
    with one class only gets ``keep``'s calibration, or the identity's."""
    count = targets.shape[1]
    temperatures, biases = (part.cpu() for part in fit_scaling(logits, targets, temperature, bias))
    # An attribute with one class only: any temperature "fits" it (0.01 or 100, the bounds), and
    # would wreck its probabilities elsewhere. It keeps what it had (calibrate on labelled photos)
    # or temperature 1, bias 0 and threshold 0.5.
    one_class = (targets.amin(0) == targets.amax(0)).cpu()
    kept = keep or Calibration.identity(count)
    temperatures = torch.where(one_class, kept.temperature, temperatures)
    biases = torch.where(one_class, kept.bias, biases)
    probabilities, _ = Calibration(temperatures, kept.threshold, rule, biases).apply(logits.cpu())
    thresholds = torch.where(one_class, kept.threshold, choose_thresholds(probabilities, targets,
                                                                          rule))  # fmt: skip
    return Calibration(temperatures, thresholds, rule, biases)


def evaluated_with(calibration: Calibration, temperature_scaling: bool, rule: str) -> Calibration:
    """``calibration`` as a model with these settings applies it: with the ``fixed`` rule every
    threshold is 0.5 on the calibrated probability; other rules keep the fitted thresholds. Then,
    without ``temperature_scaling``, the temperatures are 1, the biases 0, and each threshold
    moves so that every decision stays (``sigmoid(z / T + b) > t`` is ``sigmoid(z) > sigmoid(T *
    (logit(t) - b))``: a fixed 0.5 becomes ``sigmoid(-T * b)``)."""
    temperature, threshold = calibration.temperature, calibration.threshold
    bias, kept = calibration.bias, calibration.rule
    # The rule first, on the calibrated probabilities: "fixed" is always "calibrated
    # probability above 0.5", whether the temperature is then folded in or not.
    if rule == "fixed" and kept != "fixed":
        threshold, kept = torch.full_like(threshold, DEFAULT_THRESHOLD), "fixed"
    if not temperature_scaling and not bool((temperature == 1).all() and (bias == 0).all()):
        moved = temperature.double() * (torch.logit(threshold.double()) - bias.double())
        threshold = torch.sigmoid(moved).float()
        temperature, bias = torch.ones_like(temperature), torch.zeros_like(bias)
    return Calibration(temperature, threshold, kept, bias)


class ValidateTheLastEpoch(pl.Callback):
    """The last epoch of a fit validates, whatever ``check_val_every_n_epoch`` says: each
    validation fits the calibration, so the final checkpoints carry one fitted to their own
    weights (with 2 and 3 epochs, last.ckpt had epoch 2's temperatures on epoch 3's weights)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = trainer.check_val_every_n_epoch
        last = trainer.max_epochs is not None and trainer.current_epoch + 1 == trainer.max_epochs
        if last and every is not None and every > 1:
            trainer.check_val_every_n_epoch = 1


def calibration_state(
    calibration: Calibration, fitted_at_step: int | None = None
) -> dict[str, Any]:
    """Plain tensors and strings, for a checkpoint that loads with ``weights_only``;
    ``fitted_at_step``, the training step of the weights it was fitted to (None: never)."""
    return {"temperature": calibration.temperature.detach().cpu().float(),
            "threshold": calibration.threshold.detach().cpu().float(), "rule": calibration.rule,
            "bias": calibration.bias.detach().cpu().float(),
            "fitted_at_step": fitted_at_step}  # fmt: skip


def calibration_from_state(state: Mapping[str, Any] | None, num_attributes: int) -> Calibration:
    """A checkpoint's calibration; the identity when it has none, bias 0 when it is from before
    the bias existed."""
    if not state:
        return Calibration.identity(num_attributes)
    temperature = torch.as_tensor(state["temperature"], dtype=torch.float32).reshape(-1)
    threshold = torch.as_tensor(state["threshold"], dtype=torch.float32).reshape(-1)
    bias = state.get("bias")
    bias = (torch.zeros_like(temperature) if bias is None
            else torch.as_tensor(bias, dtype=torch.float32).reshape(-1))  # fmt: skip
    sizes = {"temperature": len(temperature), "threshold": len(threshold), "bias": len(bias)}
    wrong = {name: size for name, size in sizes.items() if size != num_attributes}
    if wrong:
        said = ", ".join(f"{name} for {size}" for name, size in wrong.items())
        raise CheckpointError(
            f"The checkpoint's calibration has {said} attribute(s) but its network has "
            f"{num_attributes}: the file was changed after it was written."
        )
    return Calibration(temperature, threshold, str(state.get("rule", "fixed")), bias)


def save_calibration(module: Any, checkpoint: dict[str, Any]) -> None:
    """The module's calibration into its checkpoint, with the step it was fitted at."""
    checkpoint[CHECKPOINT_KEY] = calibration_state(module.calibration, module.calibration_step)


def restore_calibration(module: Any, checkpoint: Mapping[str, Any]) -> None:
    """The module's calibration from its checkpoint, applied as the module's settings say (the
    command line's may differ from the fit's); from before calibration existed, temperature 1
    and threshold 0.5."""
    state = checkpoint.get(CHECKPOINT_KEY) or {}
    module.loaded_calibration = calibration_from_state(state, len(module.target_attrs))
    module.calibration_step = state.get("fitted_at_step")
    module.calibration = evaluated_with(module.loaded_calibration, module.temperature_scaling,
                                        module.thresholds)  # fmt: skip
