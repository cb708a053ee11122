"""Choosing the compute device, precision, memory format and batch size, with clear refusals.

The one place where these choices are made; everything else asks here.
"""

from __future__ import annotations

import functools

import torch

from animeface_seg.engine.errors import DeviceError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}



def select_device(name: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; an explicit CUDA request never falls back."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
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
        return torch.device("cuda", index)
    raise DeviceError(f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)}.", setting="device")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN finds native bf16 arithmetic on this CPU (AVX512-BF16 or AMX)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def select_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The compute dtype: ``auto`` is fp16 on CUDA and fp32 on CPU."""
    precision = precision.strip().lower()
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in _DTYPES:
        raise DeviceError(f"unknown precision {precision!r}; use one of {', '.join(PRECISION_CHOICES)}.",
                          setting="precision")
    dtype = _DTYPES[precision]
    if device.type == "cpu" and dtype == torch.float16:
        raise DeviceError("precision fp16 is for CUDA; on the CPU use bf16 or fp32.", setting="precision")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"precision bf16: {torch.cuda.get_device_name(device)} does not support bf16.",
                              setting="precision")
    return dtype


#: CPU kernel levels (``torch.backends.cpu.get_cpu_capability()``) on which channels-last fp32
#: measured faster: AVX-512 oneDNN convolutions gain from it, AVX2 ones did not (docs/benchmarks.md).
_CHANNELS_LAST_CPU_CAPABILITIES = ("AVX512", "AVX512_BF16", "AMX", "AMX_BF16")


@functools.cache
def cpu_prefers_channels_last() -> bool:
    """Whether this CPU's convolution kernels are the AVX-512 (or newer) ones, where channels-last
    measured faster in fp32; on AVX2-only CPUs it measured no faster (see docs/benchmarks.md)."""
    return torch.backends.cpu.get_cpu_capability() in _CHANNELS_LAST_CPU_CAPABILITIES


def memory_format(device: torch.device, dtype: torch.dtype) -> torch.memory_format:
    """Channels-last feeds tensor cores, CPU bf16 kernels and AVX-512 fp32 kernels; on CPUs with
    AVX2 at most, fp32 keeps the default layout (channels-last measured no faster there)."""
    if device.type == "cuda" or dtype != torch.float32 or cpu_prefers_channels_last():
        return torch.channels_last
    return torch.contiguous_format


def default_batch_size(device: torch.device | str) -> int:
    """Batches pay off on a GPU; on a CPU the networks fill the cores at batch 1 (2 was slower)."""
    return 8 if torch.device(device).type == "cuda" else 1


def describe(device: torch.device, dtype: torch.dtype) -> str:
    """One line for the user, e.g. ``cuda:0 (NVIDIA H100), fp16`` or ``cpu, fp32``."""
    name = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    if device.type == "cuda":
        index = device.index or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}), {name}"
    return f"cpu, {name}"
