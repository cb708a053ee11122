"""Which runtime runs the networks: the rule behind ``auto``, and clear refusals.

``auto`` on the CPU takes the fastest runtime installed, in the order measured on a 2-core
AVX-512 CPU (docs/benchmarks.md, "Runtimes"): for fp32 ONNX Runtime, then OpenVINO, then torch;
for bf16 (asked for explicitly, never chosen silently) OpenVINO where the CPU has native bf16,
else torch. On CUDA, and whenever the caller keeps its own modules where they are
(``place=False``, a host such as ComfyUI), it is torch: the only path measured there.
"""

from __future__ import annotations

import importlib

from animeface_seg.engine.errors import EngineError

RUNTIME_CHOICES = ("auto", "torch", "reference", "onnxruntime", "openvino")
#: Runtimes that call the torch modules directly.
TORCH_RUNTIMES = ("torch", "reference")
#: Runtimes that run the cached ONNX export, CPU only.
ONNX_RUNTIMES = ("onnxruntime", "openvino")
#: ``auto``'s order on the CPU, fastest first (docs/benchmarks.md).
CPU_ORDER_FP32 = ("onnxruntime", "openvino", "torch")
CPU_ORDER_BF16 = ("openvino", "torch")
#: The package each runtime needs and how to install it (``reference`` resizes with OpenCV, as the original).
_PACKAGES = {"onnxruntime": ("onnxruntime", "pip install onnxruntime (part of the default install)"),
             "openvino": ("openvino", "pip install 'animeface-seg[openvino]'"),
             "reference": ("cv2", "pip install 'animeface-seg[reference]'")}


class RuntimeChoiceError(EngineError):
    """The requested runtime cannot run here (not installed, wrong device or precision)."""


def installed(runtime: str) -> bool:
    """Whether ``runtime``'s package imports (the runtime that is chosen imports it next anyway)."""
    if runtime not in _PACKAGES:
        return True
    try:
        importlib.import_module(_PACKAGES[runtime][0])
    except ImportError:
        return False
    return True


def choose(runtime: str, device_type: str, precision: str, *, place: bool = True,
           native_bf16: bool = False) -> str:
    """The runtime to use for ``runtime`` (one of ``RUNTIME_CHOICES``) on ``device_type`` at ``precision``
    (``fp32``, ``fp16`` or ``bf16``); ``native_bf16``: whether this CPU computes bf16 natively."""
    runtime = runtime.strip().lower()
    if runtime not in RUNTIME_CHOICES:
        raise RuntimeChoiceError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIME_CHOICES)}.",
                                 setting="runtime")
    if runtime == "auto":
        if device_type != "cpu" or not place:
            return "torch"
        if precision == "bf16":  # without native bf16 only torch emulates it (slowly, and the CLI says so)
            order = CPU_ORDER_BF16 if native_bf16 else ("torch",)
        else:
            order = CPU_ORDER_FP32
        return next(name for name in order if installed(name))
    if runtime == "reference":
        if precision != "fp32":
            raise RuntimeChoiceError(f"runtime reference computes in fp32 only (asked: {precision}).",
                                     setting="runtime")
        if not installed(runtime):
            raise RuntimeChoiceError("runtime reference resizes with OpenCV, as the original does, and OpenCV is "
                                     f"not installed: {_PACKAGES[runtime][1]}.", setting="runtime")
    if runtime in ONNX_RUNTIMES:
        if device_type != "cpu":
            raise RuntimeChoiceError(f"runtime {runtime} runs on the CPU only; on {device_type} use torch.",
                                     setting="runtime")
        if not place:
            raise RuntimeChoiceError(f"runtime {runtime} runs its own copy of the networks, so it cannot leave "
                                     "them where the caller put them (place=False); use torch.", setting="runtime")
        if precision == "bf16" and runtime == "onnxruntime":
            raise RuntimeChoiceError("runtime onnxruntime computes in fp32 only; for bf16 use openvino or torch.",
                                     setting="runtime")
        if precision == "bf16" and not native_bf16:
            raise RuntimeChoiceError("runtime openvino computes bf16 only on CPUs with native bf16 (AVX512-BF16 "
                                     "or AMX), which this one lacks; use torch (emulated) or fp32.", setting="runtime")
        if not installed(runtime):
            raise RuntimeChoiceError(f"runtime {runtime} is not installed: {_PACKAGES[runtime][1]}.",
                                     setting="runtime")
    return runtime
