"""Choosing the compute device and precision from the user's words, with clear refusals."""

from __future__ import annotations

import os

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class DeviceError(Exception):
    """The requested device or precision cannot be used here; the message says why."""


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
            raise DeviceError(f"--device {name} was asked for, but CUDA is not available: {why}. "
                              "Use --device cpu to run on the processor.")
        index = 0
        if name != "cuda":
            suffix = name.split(":", 1)[1]
            if not suffix.isdigit():
                raise DeviceError(f"--device {name}: expected cuda:N with N a GPU number.")
            index = int(suffix)
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"--device {name}: only {count} CUDA device(s) are visible (0..{count - 1}).")
        return torch.device("cuda", index)
    raise DeviceError(f"--device {name}: unknown device; use one of {', '.join(DEVICE_CHOICES)}.")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN finds native bf16 arithmetic on this CPU (AVX512-BF16 or AMX)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def select_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The compute dtype: ``auto`` is fp16 on CUDA and fp32 on CPU."""
    precision = precision.strip().lower()
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in _DTYPES:
        raise DeviceError(f"--precision {precision}: use one of {', '.join(PRECISION_CHOICES)}.")
    dtype = _DTYPES[precision]
    if device.type == "cpu" and dtype == torch.float16:
        raise DeviceError("--precision fp16 is for CUDA; on the CPU use bf16 or fp32.")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bf16.")
    return dtype


def default_batch_size(device: torch.device) -> int:
    """Batches pay off on a GPU; on a CPU the networks fill the cores at batch 1 (2 was slower)."""
    return 8 if device.type == "cuda" else 1


def default_workers(device: torch.device) -> int:
    """Threads for decoding and for encoding: enough to hide file work behind the networks.

    On CPU the networks already use every core, and 1 or 2 workers measured the same.
    """
    cores = os.cpu_count() or 1
    return min(8, cores) if device.type == "cuda" else max(1, min(2, cores))


def describe(device: torch.device, dtype: torch.dtype) -> str:
    """One line for the user, e.g. ``cuda:0 (NVIDIA H100), fp16`` or ``cpu, fp32``."""
    name = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    if device.type == "cuda":
        index = device.index or 0
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}), {name}"
    return f"cpu, {name}"
