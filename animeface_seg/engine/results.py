"""What the ``Segmentor`` hands out: prepared network inputs, and results on the host or on the device.

``to_host`` and ``to_device`` convert between the two kinds of result, so either array side
(``sides.py``) can give what ``Segmentor.run`` and ``Segmentor.run_on_device`` promise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from animeface_seg.engine.palette import NUM_CLASSES, class_index

if TYPE_CHECKING:  # torch is imported only where a result is (or becomes) a tensor
    import torch


@dataclass
class Segmentation:
    """Result for one image on the host. Arrays are uint8 at the size asked for (original or processed)."""

    classes: np.ndarray
    """H x W class indices 0-6 (see ``palette.CLASS_NAMES``)."""
    colors: np.ndarray
    """H x W x 3 RGB colour map (see ``palette.CLASS_COLORS``)."""
    mask: np.ndarray
    """H x W character mask, 0-255; all 255 when the background was kept."""
    original_size: tuple[int, int]
    """(height, width) of the input image."""
    processed_size: tuple[int, int]
    """(height, width) the networks worked at, padding excluded."""
    class_fractions: tuple[float, ...]
    """Share of the map taken by each class, in ``palette.CLASS_NAMES`` order (sums to 1)."""
    mask_coverage: float | None
    """Mean of the mask in [0, 1]; None when the background was kept (no mask computed)."""

    def class_mask(self, name: str) -> np.ndarray:
        """H x W uint8 mask of one class (``palette.CLASS_NAMES``): 255 where the map has it, else 0.

        Read from ``classes``, the grid ``colors`` is drawn from, so it is ``colors == colour`` exactly.
        """
        return np.where(self.classes == class_index(name), np.uint8(255), np.uint8(0))


@dataclass
class DeviceSegmentation:
    """Result for one image, still on the segmentor's device (uint8 tensors, nothing copied)."""

    classes: torch.Tensor
    """(H, W) class indices."""
    colors: torch.Tensor
    """(H, W, 3) RGB colour map."""
    mask: torch.Tensor | None
    """(H, W) mask 0-255, or None when the background was kept."""
    stats: torch.Tensor
    """The class fractions, then the mask's mean when there is a mask (float32)."""
    original_size: tuple[int, int]
    processed_size: tuple[int, int]

    def class_mask(self, name: str) -> torch.Tensor:
        """(H, W) uint8 mask of one class, 255 where the map has it, else 0; on the device like ``classes``."""
        return (self.classes == class_index(name)).to(self.classes.dtype).mul_(255)

    def to_host(self) -> Segmentation:
        """Copy to numpy (waits for the device)."""
        return to_host([self])[0]


@dataclass
class Prepared:
    """An image turned into network input: padded (3, H_pad, W_pad) uint8, a numpy array on the host
    side, else a tensor on the device (``sides.py``)."""

    pixels: np.ndarray | torch.Tensor
    original_size: tuple[int, int]
    processed_size: tuple[int, int]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Images with the same padded shape can share a batch."""
        return tuple(int(n) for n in self.pixels.shape[1:])


def to_device(result: Segmentation) -> DeviceSegmentation:
    """A host result as CPU tensors sharing its arrays (what ``run_on_device`` gives on the host side)."""
    import torch

    stats = [*result.class_fractions, *([] if result.mask_coverage is None else [result.mask_coverage])]
    return DeviceSegmentation(torch.from_numpy(result.classes), torch.from_numpy(result.colors),
                              None if result.mask_coverage is None else torch.from_numpy(result.mask),
                              torch.tensor(stats, dtype=torch.float32), result.original_size, result.processed_size)


def to_host(results: Sequence[DeviceSegmentation]) -> list[Segmentation]:
    """Copy device results to numpy: every copy queued first, then one wait (no stall per image)."""
    import torch

    copies = [
        {"classes": r.classes, "colors": r.colors, "stats": r.stats, **({"mask": r.mask} if r.mask is not None else {})}
        for r in results
    ]
    copies = [{k: v.to("cpu", non_blocking=True) for k, v in d.items()} for d in copies]
    devices = {r.classes.device for r in results if r.classes.device.type == "cuda"}
    for device in devices:
        torch.cuda.synchronize(device)
    out = []
    for result, host in zip(results, copies):
        stats = host["stats"].tolist()
        has_mask = "mask" in host
        out.append(Segmentation(
            classes=host["classes"].numpy(),
            colors=host["colors"].numpy(),
            mask=host["mask"].numpy() if has_mask else np.full(tuple(host["classes"].shape), 255, dtype=np.uint8),
            original_size=result.original_size,
            processed_size=result.processed_size,
            class_fractions=tuple(stats[:NUM_CLASSES]),
            mask_coverage=stats[NUM_CLASSES] if has_mask else None,
        ))
    return out
