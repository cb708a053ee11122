"""Inference-only rewrites of the networks: each batch norm folded into the convolution before it.

At inference a BatchNorm2d is a fixed per-channel affine map, so ``bn(conv(x))`` equals one
convolution with scaled weights and a shifted bias: one pass over the activations instead of
two. The fold is exact in real arithmetic; the per-channel factors are computed in float64, so
the folded weights differ from the exact ones by about one rounding of their dtype. InstanceNorm (the UNet's decoder) depends on the input and is left alone.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import fx, nn


def _folded_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) module names where the batch norm's only input is that convolution's output,
    found by tracing the forward pass, so only pairs that really follow each other are taken."""
    graph = fx.Tracer().trace(model)
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        if (isinstance(source, fx.Node) and source.op == "call_module"
                and isinstance(modules[source.target], nn.Conv2d) and len(source.users) == 1
                and calls[source.target] == 1 and calls[node.target] == 1):
            pairs.append((source.target, node.target))
    return pairs


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn``'s running statistics and affine parameters into ``conv``: the per-channel scale
    and the bias in float64, then the weights scaled in place (no copy of the large tensors)."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    conv.weight.mul_(scale.to(conv.weight.dtype).view(-1, 1, 1, 1))
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    else:
        conv.bias.copy_(bias)


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """``model`` in eval mode with every BatchNorm2d that directly follows a Conv2d folded into it
    and replaced by ``nn.Identity``.

    Without ``inplace`` the caller's module is left untouched and a folded copy is returned (a
    host such as ComfyUI may share or move its modules). Batch norms that track no running
    statistics cannot be folded and are kept.
    """
    model = (model if inplace else copy.deepcopy(model)).eval()
    for conv_name, bn_name in _folded_pairs(model):
        bn = model.get_submodule(bn_name)
        if bn.running_mean is None or bn.running_var is None:
            continue
        _fold(model.get_submodule(conv_name), bn)
        parent_name, _, attribute = bn_name.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, nn.Identity())
    return model


def count_batchnorms(model: nn.Module) -> int:
    """How many BatchNorm2d modules ``model`` still holds (0 once fully folded)."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
