"""Which runtime runs the networks: the rule behind ``auto``, and clear refusals.

``auto`` takes the first registered runtime, by ``Runtime.auto_rank``, that accepts the device and
precision and is installed. The ranks follow the order measured on a 2-core AVX-512 CPU
(docs/benchmarks.md, "Runtimes"): for fp32 ONNX Runtime, then OpenVINO, then torch; for bf16 (asked
for explicitly, never chosen silently) OpenVINO where the CPU has native bf16, else torch. On CUDA,
and whenever the caller keeps its own modules where they are (``place=False``, a host such as
ComfyUI), only torch accepts: the only path measured there.
"""

from __future__ import annotations

import importlib

from animeface_seg.engine.errors import EngineError
from animeface_seg.engine.runtimes import registry


class RuntimeChoiceError(EngineError):
    """The requested runtime cannot run here (not installed, wrong device or precision)."""


def installed(runtime: str) -> bool:
    """Whether ``runtime``'s package imports (the runtime that is chosen imports it next anyway)."""
    package = registry.get(runtime).package
    if package is None:
        return True
    try:
        importlib.import_module(package)
    except ImportError:
        return False
    return True


def choose(runtime: str, device_type: str, precision: str, *, place: bool = True,
           native_bf16: bool = False) -> str:
    """The runtime to use for ``runtime`` (one of ``registry.names()``) on ``device_type`` at ``precision``
    (``fp32``, ``fp16`` or ``bf16``); ``native_bf16``: whether this CPU computes bf16 natively."""
    runtime = runtime.strip().lower()
    choices = registry.names()
    if runtime not in choices:
        raise RuntimeChoiceError(f"unknown runtime {runtime!r}; use one of {', '.join(choices)}.",
                                 setting="runtime")
    if runtime == "auto":
        return next(r.name for r in registry.auto_order()
                    if r.refuse(device_type, precision, place, native_bf16) is None and installed(r.name))
    record = registry.get(runtime)
    refusal = record.refuse(device_type, precision, place, native_bf16)
    if refusal is not None:
        raise RuntimeChoiceError(refusal, setting="runtime")
    if not installed(runtime):
        raise RuntimeChoiceError(record.missing.format(name=runtime, install=record.install), setting="runtime")
    return runtime
