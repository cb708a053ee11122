"""The inference API: images in, face-part maps and character masks out.

``Segmentor`` takes built networks (modules or state dicts) and runs them on one device;
``Segmentor.from_pretrained`` finds and loads the checkpoint files first (see ``weights.py``).
``prepare`` turns one image into the padded uint8 network input; ``run`` and ``run_on_device``
segment a batch of prepared images sharing one padded shape; ``__call__`` and
``segment_on_device`` do both for any number of images of any sizes.

Two paths, one rule (``geometry``): with the torch runtimes everything stays on the device
(``geometry.device``) until the final uint8 results are copied back, and only when asked; with
the ONNX runtimes (CPU) images and results are numpy arrays on the host (``geometry.host``) and
torch is never imported once the export is cached, which takes seconds off a run's start.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, Union

import numpy as np

from animeface_seg.engine import geometry
from animeface_seg.engine.batcher import ShapeBatcher
from animeface_seg.engine.device import (cpu_has_native_bf16, default_batch_size, describe, device_name,
                                         precision_name, torch_dtype)
from animeface_seg.engine.errors import OutOfMemory, SettingError
from animeface_seg.engine.geometry import host as host_geometry
from animeface_seg.engine.inputs import ImageInput, RGBImage, as_rgb_images, is_tensor
from animeface_seg.engine.palette import (CLASS_NAMES, NUM_CLASSES, class_counts, class_index, colorize,
                                          palette_tensor)
from animeface_seg.engine.runtimes import Networks, export
from animeface_seg.engine.runtimes.cache_files import Cache
from animeface_seg.engine.runtimes.select import ONNX_RUNTIMES
from animeface_seg.engine.runtimes.select import choose as choose_runtime
from animeface_seg.engine.weights import ABG, UNET, load, resolve

if TYPE_CHECKING:  # torch is imported only on the torch runtimes' path (and to export once)
    import torch
    from torch import nn

OutputSize = Literal["original", "processed"]
Network = Union["nn.Module", Mapping[str, "torch.Tensor"]]
Result = TypeVar("Result")


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
        return _to_host([self])[0]


@dataclass
class Prepared:
    """An image turned into network input: padded (3, H_pad, W_pad) uint8, a numpy array for the
    ONNX runtimes (host), else a tensor on the device."""

    pixels: np.ndarray | torch.Tensor
    original_size: tuple[int, int]
    processed_size: tuple[int, int]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Images with the same padded shape can share a batch."""
        return tuple(int(n) for n in self.pixels.shape[1:])


