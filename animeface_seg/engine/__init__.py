"""The engine: networks, weights, geometry, palette, device choice and the ``Segmentor``.

A library that changes no process-wide state on import or construction. Names are loaded on
first use, so light modules (``errors``, ``decode``, ``palette``) import without torch's start-up.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "DeviceError": "errors", "EngineError": "errors", "ImageDecodeError": "errors",
    "ImageShapeError": "errors", "WeightsError": "errors",
    "DeviceSegmentation": "segmentor", "Prepared": "segmentor", "Segmentation": "segmentor",
    "Segmentor": "segmentor",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"animeface_seg.engine.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'animeface_seg.engine' has no attribute {name!r}")
