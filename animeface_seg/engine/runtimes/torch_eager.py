"""The torch runtimes: the modules called directly, on any device.

``torch``: batch norms folded (``optimize.py``), channels-last where it measured faster, and
autocast for fp16/bf16. ``reference``: the modules as the original runs them (the ``Segmentor``
gives them unfolded), default memory format, fp32: bit for bit the original's arithmetic.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from animeface_seg.engine.models.stacked import StackedNetworks
from animeface_seg.engine.weights import weights_fingerprint


class TorchNetworks:
    """``StackedNetworks`` run eagerly by torch on ``device`` at ``dtype`` in ``memory_format``."""

    #: Takes and returns torch tensors on its device: see ``runtimes/__init__.py``.
    host = False

    def __init__(self, name: str, unet: nn.Module, isnet: nn.Module | None, device: torch.device,
                 dtype: torch.dtype, memory_format: torch.memory_format) -> None:
        self.name = name
        self.stacked = StackedNetworks(unet, isnet)
        self.device, self.dtype, self.memory_format = device, dtype, memory_format
        self.remove_background = isnet is not None
        self._fingerprints: dict[str, str | None] | None = None

    @property
    def fingerprints(self) -> dict[str, str | None]:
        if self._fingerprints is None:  # a pass over the first bytes of every tensor: only when asked
            isnet = self.stacked.isnet
            self._fingerprints = {"unet": weights_fingerprint(self.stacked.unet),
                                  "abg": None if isnet is None else weights_fingerprint(isnet)}
        return self._fingerprints

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with self._autocast():
            outputs = self.stacked(pixels.contiguous(memory_format=self.memory_format))
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)