class Segmentor:
    """Anime face-part segmentation with optional background removal, batched on one device.

    ``unet`` and ``isnet`` are built networks or their state dicts (keys as in the published
    checkpoints); without ``isnet`` the background is kept and no mask is computed. With
    ``place=False`` the networks are used where the caller put them (a host that manages
    model memory itself), otherwise they are moved to ``device`` in the chosen memory format.

    ``runtime`` says what runs the networks (``runtimes/``): ``torch``, ``reference`` (the
    original's exact arithmetic: nothing folded, default memory format, fp32), or on the CPU
    ``onnxruntime`` / ``openvino`` (a cached ONNX export, ``runtimes/export.py``); ``auto`` is
    the fastest installed for the device and precision (``runtimes/select.py``).

    With ``fold_batchnorm`` (the default) every batch norm is folded into its convolution
    (``optimize.py``: one pass fewer over the activations, same results within rounding).
    Modules passed in are never changed: a folded copy is made (a host's own module, e.g.
    ComfyUI's, is left as it was and, with ``place=False``, the copy stays on its device);
    ``fold_batchnorm=False`` runs the given modules as they are, the exact unfolded path. It
    concerns the ``torch`` runtime: the ONNX runtimes always run folded networks, ``reference`` never.
    """

    def __init__(
        self,
        unet: Network,
        isnet: Network | None = None,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        output_size: OutputSize = "original",
        place: bool = True,
        fold_batchnorm: bool = True,
        runtime: str = "auto",
    ) -> None:
        self._setup(device, precision, output_size, runtime, place, fold_batchnorm)
        unet_module = self._fold(unet, UNET)
        isnet_module = None if isnet is None else self._fold(isnet, ABG)
        if self.runtime in ONNX_RUNTIMES:
            key = export.ExportKey(export.module_digest(unet_module),
                                   None if isnet_module is None else export.module_digest(isnet_module))
            self.networks = self._onnx_networks(key, lambda: (unet_module, isnet_module), Cache())
        else:
            from animeface_seg.engine.runtimes.torch_eager import TorchNetworks

            self.networks = TorchNetworks(self.runtime, self._place(unet_module, place),
                                          None if isnet_module is None else self._place(isnet_module, place),
                                          self.device, self.dtype, self.memory_format)

    def _setup(self, device: str | torch.device, precision: str, output_size: OutputSize, runtime: str,
               place: bool, fold_batchnorm: bool) -> None:
        """Device, precision, output size, runtime and folding: what both constructors decide first,
        by name (no torch import for an ONNX runtime on the CPU).

        The ONNX runtimes always run the folded networks (one export per weights); ``reference`` never."""
        if output_size not in ("original", "processed"):
            raise SettingError(f"output_size must be 'original' or 'processed', not {output_size!r}",
                               setting="output_size")
        self.device_name = device_name(device) if isinstance(device, str) else _name_of(device)
        self.precision = precision_name(self.device_name, precision)
        self.output_size = output_size
        cpu = self.device_name == "cpu"
        native_bf16 = cpu and self.precision == "bf16" and cpu_has_native_bf16()
        self.runtime = choose_runtime(runtime, "cpu" if cpu else self.device_name.partition(":")[0],
                                      self.precision, place=place, native_bf16=native_bf16)
        self.fold_batchnorm = self.runtime in ONNX_RUNTIMES or (fold_batchnorm and self.runtime != "reference")

    @property
    def device(self) -> torch.device:
        """The device as torch's object (imports torch; ``device_name`` is the same as text)."""
        import torch

        return torch.device(self.device_name)

    @property
    def dtype(self) -> torch.dtype:
        """The compute precision as torch's dtype (imports torch; ``precision`` is its name)."""
        return torch_dtype(self.precision)

    @property
    def memory_format(self) -> torch.memory_format:
        """The torch runtimes' memory format: the default one for ``reference``, else ``device.memory_format``."""
        import torch

        from animeface_seg.engine.device import memory_format

        return torch.contiguous_format if self.runtime == "reference" else memory_format(self.device, self.dtype)

    @property
    def on_host(self) -> bool:
        """Whether images, batches and results stay numpy arrays on the host (the ONNX runtimes), so
        torch is never needed; else they are tensors on the device."""
        return self.runtime in ONNX_RUNTIMES

    def _onnx_networks(self, key: export.ExportKey, modules, cache: Cache) -> Networks:
        """The ONNX runtime's networks for ``key``: from the cache, else exported from ``modules()``
        (a callable returning the folded unet and isnet, only called when the export is missing or
        damaged). Cache problems are ``CacheWarning``s, never errors (``runtimes/cache_files.py``)."""
        found = export.cached(key, cache)
        if found is None:
            from animeface_seg.engine.models.stacked import StackedNetworks
            from animeface_seg.engine.weights import weights_fingerprint

            unet_module, isnet_module = modules()
            fingerprints = {"unet": weights_fingerprint(unet_module),
                            "abg": None if isnet_module is None else weights_fingerprint(isnet_module)}
            found = export.export(key, lambda: StackedNetworks(unet_module, isnet_module), fingerprints, cache)
        if self.runtime == "onnxruntime":
            from animeface_seg.engine.runtimes.onnxruntime_session import OnnxRuntimeNetworks

            return OnnxRuntimeNetworks(found, cache)
        from animeface_seg.engine.runtimes.openvino_model import OpenVinoNetworks

        return OpenVinoNetworks(found, self.precision, cache)

    @classmethod
    def from_pretrained(
        cls,
        unet: str | Path | None = None,
        abg: str | Path | None = None,
        weights_dir: str | Path | None = None,
        *,
        remove_background: bool = True,
        **options,
    ) -> Segmentor:
        """Find and load both checkpoints (paths, weights folder, ``$ANIMEFACE_SEG_WEIGHTS``, hub cache,
        download), then build a ``Segmentor``; ``options`` are those of the constructor.

        The mask network is only looked for and loaded when the background is removed. With an
        ONNX runtime whose export of these files is cached, the checkpoints are not loaded at all.
        """
        unknown = set(options) - {"device", "precision", "output_size", "place", "fold_batchnorm", "runtime"}
        if unknown:
            raise TypeError(f"Segmentor.from_pretrained() got unexpected options: {', '.join(sorted(unknown))}")
        self = cls.__new__(cls)  # settings first: a runtime that cannot run here is refused before any file is sought
        self._setup(options.get("device", "auto"), options.get("precision", "auto"),
                    options.get("output_size", "original"), options.get("runtime", "auto"),
                    options.get("place", True), options.get("fold_batchnorm", True))
        unet_path = resolve(UNET, unet, weights_dir)
        abg_path = resolve(ABG, abg, weights_dir) if remove_background else None
        fold = self.fold_batchnorm

        def modules() -> tuple[nn.Module, nn.Module | None]:
            from animeface_seg.engine.optimize import fold_batchnorm

            unet_module = load(UNET, unet_path)
            isnet_module = None if abg_path is None else load(ABG, abg_path)
            if fold:  # these modules are ours alone: fold without a copy
                unet_module = fold_batchnorm(unet_module, inplace=True)
                isnet_module = None if isnet_module is None else fold_batchnorm(isnet_module, inplace=True)
            return unet_module, isnet_module

        if self.runtime in ONNX_RUNTIMES:
            cache = Cache()
            key = export.ExportKey(export.file_digest(unet_path, cache),
                                   None if abg_path is None else export.file_digest(abg_path, cache))
            self.networks = self._onnx_networks(key, modules, cache)
            return self
        return cls(*modules(), **{**options, "fold_batchnorm": fold})

    @property
    def remove_background(self) -> bool:
        """Whether the mask network runs (and the UNet sees the character over white)."""
        return self.networks.remove_background

    @property
    def unet(self) -> nn.Module | None:
        """The UNet module with a torch runtime (None with an ONNX runtime)."""
        return None if self.on_host else self.networks.stacked.unet

    @property
    def isnet(self) -> nn.Module | None:
        """The mask network's module with a torch runtime (None with an ONNX runtime, or no mask)."""
        return None if self.on_host else self.networks.stacked.isnet

    @property
    def fingerprints(self) -> dict[str, str | None]:
        """Short digests of the weights (``unet``, ``abg``; None without mask network), as recorded in outputs."""
        return self.networks.fingerprints

    @property
    def description(self) -> str:
        """Device, precision and runtime in words, e.g. ``cpu, fp32, onnxruntime``."""
        return f"{describe(self.device_name, self.precision)}, {self.runtime}"

    def _fold(self, network: Network, spec) -> nn.Module:
        """The module to run: built from a state dict (ours, folded in place), or the caller's
        module, folded as a copy unless it holds no batch norm any more."""
        from torch import nn

        from animeface_seg.engine.optimize import count_batchnorms, fold_batchnorm
        from animeface_seg.engine.weights import build

        if not isinstance(network, nn.Module):
            module = build(spec, network)
            return fold_batchnorm(module, inplace=True) if self.fold_batchnorm else module
        if self.fold_batchnorm and count_batchnorms(network):
            return fold_batchnorm(network)
        return network

    def _place(self, model: nn.Module, place: bool) -> nn.Module:
        model = model.eval()
        return model.to(self.device).to(memory_format=self.memory_format) if place else model

    def prepare(self, image: RGBImage) -> Prepared:
        """Resize and pad one image (H x W x 3 uint8 array, or (3, H, W) uint8 tensor): on the host for
        the ONNX runtimes (``geometry.host``), by OpenCV on the host for ``reference`` as the original
        (``geometry.opencv``), else moved to the device first (``geometry.device``)."""
        if self.on_host or self.runtime == "reference":
            array = image.permute(1, 2, 0).cpu().numpy() if is_tensor(image) else np.asarray(image)
            height, width = array.shape[:2]
            pixels = host_geometry.prepare(array) if self.on_host else self._prepare_as_the_original(array)
            return Prepared(pixels, (height, width), geometry.processed_size(height, width))
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
        return Prepared(
            pixels=device_geometry.prepare(pixels),
            original_size=(height, width),
            processed_size=geometry.processed_size(height, width),
        )

    def _prepare_as_the_original(self, array: np.ndarray) -> torch.Tensor:
        """The ``reference`` runtime's network input: resized by OpenCV on the host as the original does
        (``geometry.opencv``), then moved to the device."""
        import torch

        from animeface_seg.engine.geometry import opencv as opencv_geometry

        return torch.from_numpy(opencv_geometry.prepare(array)).to(self.device)

    def run(self, batch: Sequence[Prepared]) -> list[Segmentation]:
        """Segment prepared images sharing one padded shape, as one batch, results on the host.

        An allocation failure (CUDA out of memory, or the CPU allocator refused) splits the batch in
        two and retries each half; a single image that does not fit raises ``OutOfMemory``.
        """
        if self.on_host:
            return self._split_on_failure(_one_shape(batch), self._run_host)
        return _to_host(self.run_on_device(batch))

    def run_on_device(self, batch: Sequence[Prepared]) -> list[DeviceSegmentation]:
        """Like ``run``, but results stay on the device as uint8 tensors (ONNX runtimes: CPU tensors)."""
        if self.on_host:
            return [_to_device(result) for result in self.run(batch)]
        return self._split_on_failure(_one_shape(batch), self._run_device)

    def _split_on_failure(self, batch: Sequence[Prepared],
                          run: Callable[[Sequence[Prepared]], list[Result]]) -> list[Result]:
        """``run(batch)``, halving the batch on an allocation failure until one image is left."""
        if not batch:
            return []
        try:
            return run(batch)
        except Exception as exc:  # noqa: BLE001 - each runtime words an allocation failure its own way
            if not _out_of_memory(exc):
                raise
            if len(batch) == 1:
                raise OutOfMemory(f"out of memory in the networks ({_last_line(exc)})",
                                  setting="memory_budget") from None
        if self.device_name.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()  # outside the handler, so the failed batch's memory is free
        half = len(batch) // 2
        return self._split_on_failure(batch[:half], run) + self._split_on_failure(batch[half:], run)

    def _run_host(self, batch: Sequence[Prepared]) -> list[Segmentation]:
        classes, masks = self.forward(np.stack([p.pixels for p in batch]))
        return [self._finish_host(p, classes[i], None if masks is None else masks[i]) for i, p in enumerate(batch)]

    def _run_device(self, batch: Sequence[Prepared]) -> list[DeviceSegmentation]:
        import torch

        with torch.inference_mode():
            classes, masks = self.forward(torch.stack([p.pixels for p in batch]))
            return [self._finish(p, classes[i], None if masks is None else masks[i]) for i, p in enumerate(batch)]

    def forward(self, pixels: np.ndarray | torch.Tensor) -> tuple[np.ndarray | torch.Tensor, ...]:
        """The networks alone on a padded (N, 3, H, W) uint8 batch, run by the runtime.

        Returns (N, H, W) uint8 class indices and the (N, H, W) float mask (None when the background
        is kept), both still padded: numpy arrays for the ONNX runtimes (which also take a CPU
        tensor), tensors on the device for the torch runtimes.
        """
        return self.networks(pixels)

    def _finish_host(self, item: Prepared, classes: np.ndarray, mask: np.ndarray | None) -> Segmentation:
        """Crop the padding, bring to the asked size and colour, on the host."""
        size = item.original_size if self.output_size == "original" else item.processed_size
        classes = np.ascontiguousarray(host_geometry.resize_classes(geometry.crop(classes, item.processed_size), size))
        if mask is None:
            levels, coverage = np.full(classes.shape, 255, dtype=np.uint8), None
        else:
            levels, coverage = host_geometry.mask_levels(geometry.crop(mask, item.processed_size), size)
        return Segmentation(classes, colorize(classes), levels, item.original_size, item.processed_size,
                            tuple(float(n) / classes.size for n in class_counts(classes)), coverage)

    def _finish(self, item: Prepared, classes: torch.Tensor, mask: torch.Tensor | None) -> DeviceSegmentation:
        """Crop the padding, bring to the asked size and colour, still on the device."""
        import torch

        from animeface_seg.engine.geometry import device as device_geometry

        size = item.original_size if self.output_size == "original" else item.processed_size
        classes = device_geometry.resize_classes(geometry.crop(classes, item.processed_size), size)
        # histc with fixed bounds, unlike bincount, needs no device-to-host sync on CUDA.
        stats = torch.histc(classes.float(), bins=NUM_CLASSES, min=0, max=NUM_CLASSES) / classes.numel()
        if mask is not None:
            mask = device_geometry.resize_mask(geometry.crop(mask, item.processed_size), size)
            stats = torch.cat((stats, mask.mean()[None]))
            mask = (mask * 255.0).clamp_(0, 255).to(torch.uint8)
        return DeviceSegmentation(classes, palette_tensor(classes.device)[classes.long()], mask, stats,
                                  item.original_size, item.processed_size)

    def segment_on_device(self, images: ImageInput | Iterable[ImageInput],
                          batch_size: int | None = None) -> list[DeviceSegmentation]:
        """Like ``__call__``, but results stay on the device as uint8 tensors (no host copy)."""
        return self._segment(images, batch_size, self.run_on_device)

    def _segment(self, images: ImageInput | Iterable[ImageInput], batch_size: int | None,
                 run: Callable[[Sequence[Prepared]], list[Result]]) -> list[Result]:
        """Every image prepared, batched by padded shape, run with ``run``; results in input order."""
        batcher: ShapeBatcher[tuple[int, Prepared]] = ShapeBatcher(
            batch_size or default_batch_size(self.device_name), key=lambda item: item[1].padded_shape)
        results: dict[int, Result] = {}

        def run_batch(batch: list[tuple[int, Prepared]]) -> None:
            for (index, _), result in zip(batch, run([item for _, item in batch])):
                results[index] = result

        for index, image in enumerate(as_rgb_images(images)):
            for batch in batcher.add((index, self.prepare(image))):
                run_batch(batch)
        for batch in batcher.drain():
            run_batch(batch)
        return [results[i] for i in range(len(results))]

    def stream(self, images: Iterable[ImageInput], batch_size: int | None = None) -> Iterator[Segmentation]:
        """Segment images as they come (the frames of a clip, say), yielding results in order while holding
        at most ``batch_size`` images: consecutive images of one padded shape share a batch. Unlike
        ``__call__`` it never holds the whole input, so an endless or very long iterator is fine.
        """
        size = batch_size or default_batch_size(self.device_name)
        pending: list[Prepared] = []
        for item in images:
            for image in as_rgb_images(item):
                prepared = self.prepare(image)
                if pending and prepared.padded_shape != pending[0].padded_shape:
                    yield from self.run(pending)
                    pending = []
                pending.append(prepared)
                if len(pending) >= size:
                    yield from self.run(pending)
                    pending = []
        if pending:
            yield from self.run(pending)

    def __call__(self, images: ImageInput | Iterable[ImageInput], batch_size: int | None = None) -> list[Segmentation]:
        """Segment images of any sizes, in order: file paths, PIL images, uint8 arrays, or tensors
        (float ``(B, H, W, 3)`` in [0, 1] as ComfyUI's IMAGE, uint8 ``(3, H, W)``); see ``inputs.py``.

        ``batch_size`` defaults to the device's (``device.default_batch_size``).
        """
        return self._segment(images, batch_size, self.run)


