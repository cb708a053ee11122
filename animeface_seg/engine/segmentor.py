"""The inference API: images in, face-part maps and character masks out.

``Segmentor`` takes built networks (modules or state dicts) and runs them on one device;
``Segmentor.from_pretrained`` finds and loads the checkpoint files first (see ``weights.py``).
``prepare`` turns one image into the padded uint8 network input; ``run`` and ``run_on_device``
segment a batch of prepared images sharing one padded shape; ``__call__`` and
``segment_on_device`` do both for any number of images of any sizes.

What runs the networks is a registered runtime (``runtimes/registry.py``): its record builds them
and names the array side (``sides.py``) that prepares, stacks and finishes: tensors on the device
for the torch runtimes, numpy arrays on the host for the ONNX ones (CPU), which never import torch
once the export is cached (seconds off a run's start). The ``Segmentor`` itself only asks them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, Union

from animeface_seg.engine.batcher import ShapeBatcher
from animeface_seg.engine.device import (cpu_has_native_bf16, default_batch_size, describe, device_name,
                                         precision_name, torch_dtype)
from animeface_seg.engine.errors import SettingError
from animeface_seg.engine.halving import one_shape, split_on_failure
from animeface_seg.engine.inputs import ImageInput, RGBImage, as_rgb_images
from animeface_seg.engine.palette import CLASS_NAMES
from animeface_seg.engine.results import DeviceSegmentation, Prepared, Segmentation
from animeface_seg.engine.runtimes import Networks, registry
from animeface_seg.engine.runtimes.select import choose as choose_runtime
from animeface_seg.engine.sides import SIDES, Side
from animeface_seg.engine.weights import ABG, UNET, load, resolve

if TYPE_CHECKING:  # torch is imported only on the torch runtimes' path (and to export once)
    import numpy as np
    import torch
    from torch import nn

OutputSize = Literal["original", "processed"]
Network = Union["nn.Module", Mapping[str, "torch.Tensor"]]
Result = TypeVar("Result")
_OPTIONS = ("device", "precision", "output_size", "place", "fold_batchnorm", "runtime")


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
        self.networks: Networks = self.backend.builder.from_modules(self.runtime, self._target, unet_module,
                                                                    isnet_module, place)

    def _setup(self, device: str | torch.device, precision: str, output_size: OutputSize, runtime: str,
               place: bool, fold_batchnorm: bool) -> None:
        """Device, precision, output size, runtime, its array side and folding: what both constructors
        decide first, by name (no torch import for an ONNX runtime on the CPU)."""
        if output_size not in ("original", "processed"):
            raise SettingError(f"output_size must be 'original' or 'processed', not {output_size!r}",
                               setting="output_size")
        self.device_name = device_name(device) if isinstance(device, str) else _name_of(device)
        self.precision = precision_name(self.device_name, precision)
        self.output_size = output_size
        cpu = self.device_name == "cpu"
        native_bf16 = cpu and self.precision == "bf16" and cpu_has_native_bf16()
        self.runtime = choose_runtime(runtime, self.device_name.partition(":")[0], self.precision, place=place,
                                      native_bf16=native_bf16)
        self.backend: registry.Runtime = registry.get(self.runtime)
        self.side: Side = SIDES[self.backend.side](self.device_name)
        self.fold_batchnorm = fold_batchnorm if self.backend.fold is None else self.backend.fold

    @property
    def _target(self) -> registry.Target:
        return registry.Target(self.device_name, self.precision)

    @property
    def device(self) -> torch.device:
        """The device as torch's object (imports torch; ``device_name`` is the same as text)."""
        import torch

        return torch.device(self.device_name)

    @property
    def dtype(self) -> torch.dtype:
        """The compute precision as torch's dtype (imports torch; ``precision`` is its name)."""
        return torch_dtype(self.precision)

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
        unknown = set(options) - set(_OPTIONS)
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

        self.networks = self.backend.builder.from_files(self.runtime, self._target, (unet_path, abg_path), modules,
                                                        options.get("place", True))
        return self

    @property
    def remove_background(self) -> bool:
        """Whether the mask network runs (and the UNet sees the character over white)."""
        return self.networks.remove_background

    @property
    def unet(self) -> nn.Module | None:
        """The UNet module with a torch runtime (None with a runtime of its own graph, the ONNX ones)."""
        return self.networks.unet

    @property
    def isnet(self) -> nn.Module | None:
        """The mask network's module with a torch runtime (None with an ONNX runtime, or no mask)."""
        return self.networks.isnet

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

    def prepare(self, image: RGBImage) -> Prepared:
        """Resize and pad one image (H x W x 3 uint8 array, or (3, H, W) uint8 tensor) on the runtime's
        array side (``sides.py``): a numpy array on the host, or a tensor on the device."""
        return self.side.prepare(image)

    def run(self, batch: Sequence[Prepared]) -> list[Segmentation]:
        """Segment prepared images sharing one padded shape, as one batch, results on the host.

        An allocation failure (CUDA out of memory, or the CPU allocator refused) splits the batch in
        two and retries each half; a single image that does not fit raises ``OutOfMemory``.
        """
        return self.side.to_host(self._run(batch))

    def run_on_device(self, batch: Sequence[Prepared]) -> list[DeviceSegmentation]:
        """Like ``run``, but results stay on the device as uint8 tensors (host side: CPU tensors)."""
        return self.side.to_device(self._run(batch))

    def _run(self, batch: Sequence[Prepared]) -> list[Segmentation] | list[DeviceSegmentation]:
        """The batch through the networks and finished, as the side keeps results, halved on failures."""
        def run(part: Sequence[Prepared]) -> list[Segmentation] | list[DeviceSegmentation]:
            return self.side.run_batch(part, self.forward, self.output_size)

        return split_on_failure(one_shape(batch), run, self.side.release)

    def forward(self, pixels: np.ndarray | torch.Tensor) -> tuple[np.ndarray | torch.Tensor, ...]:
        """The networks alone on a padded (N, 3, H, W) uint8 batch, run by the runtime.

        Returns (N, H, W) uint8 class indices and the (N, H, W) float mask (None when the background
        is kept), both still padded: numpy arrays for the ONNX runtimes (which also take a CPU
        tensor), tensors on the device for the torch runtimes.
        """
        return self.networks(pixels)

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


__all__ = ["CLASS_NAMES", "DeviceSegmentation", "Prepared", "Segmentation", "Segmentor"]
