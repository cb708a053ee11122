"""Both networks and the arithmetic between them as one module: what every runtime runs.

uint8 pixels -> ISNet mask -> the picture composited over white and truncated to whole levels
(as the reference does before its UNet) -> UNet -> per-pixel argmax. The torch runtimes call it
directly; the ONNX export traces it, so every runtime computes the same graph.
"""

from __future__ import annotations

import torch
from torch import nn


class StackedNetworks(nn.Module):
    """``forward`` takes a padded (N, 3, H, W) uint8 batch and returns ``(classes,)`` without the mask
    network, else ``(classes, mask)``: (N, H, W) uint8 class indices and the (N, H, W) float mask in [0, 1].

    The reference's argmax follows a softmax; softmax is monotonic, so it is left out. The
    composite is never negative, so truncating it is flooring it (``floor`` exports to ONNX, ``trunc`` does not).
    """

    def __init__(self, unet: nn.Module, isnet: nn.Module | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.isnet = isnet

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rgb = pixels.float()
        if self.isnet is None:
            return (self.unet(rgb / 255.0).argmax(1).to(torch.uint8),)
        mask = self.isnet(rgb / 255.0).float()
        rgb = torch.floor(mask * rgb + 255.0 * (1.0 - mask))
        return self.unet(rgb / 255.0).argmax(1).to(torch.uint8), mask[:, 0]
