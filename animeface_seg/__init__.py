"""animeface-seg: batch anime face-part segmentation and character masks.

The Python API mirrors the command line::

    from animeface_seg import Segmentor
    seg = Segmentor.from_pretrained(weights_dir="weights/")
    result = seg(["a.png", "b.jpg"])[0]   # .colors, .classes, .mask

Layers: ``engine`` (networks, weights, the ``Segmentor``), ``batch`` (finding files, naming
outputs, the streaming pipeline, PNG writers), ``cli`` (the command), ``integrations`` (other
front-ends). Importing this package is cheap: torch loads with the first engine name used.
"""

from __future__ import annotations

__version__ = "0.3.0"

_ENGINE_NAMES = ("DeviceSegmentation", "Segmentation", "Segmentor")

__all__ = [*_ENGINE_NAMES, "__version__"]


def __getattr__(name: str):
    if name in _ENGINE_NAMES:
        from animeface_seg import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'animeface_seg' has no attribute {name!r}")
