"""The MobileNetV2 feature extractor (torchvision's layout), built here without importing torchvision.

torchvision's import pulls in ``torchvision.ops`` and with it ``torch._dynamo``: over a second of
start-up that a run on the CPU never uses. The modules below carry the same names, shapes and
forward arithmetic as ``torchvision.models.mobilenet_v2().features``, so ``UNet.pth`` loads into
them with ``strict=True`` (``tests/test_models.py`` compares both, key by key and output by output).
"""

from __future__ import annotations

import torch
from torch import nn

#: (expansion t, output channels c, repeats n, first stride s) of each stage, as in the paper.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn_relu6(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU6, indexed 0, 1, 2 (torchvision's ``Conv2dNormActivation``)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); a residual sum when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_ch * expand_ratio
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = [] if expand_ratio == 1 else [_conv_bn_relu6(in_ch, hidden, kernel_size=1)]
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def mobilenet_v2_features() -> list[nn.Module]:
    """The 19 feature layers of MobileNetV2 (width 1.0): the stem, 17 inverted residuals, the 1x1 head."""
    layers: list[nn.Module] = [_conv_bn_relu6(3, 32, stride=2)]
    in_ch = 32
    for t, c, n, s in _STAGES:
        for i in range(n):
            layers.append(InvertedResidual(in_ch, c, s if i == 0 else 1, t))
            in_ch = c
    layers.append(_conv_bn_relu6(in_ch, 1280, kernel_size=1))
    return layers
