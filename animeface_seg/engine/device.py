"""Choosing the compute device, precision, memory format and batch size, with clear refusals.

The one place where these choices are made; everything else asks here. Devices and precisions
are chosen by name (``"cpu"``, ``"cuda:0"``; ``"fp32"``...) without importing torch where the
answer does not need it: on a machine without any GPU driver ``auto`` is the CPU at once, so a
run on an ONNX runtime starts without torch. ``select_device``/``select_dtype`` give torch's objects.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from animeface_seg.engine.errors import DeviceError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")
#: Files that exist wherever a GPU driver torch could use is loaded: NVIDIA (also in containers), WSL2, ROCm.
_GPU_DRIVER_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def gpu_driver_visible() -> bool:
    """Whether a GPU driver may be present; False only where torch would certainly find no CUDA device
    (Linux without any driver file, macOS), so that answer needs no torch import."""
    if sys.platform == "darwin":
        return False
    if not sys.platform.startswith("linux"):
        return True
    return any(Path(name).exists() for name in _GPU_DRIVER_FILES)


def device_name(name: str = "auto") -> str:
    """``cpu`` or ``cuda:N`` for a device choice: ``auto`` is CUDA when available, else CPU; an explicit
    CUDA request never falls back."""
    name = name.strip().lower()
    if name == "cpu" or (name == "auto" and not gpu_driver_visible()):
        return "cpu"
    import torch

    if name == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = (
                "this PyTorch build has no CUDA support" if torch.version.cuda is None
                else "no NVIDIA GPU or driver is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
            )
            raise DeviceError(f"device {name} was asked for, but CUDA is not available: {why}. "
                              "Run on the processor (cpu) instead.", setting="device")
        index = 0
        if name != "cuda":
            suffix = name.split(":", 1)[1]
            if not suffix.isdigit():
                raise DeviceError(f"device {name}: expected cuda:N with N a GPU number.", setting="device")
            index = int(suffix)
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device {name}: only {count} CUDA device(s) are visible (0..{count - 1}).",
                              setting="device")
        return f"cuda:{index}"
    raise DeviceError(f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)}.", setting="device")


def select_device(name: str = "auto") -> torch.device:
    """``device_name`` as a ``torch.device``."""
    import torch

    return torch.device(device_name(name))


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN finds native bf16 arithmetic on this CPU (AVX512-BF16 or AMX)."""
    import torch

    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def precision_name(device: str, precision: str = "auto") -> str:
    """The compute precision (``fp32``, ``fp16`` or ``bf16``) on ``device`` (a name such as ``cpu`` or
    ``cuda:0``): ``auto`` is fp16 on CUDA and fp32 on CPU."""
    precision = precision.strip().lower()
    cuda = device.startswith("cuda")
    if precision == "auto":
        return "fp16" if cuda else "fp32"
    if precision not in PRECISION_CHOICES:
        raise DeviceError(f"unknown precision {precision!r}; use one of {', '.join(PRECISION_CHOICES)}.",
                          setting="precision")
    if not cuda and precision == "fp16":
        raise DeviceError("precision fp16 is for CUDA; on the CPU use bf16 or fp32.", setting="precision")
    if cuda and precision == "bf16":
        import torch

        if not torch.cuda.is_bf16_supported():
            raise DeviceError(f"precision bf16: {torch.cuda.get_device_name(device)} does not support bf16.",
                              setting="precision")
    return precision


def torch_dtype(precision: str) -> torch.dtype:
    """torch's dtype for a precision name."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def select_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """``precision_name`` on a ``torch.device``, as torch's dtype."""
    return torch_dtype(precision_name(str(device), precision))


#: CPU kernel levels (``torch.backends.cpu.get_cpu_capability()``) on which channels-last fp32
#: measured faster: AVX-512 oneDNN convolutions gain from it, AVX2 ones did not (docs/benchmarks.md).
_CHANNELS_LAST_CPU_CAPABILITIES = ("AVX512", "AVX512_BF16", "AMX", "AMX_BF16")


@functools.cache
def cpu_prefers_channels_last() -> bool:
    """Whether this CPU's convolution kernels are the AVX-512 (or newer) ones, where channels-last
    measured faster in fp32; on AVX2-only CPUs it measured no faster (see docs/benchmarks.md)."""
    import torch

    return torch.backends.cpu.get_cpu_capability() in _CHANNELS_LAST_CPU_CAPABILITIES


def memory_format(device: torch.device, dtype: torch.dtype) -> torch.memory_format:
    """Channels-last feeds tensor cores, CPU bf16 kernels and AVX-512 fp32 kernels; on CPUs with
    AVX2 at most, fp32 keeps the default layout (channels-last measured no faster there)."""
    import torch

    if device.type == "cuda" or dtype != torch.float32 or cpu_prefers_channels_last():
        return torch.channels_last
    return torch.contiguous_format


def default_batch_size(device: torch.device | str) -> int:
    """Batches pay off on a GPU; on a CPU the networks fill the cores at batch 1 (2 was slower)."""
    return 8 if str(device).startswith("cuda") else 1


def describe(device: torch.device | str, precision: torch.dtype | str) -> str:
    """One line for the user, e.g. ``cuda:0 (NVIDIA H100), fp16`` or ``cpu, fp32``."""
    name = precision if isinstance(precision, str) else str(precision).replace("torch.float", "fp").replace(
        "torch.bfloat", "bf")
    device = str(device)
    if device.startswith("cuda"):
        import torch

        index = int(device.partition(":")[2] or 0)
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}), {name}"
    return f"cpu, {name}"
