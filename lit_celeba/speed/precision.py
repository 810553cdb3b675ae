"""The numeric precision a run trains and evaluates in: ``--trainer.precision``.

Every precision Lightning offers works for every command (the batches reach the network in its
dtype: ``CelebADataModule.on_after_batch_transfer``), with two adjustments: ``bf16-mixed``, the
configs' choice, becomes what the hardware runs fastest without losing accuracy
(:func:`supported_precision`), and ``fit`` at ``16-true`` needs an optimizer ``eps`` that float16
can hold (:func:`check_precision`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_info

from lit_celeba.base.errors import UsageError
from lit_celeba.models.optimization import RECIPE_EPS

# "0" or "1" overrides the CPU's answer: the tests take the path of a CPU without native
# bfloat16 on one that has it (CI's has it; most laptops' have not).
NATIVE_BF16_ENV = "LIT_CELEBA_NATIVE_BF16"


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere oneDNN
    emulates it, at less than half the float32 speed (measured: 129 vs 297 img/s).
    ``$LIT_CELEBA_NATIVE_BF16`` (0 or 1), where set, is the answer instead."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def supported_precision(
    precision: str | int | None, accelerator: str | None, say: bool = False
) -> str | int | None:
    """The configs ask for ``bf16-mixed``; where the hardware only emulates bfloat16 this picks
    the fastest precision that keeps accuracy instead: ``16-mixed`` on GPUs before Ampere,
    ``32-true`` on CPUs without AVX-512 BF16 or AMX. With ``say`` (``fit``, where the speed
    matters and the choice is saved with the run) one line tells which; the other commands
    switch silently, so that on most laptops their first line is not this one."""
    if precision != "bf16-mixed":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda", None) and torch.cuda.is_available()
    if on_gpu and not torch.cuda.is_bf16_supported(including_emulation=False):
        chosen, device = "16-mixed", "GPU"
    elif not on_gpu and not native_cpu_bf16():
        chosen, device = "32-true", "CPU"
    else:
        return precision
    if say:
        rank_zero_info(f"This {device} has no native bfloat16: using precision {chosen} instead.")
    return chosen


def check_precision(subcommand: str, precision: Any, optimizer: Any) -> None:
    """Refuse ``fit`` at ``16-true`` with an optimizer ``eps`` below float16's smallest normal
    number. There the weights and the optimizer's state are float16: Adam's denominator
    ``sqrt(v) + eps`` rounds to almost nothing where gradients are small, and the recipe's weights
    were NaN after two steps (with eps 1e-4, or SGD, they train)."""
    if subcommand != "fit" or str(precision) != "16-true":
        return
    init_args = getattr(optimizer, "init_args", None)  # None: the default, the recipe's Adam
    eps = RECIPE_EPS if init_args is None else getattr(init_args, "eps", None)
    if isinstance(eps, (tuple, list)):  # Adafactor's (None, 1e-3): the smallest one given
        eps = min((e for e in eps if e is not None), default=None)
    tiny = torch.finfo(torch.float16).tiny
    if eps is not None and eps < tiny:
        raise UsageError(
            f"--trainer.precision 16-true trains float16 weights, and the optimizer's eps {eps:g} "
            f"is below the smallest normal float16 ({tiny:.2g}): the weights become NaN within "
            "the first steps. Pass --model.optimizer.eps 1e-4 with it, or train with 16-mixed "
            "(float16 compute, float32 weights), bf16-true, bf16-mixed, 32-true or 64-true; every "
            "precision evaluates (validate, test, predict)."
        )
