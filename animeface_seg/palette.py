"""The seven face-part classes and their colours, exactly as the reference preprocessor draws them."""

from __future__ import annotations

import torch

#: Class names in index order (the UNet's output channel = the class index).
CLASS_NAMES: tuple[str, ...] = ("background", "hair", "eye", "mouth", "face", "skin", "clothes")

#: RGB colour of each class, same order as ``CLASS_NAMES``.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 255, 0),
    (0, 0, 255),
    (255, 0, 0),
    (255, 255, 255),
    (0, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
)


def palette_tensor(device: torch.device | str = "cpu") -> torch.Tensor:
    """The palette as a (7, 3) uint8 tensor, for lookups ``palette[classes]`` on the device."""
    return torch.tensor(CLASS_COLORS, dtype=torch.uint8, device=device)
