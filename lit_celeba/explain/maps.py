"""Class-activation maps: which places of a face made the network decide as it did.

The method is HiResCAM (Draelos and Carin, "Use HiResCAM instead of Grad-CAM for faithful
explanations of convolutional neural networks", 2020): at the last convolutional block, the
element-wise product of the activations and the gradient of the explained score, summed over the
channels, positive part. Captum (PyTorch's interpretability library) computes the product
(``captum.attr.LayerGradientXActivation``). On a network that ends in global average pooling and
one linear layer, as the recipe's, the batch-norm and the ResNet networks all do, this is exactly
Grad-CAM and the original CAM (Zhou et al. 2016), up to a constant factor: the gradient is then the
same at every place. With ``pooling: flatten`` it differs, and HiResCAM is the one of the two that
shows the places the score was added up from, where Grad-CAM averages the gradient over the map
first (Draelos and Carin's proof).

The explained score of a face and attribute is the logit towards the *predicted* class: the
logit where the network said yes, minus it where it said no. A map thus shows the evidence for
what it said, right or wrong. Maps are taken on the network itself, one view (no flip TTA), with
the weights it is evaluated with (EMA's included: they are in the network then). A compiled
network (``model.compile``) is run here module by module, uncompiled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_celeba.base.errors import SettingError
from lit_celeba.explain.candidates import Chosen


def split(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The network as its *trunk*, up to the last convolutional block, whose output the maps
    are read at (the recipe CNN's last ReLU, after the last convolution and its batch norm; a
    ResNet's ``layer4``), and its *head*, from there to the logits (pooling and the linear
    layer): ``head(trunk(x)) == net(x)``."""
    from torchvision.models import ResNet

    from lit_celeba.models.nets import RecipeCNN

    if isinstance(net, RecipeCNN):
        return net.features, nn.Sequential(net.pool, net.classifier)
    if isinstance(net, ResNet):
        trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                              net.layer3, net.layer4)  # fmt: skip
        return trunk, nn.Sequential(net.avgpool, nn.Flatten(1), net.fc)
    raise SettingError(
        "net", f"activation maps know RecipeCNN and torchvision's ResNet, not {type(net).__name__}"
    )


def has_maps(net: nn.Module) -> bool:
    """Whether :func:`split` knows ``net``'s kind."""
    try:
        split(net)
    except SettingError:
        return False
    return True


def activation_maps(
    net: nn.Module, images: torch.Tensor, attributes: torch.Tensor, signs: torch.Tensor
) -> torch.Tensor:
    """HiResCAM maps (N, h, w) of ``images`` (N, 3, S, S), each for its own attribute (output
    index, (N,) long) and class (``signs``: +1 explains "yes", -1 "no"), each scaled to a
    maximum of 1 (all 0 where nothing speaks for the class). Gradients are on also inside
    evaluation's inference mode; the network's mode (eval) is left as it is.

    The trunk runs once per distinct image, without gradients (a face chosen for several
    attributes is one forward pass); Captum then takes the gradient of each score through the
    head only, with respect to the trunk's output, and multiplies (the head's input is its
    layer: an ``nn.Identity`` in front of it)."""
    from captum.attr import LayerGradientXActivation  # imported when first drawn (about 1 s)

    trunk, head = split(net)
    distinct, inverse = torch.unique(images.flatten(1), dim=0, return_inverse=True)
    dtype = next(net.parameters()).dtype  # float32, or the weights' own under "*-true"
    with torch.no_grad():
        features = trunk(distinct.reshape(-1, *images.shape[1:]).to(dtype))
    layer = nn.Identity()
    # Captum takes torch.autograd.grad with respect to the layer: no parameter's .grad changes.
    with torch.inference_mode(False), torch.enable_grad():
        # Normal tensors, not inference ones (evaluation made them), which autograd refuses.
        inputs, attributes = features[inverse].clone(), attributes.clone()
        signs, rows = signs.clone().float(), torch.arange(len(images), device=images.device)

        def score(x: torch.Tensor) -> torch.Tensor:
            return head(layer(x))[rows, attributes] * signs

        products = LayerGradientXActivation(score, layer).attribute(inputs)
    maps = products.detach().float().sum(1).clamp_(min=0)
    peak = maps.flatten(1).amax(1).clamp_(min=1e-12)[:, None, None]
    return maps / peak


def jet(values: torch.Tensor) -> torch.Tensor:
    """The 'jet' colour map (blue, cyan, yellow, red) of values in [0, 1]: (..., 3) in [0, 1]."""
    x = values[..., None] * 4
    centres = torch.tensor([3.0, 2.0, 1.0], device=values.device)  # red, green, blue
    return (1.5 - (x - centres).abs()).clamp(0, 1)


def overlay(images: torch.Tensor, maps: torch.Tensor, alpha: float = 0.45) -> torch.Tensor:
    """``images`` (N, 3, S, S) in [0, 1] with their ``maps`` (N, h, w) in [0, 1] laid over in
    colour (bilinear upsampling to the image size): (N, 3, S, S) in [0, 1]."""
    size = images.shape[-2:]
    upsampled = F.interpolate(maps[:, None].float(), size=size, mode="bilinear",
                              align_corners=False)[:, 0].clamp(0, 1)  # fmt: skip
    colours = jet(upsampled).permute(0, 3, 1, 2)
    return (1 - alpha) * images.float() + alpha * colours


def overlaid(net: nn.Module, chosen: list[dict[str, Chosen]]) -> list[dict[str, Chosen]]:
    """Each attribute's chosen faces (:class:`~lit_celeba.explain.candidates.Chosen`, by kind,
    in output order) with their images replaced by the images with their maps laid over: each
    face explained for its own attribute and predicted class, all in one pass."""
    parts = [(k, kind, c) for k, kinds in enumerate(chosen) for kind, c in kinds.items()]
    parts = [(k, kind, c) for k, kind, c in parts if len(c.images)]
    if not parts:
        return [{} for _ in chosen]
    images = torch.cat([c.images for _, _, c in parts]).float()
    attributes = torch.cat([torch.full((len(c.images),), k) for k, _, c in parts])
    signs = torch.cat([c.predictions.float() * 2 - 1 for _, _, c in parts])
    device = next(net.parameters()).device
    maps = activation_maps(net, images.to(device), attributes.to(device), signs.to(device))
    pictures = overlay(images.to(device), maps).cpu().split([len(c.images) for _, _, c in parts])
    result: list[dict[str, Chosen]] = [{} for _ in chosen]
    for (k, kind, c), picture in zip(parts, pictures, strict=True):
        result[k][kind] = Chosen(picture, c.probabilities, c.predictions, c.targets)
    return result
