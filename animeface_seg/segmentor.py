"""The inference API: images in, face-part maps and character masks out.

``Segmentor`` owns the two networks on one device. ``prepare`` turns a decoded image into
the padded uint8 network input on the device; ``run`` segments a batch of prepared images
that share one padded shape; ``__call__`` does both for a list of images of any sizes.
Everything stays on the device until the final uint8 results are copied back.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from animeface_seg import preprocess
from animeface_seg.decode import load_rgb, to_rgb_array
from animeface_seg.device import default_batch_size, describe, select_device, select_dtype
from animeface_seg.palette import CLASS_NAMES, palette_tensor
from animeface_seg.weights import load_isnet, load_unet

OutputSize = Literal["original", "processed"]
ImageInput = Union[Image.Image, np.ndarray, str, Path]


@dataclass
class Segmentation:
    """Result for one image. Arrays are uint8 at ``size`` (original or processed, as asked)."""

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


@dataclass
class Prepared:
    """A decoded image turned into network input: padded (3, H_pad, W_pad) uint8 on the device."""

    pixels: torch.Tensor
    original_size: tuple[int, int]
    processed_size: tuple[int, int]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Images with the same padded shape can share a batch."""
        return tuple(self.pixels.shape[1:])


class Segmentor:
    """Anime face-part segmentation with optional background removal, batched on one device.

    Weights come from explicit paths, a weights directory, ``$ANIMEFACE_SEG_WEIGHTS`` or the
    Hugging Face hub (see ``weights.py``). The mask network is only loaded when needed.
    """

    def __init__(
        self,
        unet: str | Path | None = None,
        abg: str | Path | None = None,
        weights_dir: str | Path | None = None,
        *,
        remove_background: bool = True,
        device: str = "auto",
        precision: str = "auto",
        output_size: OutputSize = "original",
    ) -> None:
        if output_size not in ("original", "processed"):
            raise ValueError(f"output_size must be 'original' or 'processed', not {output_size!r}")
        self.device = select_device(device)
        self.dtype = select_dtype(self.device, precision)
        self.remove_background = remove_background
        self.output_size = output_size
        self.unet = self._place(load_unet(unet, weights_dir))
        self.isnet = self._place(load_isnet(abg, weights_dir)) if remove_background else None
        self._palette = palette_tensor(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @property
    def description(self) -> str:
        """Device and precision in words, e.g. ``cpu, fp32``."""
        return describe(self.device, self.dtype)

    @property
    def _memory_format(self) -> torch.memory_format:
        # Channels-last feeds tensor cores and CPU bf16 kernels; for CPU fp32 it measured no faster.
        if self.device.type == "cuda" or self.dtype != torch.float32:
            return torch.channels_last
        return torch.contiguous_format

    def _place(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device).eval().to(memory_format=self._memory_format)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, image: np.ndarray) -> Prepared:
        """Move an H x W x 3 uint8 RGB array to the device and resize/pad it for the networks."""
        height, width = image.shape[:2]
        pixels = torch.from_numpy(np.ascontiguousarray(image))
        if self.device.type == "cuda":
            pixels = pixels.pin_memory().to(self.device, non_blocking=True)
        pixels = pixels.permute(2, 0, 1)
        return Prepared(
            pixels=preprocess.prepare(pixels),
            original_size=(height, width),
            processed_size=preprocess.processed_size(height, width),
        )

    @torch.inference_mode()
    def run(self, batch: Sequence[Prepared]) -> list[Segmentation]:
        """Segment prepared images sharing one padded shape, as one batch on the device.

        A CUDA out-of-memory error splits the batch in two and retries each half.
        """
        if not batch:
            return []
        if len({p.padded_shape for p in batch}) != 1:
            raise ValueError("run() needs images of one padded shape; __call__ groups them for you")
        try:
            classes, masks = self.forward(torch.stack([p.pixels for p in batch]))
            on_device = [self._finish(p, classes[i], None if masks is None else masks[i])
                         for i, p in enumerate(batch)]
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
        else:
            # Queue every copy back, then wait once: no stall per image on the GPU.
            on_host = [{k: v.to("cpu", non_blocking=True) for k, v in d.items()} for d in on_device]
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            return [self._segmentation(p, d) for p, d in zip(batch, on_host)]
        torch.cuda.empty_cache()  # outside the handler, so the failed batch's memory is free
        half = len(batch) // 2
        return self.run(batch[:half]) + self.run(batch[half:])

    @torch.inference_mode()
    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The networks alone on a padded (N, 3, H, W) uint8 batch on the device.

        Returns (N, H, W) uint8 class indices and the (N, H, W) float mask (None when the
        background is kept), both still padded and on the device.
        """
        rgb = pixels.float().contiguous(memory_format=self._memory_format)
        masks = None
        with self._autocast():
            if self.isnet is not None:
                masks = self.isnet(rgb / 255.0).float()
                # The reference composites over white and truncates to uint8 before the UNet.
                rgb = (masks * rgb + 255.0 * (1.0 - masks)).trunc_()
                masks = masks[:, 0]
            logits = self.unet(rgb / 255.0)
        return logits.argmax(1).to(torch.uint8), masks

    def _finish(self, item: Prepared, classes: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Crop the padding, resize to the asked size and colour, still on the device.

        Returns uint8 ``classes``, ``colors`` and ``mask`` (absent when the background is kept)
        and ``stats``: the 7 class fractions and the mask's mean.
        """
        h, w = item.processed_size
        classes = classes[:h, :w]
        size = item.original_size if self.output_size == "original" else item.processed_size
        if size != (h, w):
            classes = preprocess.resize_nearest(classes, size)
        # histc with fixed bounds, unlike bincount, needs no device-to-host sync on CUDA.
        fractions = torch.histc(classes.float(), bins=len(CLASS_NAMES), min=0, max=len(CLASS_NAMES)) / classes.numel()
        out = {"classes": classes, "colors": self._palette[classes.long()]}
        if mask is None:
            out["stats"] = fractions
            return out
        mask = mask[:h, :w]
        if size != (h, w):
            mask = F.interpolate(
                mask[None, None], size=size, mode="bilinear", align_corners=False, antialias=size[0] < h
            )[0, 0]
        out["stats"] = torch.cat((fractions, mask.mean()[None]))
        out["mask"] = (mask * 255.0).clamp_(0, 255).to(torch.uint8)
        return out

    def _segmentation(self, item: Prepared, host: dict[str, torch.Tensor]) -> Segmentation:
        """Wrap the host copies of ``_finish``'s tensors as a ``Segmentation``."""
        stats = host["stats"].tolist()
        size = tuple(host["classes"].shape)
        return Segmentation(
            classes=host["classes"].numpy(),
            colors=host["colors"].numpy(),
            mask=host["mask"].numpy() if "mask" in host else np.full(size, 255, dtype=np.uint8),
            original_size=item.original_size,
            processed_size=item.processed_size,
            class_fractions=tuple(stats[: len(CLASS_NAMES)]),
            mask_coverage=stats[len(CLASS_NAMES)] if "mask" in host else None,
        )

    def __call__(self, images: Sequence[ImageInput], batch_size: int | None = None) -> list[Segmentation]:
        """Segment images of any sizes (PIL images, H x W x 3 uint8 arrays or file paths), in order.

        ``batch_size`` defaults to 8 on CUDA and 1 on CPU.
        """
        batch_size = batch_size or default_batch_size(self.device)
        prepared = [self.prepare(_as_rgb_array(image)) for image in images]
        results: list[Segmentation | None] = [None] * len(prepared)
        for indices in _group_by_shape(prepared, batch_size):
            for i, result in zip(indices, self.run([prepared[i] for i in indices])):
                results[i] = result
        return results  # type: ignore[return-value]


def _as_rgb_array(image: ImageInput) -> np.ndarray:
    """Any accepted input as H x W x 3 uint8 RGB, by the same decode rules as files."""
    if isinstance(image, (str, Path)):
        return load_rgb(image)
    if isinstance(image, Image.Image):
        return to_rgb_array(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError("arrays must be uint8, H x W (gray) or H x W x 3/4 (RGB/RGBA)")
    return to_rgb_array(Image.fromarray(array))


def _group_by_shape(prepared: Sequence[Prepared], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``prepared`` in batches of at most ``batch_size`` sharing one padded shape."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, item in enumerate(prepared):
        groups[item.padded_shape].append(i)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start:start + batch_size]
