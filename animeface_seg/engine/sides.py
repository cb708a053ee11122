"""The array sides a runtime works on: where images, batches and results live between the networks.

A side prepares one image (resize and pad, ``geometry``), stacks a batch, finishes each result (crop,
resize to the output size, colours, class fractions, mask levels) and converts results to the host
(``Segmentation``) or the device (``DeviceSegmentation``). ``host``: numpy arrays (``geometry.host``),
never importing torch, for runtimes that take arrays (the ONNX ones); ``device``: torch tensors on the
segmentor's device (``geometry.device``); ``opencv``: the device side fed OpenCV's resize on the host as
the original is (``geometry.opencv``, the ``reference`` runtime). A runtime names its side in its
``Runtime`` record (``runtimes/registry.py``); the ``Segmentor`` only calls the side it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, Union

import numpy as np

from animeface_seg.engine import geometry
from animeface_seg.engine.geometry import host as host_geometry
from animeface_seg.engine.inputs import RGBImage, is_tensor
from animeface_seg.engine.palette import NUM_CLASSES, class_counts, colorize, palette_tensor
from animeface_seg.engine.results import DeviceSegmentation, Prepared, Segmentation, to_device, to_host

if TYPE_CHECKING:
    import torch

Pixels = Union[np.ndarray, "torch.Tensor"]
#: The networks on a stacked batch: (N, H, W) classes and the (N, H, W) mask or None, still padded.
Forward = Callable[[Pixels], tuple[Pixels, ...]]


class Side(Protocol):
    """What the ``Segmentor`` asks of the side its runtime works on."""

    def prepare(self, image: RGBImage) -> Prepared: ...

    def run_batch(self, batch: Sequence[Prepared], forward: Forward,
                  output_size: str) -> list[Segmentation] | list[DeviceSegmentation]: ...

    def to_host(self, results: Sequence) -> list[Segmentation]: ...

    def to_device(self, results: Sequence) -> list[DeviceSegmentation]: ...

    def release(self) -> None: ...


def _host_array(image: RGBImage) -> np.ndarray:
    """An (H, W, 3) uint8 array of an image given as an array or a (3, H, W) tensor."""
    return image.permute(1, 2, 0).cpu().numpy() if is_tensor(image) else np.asarray(image)


def _size(item: Prepared, output_size: str) -> tuple[int, int]:
    return item.original_size if output_size == "original" else item.processed_size


class HostSide:
    """numpy arrays in the host's memory, prepared and finished by ``geometry.host`` (no torch)."""

    def __init__(self, device_name: str) -> None:
        self.device_name = device_name

    def prepare(self, image: RGBImage) -> Prepared:
        """Resize and pad one image on the host."""
        array = _host_array(image)
        height, width = array.shape[:2]
        return Prepared(host_geometry.prepare(array), (height, width), geometry.processed_size(height, width))

    def stack(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack(pixels)

    def run_batch(self, batch: Sequence[Prepared], forward: Forward, output_size: str) -> list[Segmentation]:
        """The networks on the stacked batch, then each result finished on the host."""
        classes, masks = forward(self.stack([p.pixels for p in batch]))
        return [self.finish(p, classes[i], None if masks is None else masks[i], output_size)
                for i, p in enumerate(batch)]

    def finish(self, item: Prepared, classes: np.ndarray, mask: np.ndarray | None,
               output_size: str) -> Segmentation:
        """Crop the padding, bring to the asked size and colour, on the host."""
        size = _size(item, output_size)
        classes = np.ascontiguousarray(host_geometry.resize_classes(geometry.crop(classes, item.processed_size), size))
        if mask is None:
            levels, coverage = np.full(classes.shape, 255, dtype=np.uint8), None
        else:
            levels, coverage = host_geometry.mask_levels(geometry.crop(mask, item.processed_size), size)
        return Segmentation(classes, colorize(classes), levels, item.original_size, item.processed_size,
                            tuple(float(n) / classes.size for n in class_counts(classes)), coverage)

    def to_host(self, results: Sequence[Segmentation]) -> list[Segmentation]:
        return list(results)

    def to_device(self, results: Sequence[Segmentation]) -> list[DeviceSegmentation]:
        """CPU tensors sharing the host results' arrays."""
        return [to_device(result) for result in results]

    def release(self) -> None:
        """Nothing to give back after an allocation failure: the failed batch's arrays are freed."""


class DeviceSide:
    """torch tensors on the device, prepared and finished by ``geometry.device``; copied to the host
    only when asked (``to_host``)."""

    def __init__(self, device_name: str) -> None:
        self.device_name = device_name

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device(self.device_name)

    def prepare(self, image: RGBImage) -> Prepared:
        """Move one image to the device, then resize and pad it there."""
        import torch
        from einops import rearrange

        from animeface_seg.engine.geometry import device as device_geometry

        if isinstance(image, np.ndarray):
            pixels = torch.from_numpy(np.ascontiguousarray(image))
            if self.device.type == "cuda":
                pixels = pixels.pin_memory()
            pixels = rearrange(pixels.to(self.device, non_blocking=True), "h w c -> c h w")
        else:
            pixels = image.to(self.device, non_blocking=True)
        height, width = pixels.shape[1:]
        return Prepared(device_geometry.prepare(pixels), (height, width), geometry.processed_size(height, width))

    def stack(self, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
        import torch

        return torch.stack(list(pixels))

    def run_batch(self, batch: Sequence[Prepared], forward: Forward, output_size: str) -> list[DeviceSegmentation]:
        """The networks on the stacked batch, then each result finished on the device (no gradients)."""
        import torch

        with torch.inference_mode():
            classes, masks = forward(self.stack([p.pixels for p in batch]))
            return [self.finish(p, classes[i], None if masks is None else masks[i], output_size)
                    for i, p in enumerate(batch)]

    def finish(self, item: Prepared, classes: torch.Tensor, mask: torch.Tensor | None,
               output_size: str) -> DeviceSegmentation:
        """Crop the padding, bring to the asked size and colour, still on the device."""
        import torch

        from animeface_seg.engine.geometry import device as device_geometry

        size = _size(item, output_size)
        classes = device_geometry.resize_classes(geometry.crop(classes, item.processed_size), size)
        # histc with fixed bounds, unlike bincount, needs no device-to-host sync on CUDA.
        stats = torch.histc(classes.float(), bins=NUM_CLASSES, min=0, max=NUM_CLASSES) / classes.numel()
        if mask is not None:
            mask = device_geometry.resize_mask(geometry.crop(mask, item.processed_size), size)
            stats = torch.cat((stats, mask.mean()[None]))
            mask = (mask * 255.0).clamp_(0, 255).to(torch.uint8)
        return DeviceSegmentation(classes, palette_tensor(classes.device)[classes.long()], mask, stats,
                                  item.original_size, item.processed_size)

    def to_host(self, results: Sequence[DeviceSegmentation]) -> list[Segmentation]:
        return to_host(results)

    def to_device(self, results: Sequence[DeviceSegmentation]) -> list[DeviceSegmentation]:
        return list(results)

    def release(self) -> None:
        """After an allocation failure: hand CUDA's cached blocks back, so the halves find the memory free."""
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


class OpenCVSide(DeviceSide):
    """The device side fed OpenCV's resize on the host, as the original (``geometry.opencv``)."""

    def prepare(self, image: RGBImage) -> Prepared:
        """Resize and pad one image by OpenCV on the host, then move it to the device."""
        import torch

        from animeface_seg.engine.geometry import opencv as opencv_geometry

        array = _host_array(image)
        height, width = array.shape[:2]
        pixels = torch.from_numpy(opencv_geometry.prepare(array)).to(self.device)
        return Prepared(pixels, (height, width), geometry.processed_size(height, width))


#: The sides by the name a ``Runtime`` record gives (``runtimes/registry.py``'s ``SideName``).
SIDES: dict[str, Callable[[str], Side]] = {"host": HostSide, "device": DeviceSide, "opencv": OpenCVSide}
