"""ISNet (DIS) character-mask network, as trained by skytnt/anime-seg.

Module names follow the ``net.`` keys of ``isnetis.ckpt`` so it loads with ``strict=True``.
Only ``side1`` is computed at inference; ``side2``-``side6`` exist so the file loads strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _upsample_like(src: torch.Tensor, tar: torch.Tensor) -> torch.Tensor:
    return F.interpolate(src, size=tar.shape[2:], mode="bilinear", align_corners=False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2, stride=2, ceil_mode=True)


class REBNCONV(nn.Module):
    """3x3 conv (dilated) -> BatchNorm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dirate: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of height ``height`` (RSU7 ... RSU4): pooled encoder, upsampled decoder."""

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.height = height
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch)
        for k in range(2, height):
            setattr(self, f"rebnconv{k}", REBNCONV(mid_ch, mid_ch))
        setattr(self, f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, dirate=2))
        for k in range(height - 1, 1, -1):
            setattr(self, f"rebnconv{k}d", REBNCONV(mid_ch * 2, mid_ch))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xin = self.rebnconvin(x)
        skips = [self.rebnconv1(xin)]
        for k in range(2, self.height):
            skips.append(getattr(self, f"rebnconv{k}")(_pool(skips[-1])))
        hx = getattr(self, f"rebnconv{self.height}")(skips[-1])
        hx = getattr(self, f"rebnconv{self.height - 1}d")(torch.cat((hx, skips[-1]), 1))
        for k in range(self.height - 2, 0, -1):
            skip = skips[k - 1]
            hx = getattr(self, f"rebnconv{k}d")(torch.cat((_upsample_like(hx, skip), skip), 1))
        return hx + xin


class RSU4F(nn.Module):
    """Residual U-block without pooling: dilations 1, 2, 4, 8 keep the resolution."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, dirate=1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, dirate=2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, dirate=4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, dirate=8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, dirate=4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, dirate=2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, dirate=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xin = self.rebnconvin(x)
        h1 = self.rebnconv1(xin)
        h2 = self.rebnconv2(h1)
        h3 = self.rebnconv3(h2)
        h4 = self.rebnconv4(h3)
        h3d = self.rebnconv3d(torch.cat((h4, h3), 1))
        h2d = self.rebnconv2d(torch.cat((h3d, h2), 1))
        return self.rebnconv1d(torch.cat((h2d, h1), 1)) + xin


class ISNet(nn.Module):
    """ISNetDIS(in_ch=3, out_ch=1); ``forward`` returns the mask in [0, 1] at the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 64, 3, stride=2, padding=1)
        self.stage1 = RSU(7, 64, 32, 64)
        self.stage2 = RSU(6, 64, 32, 128)
        self.stage3 = RSU(5, 128, 64, 256)
        self.stage4 = RSU(4, 256, 128, 512)
        self.stage5 = RSU4F(512, 256, 512)
        self.stage6 = RSU4F(512, 256, 512)
        self.stage5d = RSU4F(1024, 256, 512)
        self.stage4d = RSU(4, 1024, 128, 256)
        self.stage3d = RSU(5, 512, 64, 128)
        self.stage2d = RSU(6, 256, 32, 64)
        self.stage1d = RSU(7, 128, 16, 64)
        self.side1 = nn.Conv2d(64, 1, 3, padding=1)
        # Training-only deep-supervision heads: present for strict loading, never run.
        self.side2 = nn.Conv2d(64, 1, 3, padding=1)
        self.side3 = nn.Conv2d(128, 1, 3, padding=1)
        self.side4 = nn.Conv2d(256, 1, 3, padding=1)
        self.side5 = nn.Conv2d(512, 1, 3, padding=1)
        self.side6 = nn.Conv2d(512, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The original pools conv_in's output but feeds stage1 the unpooled tensor; the
        # weights were trained that way, so stage1 takes conv_in's output directly.
        hx1 = self.stage1(self.conv_in(x))
        hx2 = self.stage2(_pool(hx1))
        hx3 = self.stage3(_pool(hx2))
        hx4 = self.stage4(_pool(hx3))
        hx5 = self.stage5(_pool(hx4))
        hx6 = self.stage6(_pool(hx5))
        hx = self.stage5d(torch.cat((_upsample_like(hx6, hx5), hx5), 1))
        hx = self.stage4d(torch.cat((_upsample_like(hx, hx4), hx4), 1))
        hx = self.stage3d(torch.cat((_upsample_like(hx, hx3), hx3), 1))
        hx = self.stage2d(torch.cat((_upsample_like(hx, hx2), hx2), 1))
        hx = self.stage1d(torch.cat((_upsample_like(hx, hx1), hx1), 1))
        return torch.sigmoid(_upsample_like(self.side1(hx), x))
