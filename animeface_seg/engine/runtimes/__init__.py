"""Runtimes: what runs the two networks once the ``Segmentor`` has made the padded uint8 batch.

Each is one module holding its ``Runtime`` record, listed in ``registry.py``: ``torch`` (eager, batch
norms folded, channels-last where it pays), ``reference`` (eager, exactly as the original: nothing
folded, default memory format, fp32, fed OpenCV's resize as the original is: ``geometry/opencv.py``),
``onnxruntime`` and ``openvino`` (CPU only, both fed one ONNX export cached on disk, see ``export.py``).
``auto`` is chosen by ``select.py``. Each runtime's networks are called with the (N, 3, H, W) uint8
batch of its array side and return (N, H, W) uint8 classes and the (N, H, W) float mask (None when the
background is kept): torch tensors on the device for the torch runtimes, numpy arrays for the ONNX
ones, which never import torch (``engine/sides.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


class Networks(Protocol):
    """The interface every runtime object offers the ``Segmentor``."""

    name: str
    remove_background: bool
    #: The torch modules run, where the runtime runs them (None for a runtime of its own graph).
    unet: nn.Module | None
    isnet: nn.Module | None

    def __call__(self, pixels: torch.Tensor | np.ndarray) -> tuple[torch.Tensor | np.ndarray, ...]: ...

    @property
    def fingerprints(self) -> dict[str, str | None]:
        """Short digests of the weights (``unet``, ``abg``), recorded in every output PNG."""
        ...