def _name_of(device: torch.device) -> str:
    """``cpu`` or ``cuda:N`` for a ``torch.device`` (a bare ``cuda`` is GPU 0)."""
    return f"cuda:{device.index or 0}" if device.type == "cuda" else device.type


def _one_shape(batch: Sequence[Prepared]) -> Sequence[Prepared]:
    """``batch``, after checking its images share one padded shape (what one network call needs)."""
    if len({p.padded_shape for p in batch}) > 1:
        raise SettingError("run() needs images of one padded shape; __call__ groups them for you")
    return batch


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (torch's CPU allocator and ONNX Runtime raise plain errors)."""
    text = str(exc)
    torch = sys.modules.get("torch")
    return isinstance(exc, MemoryError) or (torch is not None and isinstance(exc, torch.OutOfMemoryError)) or any(
        phrase in text for phrase in ("allocate memory", "bad_alloc", "bad allocation"))


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _to_device(result: Segmentation) -> DeviceSegmentation:
    """A host result as CPU tensors sharing its arrays (what ``run_on_device`` gives on an ONNX runtime)."""
    import torch

    stats = [*result.class_fractions, *([] if result.mask_coverage is None else [result.mask_coverage])]
    return DeviceSegmentation(torch.from_numpy(result.classes), torch.from_numpy(result.colors),
                              None if result.mask_coverage is None else torch.from_numpy(result.mask),
                              torch.tensor(stats, dtype=torch.float32), result.original_size, result.processed_size)


def _to_host(results: Sequence[DeviceSegmentation]) -> list[Segmentation]:
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


__all__ = ["CLASS_NAMES", "DeviceSegmentation", "Prepared", "Segmentation", "Segmentor"]
