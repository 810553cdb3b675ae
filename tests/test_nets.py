"""FastDropout: nn.Dropout's distribution and interface, with a faster CPU mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_celeba.models.nets import RecipeCNN
from lit_celeba.speed.dropout import FastDropout


@pytest.mark.parametrize("p", [0.5, 0.2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keeps_each_value_with_probability_1_minus_p_scaled(p: float, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x = (torch.rand(64, 32, 16, 16) + 0.5).to(dtype)
    out = FastDropout(p).train()(x)
    kept = out != 0
    assert out.dtype == dtype
    # 524,288 draws: the kept share's standard error is under 0.0007.
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.004)
    torch.testing.assert_close(out[kept], (x * (1 / (1 - p))).to(dtype)[kept])
    # Each sample and channel is masked on its own, not one mask broadcast over the batch.
    assert not torch.equal(kept[0], kept[1]) and not torch.equal(kept[:, 0], kept[:, 1])


def test_gradient_is_the_same_mask_and_scale() -> None:
    x = torch.rand(8, 4, 8, 8, requires_grad=True)
    out = FastDropout(0.5).train()(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (out.detach() != 0).float() * 2.0)


def test_eval_is_identity_and_seed_reproducible() -> None:
    x = torch.rand(4, 8, 8, 8).contiguous(memory_format=torch.channels_last)
    dropout = FastDropout(0.5)
    assert torch.equal(dropout.eval()(x), x)
    dropout.train()
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)
    assert first.is_contiguous(memory_format=torch.channels_last)


def test_the_recipe_net_uses_it_as_an_nn_dropout() -> None:
    net = RecipeCNN()
    dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert [type(m) for m in dropouts] == [FastDropout, FastDropout]
    assert not any("features.3" in k or "features.7" in k for k in net.state_dict())
    torch.jit.script(net.eval())  # the TorchScript export scripts the network
