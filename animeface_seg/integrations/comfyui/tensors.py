"""ComfyUI's tensors in and out: IMAGE to the engine's uint8 input, device results to IMAGE and MASK,
a colour map IMAGE to the MASK of one class."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from animeface_seg.engine.palette import class_index, palette_tensor
from animeface_seg.engine.segmentor import DeviceSegmentation


def image_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """A ComfyUI IMAGE ``(B, H, W, C)`` in [0, 1] as ``(B, 3, H, W)`` uint8, converted as the original node
    does: ``uint8(255 * x)`` truncated, gray repeated to RGB, alpha composited over white."""
    if images.dim() != 4 or images.shape[-1] not in (1, 3, 4) or images.shape[0] == 0:
        raise ValueError(f"expected an IMAGE batch (B, H, W, 1/3/4 channels) with B >= 1, got {tuple(images.shape)}")
    pixels = (images.float() * 255.0).clamp_(0, 255).to(torch.uint8)
    if pixels.shape[-1] == 1:
        pixels = pixels.expand(-1, -1, -1, 3)
    elif pixels.shape[-1] == 4:
        alpha = pixels[..., 3:].float() / 255.0
        pixels = (pixels[..., :3].float() * alpha + 255.0 * (1.0 - alpha)).clamp_(0, 255).to(torch.uint8)
    return pixels.permute(0, 3, 1, 2).contiguous()


def to_outputs(results: Sequence[DeviceSegmentation], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE ``(B, H, W, 3)`` colour maps and MASK ``(B, H, W)`` in [0, 1] on ``device``; the mask is all
    ones when the background was kept. Stacked on the compute device, copied once as uint8."""
    colors = torch.stack([r.colors for r in results]).to(device).float().div_(255.0)
    if results[0].mask is None:
        return colors, torch.ones(colors.shape[:3], dtype=torch.float32, device=device)
    masks = torch.stack([r.mask for r in results]).to(device).float().div_(255.0)
    return colors, masks


def class_mask(color_map: torch.Tensor, name: str) -> torch.Tensor:
    """MASK ``(B, H, W)`` float32, 1 where the colour map IMAGE ``(B, H, W, 3)`` shows class ``name``'s colour.

    The map's values are ``k / 255`` (as the segmentor node returns them, or as LoadImage reads a
    saved map), so ``round(255 * x)`` gives its colours back exactly. Every pixel must hold one of
    the palette's colours: anything else is not a map of ours and raises ``ValueError`` saying so.
    """
    index = class_index(name)
    if color_map.dim() != 4 or color_map.shape[-1] != 3:
        raise ValueError(f"expected a colour map IMAGE (B, H, W, 3), got {tuple(color_map.shape)}")
    rgb = (color_map.float() * 255.0).round_().clamp_(0, 255).to(torch.int32)
    weights = torch.tensor([1 << 16, 1 << 8, 1], dtype=torch.int32, device=rgb.device)
    codes = (rgb * weights).sum(dim=-1)  # one int per colour: (B, H, W)
    palette = (palette_tensor(rgb.device).to(torch.int32) * weights).sum(dim=-1)
    strangers = int((~torch.isin(codes, palette)).sum())
    if strangers:
        raise ValueError(f"{strangers} of {codes.numel()} pixels of this IMAGE are no class colour: "
                         "connect the IMAGE output of Anime Face Segmentor (animeface-seg), resized at most "
                         "with nearest-neighbour")
    return (codes == palette[index]).float()
