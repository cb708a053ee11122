"""The 7-class face-part UNet: a MobileNetV2 encoder with a light nearest-upsampling decoder.

Module names follow the keys of the published ``UNet.pth`` so it loads with ``strict=True``.
"""

from __future__ import annotations

import torch
from torch import nn

from animeface_seg.engine.models.mobilenet import mobilenet_v2_features
from animeface_seg.engine.palette import NUM_CLASSES


def _decoder_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Upsample x2, 3x3 conv, instance norm, leaky ReLU, dropout (index 1 must stay the conv)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1),
        nn.InstanceNorm2d(out_ch),
        nn.LeakyReLU(0.1),
        nn.Dropout(p=0.2),
    )


class UNet(nn.Module):
    """Face-part segmentation into 7 classes; input RGB in [0, 1], sides multiples of 32.

    ``forward`` returns the raw class scores (logits). The reference applies a softmax
    before its argmax; softmax is monotonic, so the argmax is the same and we skip it.
    """

    def __init__(self) -> None:
        super().__init__()
        features = mobilenet_v2_features()
        # Re-wrapped so each block numbers its layers from 0, as the checkpoint does.
        self.en_block0 = nn.Sequential(*features[0:2])
        self.en_block1 = nn.Sequential(*features[2:4])
        self.en_block2 = nn.Sequential(*features[4:7])
        self.en_block3 = nn.Sequential(*features[7:14])
        self.en_block4 = nn.Sequential(*features[14:17])
        self.de_block4 = _decoder_block(160, 96)
        self.de_block3 = _decoder_block(96 * 2, 32)
        self.de_block2 = _decoder_block(32 * 2, 24)
        self.de_block1 = _decoder_block(24 * 2, 16)
        self.de_block0 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(16 * 2, NUM_CLASSES, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.en_block0(x)
        e1 = self.en_block1(e0)
        e2 = self.en_block2(e1)
        e3 = self.en_block3(e2)
        e4 = self.en_block4(e3)
        d4 = self.de_block4(e4)
        d3 = self.de_block3(torch.cat((d4, e3), 1))
        d2 = self.de_block2(torch.cat((d3, e2), 1))
        d1 = self.de_block1(torch.cat((d2, e1), 1))
        return self.de_block0(torch.cat((d1, e0), 1))
