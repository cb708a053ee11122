"""Runtimes: what runs the two networks once the ``Segmentor`` has made the padded uint8 batch.

``torch`` (eager, batch norms folded, channels-last where it pays), ``reference`` (eager, exactly
as the original: nothing folded, default memory format, fp32), ``onnxruntime`` and ``openvino``
(CPU only, both fed one ONNX export cached on disk, see ``export.py``). ``auto`` is chosen by
``select.py``. Each runtime object is called with the (N, 3, H, W) uint8 batch as a torch tensor and
returns (N, H, W) uint8 classes and the (N, H, W) float mask (None when the background is kept).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class Networks(Protocol):
    """The interface every runtime object offers the ``Segmentor``."""

    name: str
    remove_background: bool

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    @property
    def fingerprints(self) -> dict[str, str | None]:
        """Short digests of the weights (``unet``, ``abg``), recorded in every output PNG."""
        ...
