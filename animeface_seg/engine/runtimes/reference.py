"""The ``reference`` runtime: the modules as the original runs them, bit for bit its arithmetic.

Nothing folded, torch's default memory format, fp32, fed OpenCV's resize as the original is
(the ``opencv`` side, ``geometry/opencv.py``: the optional ``reference`` extra).
"""

from __future__ import annotations

from animeface_seg.engine.runtimes.registry import Runtime
from animeface_seg.engine.runtimes.torch_eager import EagerModules


def _refuse(device_type: str, precision: str, place: bool, native_bf16: bool) -> str | None:
    """fp32 only: the original's arithmetic."""
    return None if precision == "fp32" else f"runtime reference computes in fp32 only (asked: {precision})."


RUNTIME = Runtime(
    name="reference", builder=EagerModules(default_layout=True), side="opencv", fold=False, refuse=_refuse,
    summary="reference: the original's exact arithmetic (OpenCV's resize, the reference extra; torch, no folding, "
    "fp32), slower.",
    package="cv2", install="pip install 'animeface-seg[reference]'",
    missing="runtime reference resizes with OpenCV, as the original does, and OpenCV is not installed: {install}.")
