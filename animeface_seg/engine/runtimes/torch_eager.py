"""The ``torch`` runtime: the modules called directly, on any device.

Batch norms folded (``optimize.py``, unless the caller asks otherwise), channels-last where it
measured faster, and autocast for fp16/bf16; results stay on the device (the ``device`` side).
``EagerModules`` and ``TorchNetworks`` also serve ``reference`` (``reference.py``). torch is imported
when the networks are built, never on import (the command's ``--help`` lists the runtimes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from animeface_seg.engine.runtimes.registry import Runtime, Target

if TYPE_CHECKING:
    import torch
    from torch import nn


class TorchNetworks:
    """``StackedNetworks`` run eagerly by torch on ``device`` at ``dtype`` in ``memory_format``."""

    def __init__(self, name: str, unet: nn.Module, isnet: nn.Module | None, device: torch.device,
                 dtype: torch.dtype, memory_format: torch.memory_format) -> None:
        from animeface_seg.engine.models.stacked import StackedNetworks

        self.name = name
        self.stacked = StackedNetworks(unet, isnet)
        self.device, self.dtype, self.memory_format = device, dtype, memory_format
        self.remove_background = isnet is not None
        self._fingerprints: dict[str, str | None] | None = None

    @property
    def unet(self) -> nn.Module:
        return self.stacked.unet

    @property
    def isnet(self) -> nn.Module | None:
        return self.stacked.isnet

    @property
    def fingerprints(self) -> dict[str, str | None]:
        if self._fingerprints is None:  # a pass over the first bytes of every tensor: only when asked
            from animeface_seg.engine.weights import weights_fingerprint

            isnet = self.stacked.isnet
            self._fingerprints = {"unet": weights_fingerprint(self.stacked.unet),
                                  "abg": None if isnet is None else weights_fingerprint(isnet)}
        return self._fingerprints

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        import torch

        with torch.inference_mode(), self._autocast():
            outputs = self.stacked(pixels.contiguous(memory_format=self.memory_format))
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)


@dataclass(frozen=True)
class EagerModules:
    """How the torch runtimes build: the modules in eval mode, placed on the device in the memory format
    ``device.memory_format`` picks (``default_layout``: torch's default one, as the original runs them),
    or left where the caller put them (``place=False``)."""

    default_layout: bool = False

    def from_modules(self, name: str, target: Target, unet: nn.Module, isnet: nn.Module | None,
                     place: bool) -> TorchNetworks:
        import torch

        from animeface_seg.engine.device import memory_format, torch_dtype

        device, dtype = torch.device(target.device_name), torch_dtype(target.precision)
        layout = torch.contiguous_format if self.default_layout else memory_format(device, dtype)

        def placed(module: nn.Module) -> nn.Module:
            module = module.eval()
            return module.to(device).to(memory_format=layout) if place else module

        return TorchNetworks(name, placed(unet), None if isnet is None else placed(isnet), device, dtype, layout)

    def from_files(self, name: str, target: Target, files: tuple[Path, Path | None],
                   modules: Callable[[], tuple[nn.Module, nn.Module | None]], place: bool) -> TorchNetworks:
        return self.from_modules(name, target, *modules(), place)


RUNTIME = Runtime(name="torch", builder=EagerModules(), side="device", auto_rank=2,
                  summary="torch: any device and precision, batch norms folded; the only one on CUDA.")
