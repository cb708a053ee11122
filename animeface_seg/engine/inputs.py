"""Everything the engine accepts as an image, turned into 8-bit RGB by one set of rules.

Files, PIL images and numpy arrays follow the file decoder's rules (EXIF orientation, alpha
over white, gray to RGB). Torch tensors follow the conventions of their ecosystems: float
tensors are channels-last in [0, 1] (ComfyUI's IMAGE, ``(B, H, W, 3)`` or ``(H, W, 3)``),
uint8 tensors are channels-first (torchvision's ``(3, H, W)`` or ``(B, 3, H, W)``).
Tensors stay on their device.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from animeface_seg.engine.decode import DEFAULT_MAX_PIXELS, load_rgb, to_rgb_array
from animeface_seg.engine.errors import ImageInputError

if TYPE_CHECKING:
    import torch

ImageInput = Union[Image.Image, np.ndarray, "torch.Tensor", str, Path]
#: One image ready for ``Segmentor.prepare``: H x W x 3 uint8 array, or (3, H, W) uint8 tensor.
RGBImage = Union[np.ndarray, "torch.Tensor"]


def is_tensor(image: object) -> bool:
    """Whether ``image`` is a torch tensor; asked without importing torch (nothing is a tensor before it is)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(image, torch.Tensor)


def float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats to uint8 by rounding, the exact inverse of the usual ``uint8 / 255``."""
    import torch

    return (images.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def _split_tensor(tensor: torch.Tensor) -> list[torch.Tensor]:
    """A tensor (one image or a batch) as a list of (3, H, W) uint8 tensors on its device."""
    import torch

    if tensor.is_floating_point():
        if tensor.dim() == 3:
            tensor = tensor[None]
        if tensor.dim() != 4 or tensor.shape[-1] != 3:
            raise ImageInputError(f"float image tensors must be (B, H, W, 3) or (H, W, 3) in [0, 1], "
                                  f"not {tuple(tensor.shape)}")
        return list(float_to_uint8(tensor).permute(0, 3, 1, 2))
    if tensor.dtype == torch.uint8:
        if tensor.dim() == 3:
            tensor = tensor[None]
        if tensor.dim() != 4 or tensor.shape[1] != 3:
            raise ImageInputError(f"uint8 image tensors must be (3, H, W) or (B, 3, H, W), not {tuple(tensor.shape)}")
        return list(tensor)
    raise ImageInputError(f"image tensors must be float in [0, 1] or uint8, not {tensor.dtype}")


def as_rgb(image: Image.Image | np.ndarray | str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A file, PIL image or array as H x W x 3 uint8 RGB, by the same rules as files."""
    if isinstance(image, (str, Path)):
        return load_rgb(image, max_pixels=max_pixels)
    if isinstance(image, Image.Image):
        return to_rgb_array(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageInputError("arrays must be uint8, H x W (gray) or H x W x 3/4 (RGB/RGBA)")
    return to_rgb_array(Image.fromarray(array))


def as_rgb_images(images: ImageInput | Iterable[ImageInput],
                  max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[RGBImage]:
    """Any accepted input, one image or many (a batch tensor counts as many), as RGB images in order."""
    if is_tensor(images) or isinstance(images, (Image.Image, np.ndarray, str, Path)):
        images = [images]
    out: list[RGBImage] = []
    for image in images:
        if is_tensor(image):
            out.extend(_split_tensor(image))
        else:
            out.append(as_rgb(image, max_pixels))
    return out
