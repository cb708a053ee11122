"""How much memory one image will take, known from its header, and the budget it must fit.

An image is refused before any pixel is decoded when its estimated peak exceeds the budget,
so one huge or extremely elongated file fails alone instead of getting the whole run killed
by the kernel. The estimate is the largest of the stages an image goes through (decode,
resize, both networks, results at the output size, PNG encoding), each counting what is alive
at that moment. Network figures are per padded input pixel, measured with
``benchmarks/memory_per_pixel.py`` (see docs/memory.md); the others follow from the array
sizes the code allocates.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from animeface_seg.engine.errors import ImageDecodeError
from animeface_seg.engine.geometry import check_shape, padded_size, processed_size

#: Peak bytes per padded input pixel of each network in fp32 (CPU, measured, rounded up; the ISNet
#: figure covers its forward pass with the composite over white that feeds the UNet).
#: Half precision is counted at the same figure: not measured here (no GPU), and never less.
NETWORK_BYTES_PER_PIXEL = {"unet": 560, "isnet": 900}
#: Share of the memory available when the run starts that one image may take: the rest is for
#: the other images in flight (decoding, queued, being written) and for everything else running.
RAM_FRACTION = 0.5
GPU_FRACTION = 0.8
#: Float working memory of the banded area shrink, plus slack for small buffers (bytes).
_FIXED = 64 * 2**20

#: Bytes per pixel Pillow keeps for a decoded image of each mode (its RGB is 4 bytes a pixel).
_STORED = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


@dataclass(frozen=True)
class Estimate:
    """Peak bytes one image needs in host memory and on the compute device (0 on CPU: all is host)."""

    host: int
    device: int
    stages: dict[str, int]
    """Each stage's peak, for messages."""


@dataclass(frozen=True)
class Budget:
    """Most bytes one image may take in host memory and on the device; ``None`` means no limit."""

    host: int | None
    device: int | None
    origin: str
    """Where the figures come from, for messages (``--memory-budget``, ``half the available RAM``)."""

    @classmethod
    def unlimited(cls) -> Budget:
        return cls(None, None, "no limit")


def _decode_bytes(pixels: int, mode: str, alpha: bool) -> int:
    """Peak of decoding and converting to an RGB array (see ``decode.to_rgb_array``)."""
    stored = _STORED.get(mode, 4)
    if alpha or mode in _ALPHA:
        convert = 44  # RGBA image and array, float32 colour, alpha and products of the composite
    elif mode in _HIGH_DEPTH:
        convert = 32  # float64 copies while scaling to 8 bits
    else:
        convert = 7  # Pillow's RGB (4 bytes a pixel) and the array (3)
    return pixels * (2 * stored + convert)  # the decoded image, a rotated copy (EXIF), the conversion


def estimate(width: int, height: int, mode: str, *, alpha: bool = False, device_type: str = "cpu",
             remove_background: bool = True, output_size: str = "original", keep_source: bool = False,
             render_bytes_per_pixel: int = 0) -> Estimate:
    """Peak memory of one ``width`` x ``height`` image of Pillow ``mode`` (``alpha``: it has transparency)
    through the whole pipeline, on ``device_type`` with the segmentor's settings. What the outputs add comes
    from their kinds (``batch.kinds.memory_terms``): ``keep_source``, the decoded source kept until they are
    written, and ``render_bytes_per_pixel``, the costliest one's rendering beyond the results, per source pixel."""
    pixels = width * height
    h, w = processed_size(height, width)
    ph, pw = padded_size(height, width)
    padded = ph * pw
    out = pixels if output_size == "original" else h * w
    source = 3 * pixels
    kept = source if keep_source else 0
    stages = {
        "decode": _decode_bytes(pixels, mode, alpha),
        "resize": source + 16 * padded + _FIXED,
        "networks": kept + network_bytes((ph, pw), remove_background),
        # classes, their int64 index into the palette, colours; the float mask, its scaled copy, uint8 mask
        "results": kept + out * (12 + (9 if remove_background else 0)),
        # results alive, plus Pillow's copies while encoding (4 bytes a pixel), plus the costliest kind's rendering
        "writing": kept + out * (5 + 4) + render_bytes_per_pixel * pixels,
    }
    if device_type == "cpu":
        # The command keeps freed memory in glibc's heaps (cli/allocator.py) and decodes on a thread of its
        # own, so the decode's peak stays resident in that thread's heap while the later stages allocate in
        # others: measured growth is the decode plus the largest later stage (docs/memory.md).
        later = max(value for stage, value in stages.items() if stage != "decode")
        return Estimate(stages["decode"] + later, 0, stages)
    host = max(stages["decode"], 2 * source, kept + stages["writing"])  # pinned copy for the transfer
    device = max(stages["resize"], stages["networks"], stages["results"])
    return Estimate(host, device, stages)


def available_ram() -> int | None:
    """Bytes of memory this process may still take: the least of the RAM available (``MemAvailable``,
    or free pages), what its cgroup's limit leaves, and what its address-space or data limit leaves."""
    figures = [_meminfo_available(), _cgroup_room(), _rlimit_room()]
    known = [figure for figure in figures if figure is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """What the memory limit of this process's cgroup (v2, else v1) leaves, or None without a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            names = ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        try:
            limit, used = ((folder / name).read_text().strip() for name in names)
            if limit != "max" and int(limit) < 2**60:
                return max(0, int(limit) - int(used))
        except (OSError, ValueError):
            continue
    return None


def _rlimit_room() -> int | None:
    """What ``RLIMIT_AS`` / ``RLIMIT_DATA`` (``ulimit -v``, ``prlimit``) leave above this process's size now."""
    try:
        import resource

        status = Path("/proc/self/status").read_text()
    except (ImportError, OSError):
        return None
    sizes = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rooms = []
    for limit_name, field in (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData")):
        soft, _ = resource.getrlimit(getattr(resource, limit_name))
        if soft != resource.RLIM_INFINITY and field in sizes:
            rooms.append(max(0, soft - int(sizes[field].split()[0]) * 1024))
    return min(rooms) if rooms else None


def machine_budget(device_type: str, device_index: int | None = None) -> Budget:
    """The default budget: ``RAM_FRACTION`` of available RAM, and ``GPU_FRACTION`` of free GPU memory on CUDA."""
    ram = available_ram()
    host = None if ram is None else int(ram * RAM_FRACTION)
    if device_type != "cuda":
        return Budget(host, None, f"{RAM_FRACTION:.0%} of the memory available at start")
    import torch

    free, _ = torch.cuda.mem_get_info(device_index or 0)
    return Budget(host, int(free * GPU_FRACTION),
                  f"{RAM_FRACTION:.0%} of the available memory and {GPU_FRACTION:.0%} of the free GPU memory at start")


def fixed_budget(size: int) -> Budget:
    """A budget the user gave, the same for host memory and the device; 0 means no limit."""
    if size == 0:
        return Budget.unlimited()
    return Budget(size, size, f"--memory-budget {format_bytes(size)}")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``4G``, ``512M``, ``1.5GiB``, ``2000000`` -> bytes (powers of 1024); raises ValueError otherwise."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size; write it like 4G, 512M or 0 for no limit")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def format_bytes(size: int) -> str:
    """Bytes in the largest unit that keeps a digit before the point (powers of 1024, as ``parse_size``
    reads them): ``1 byte``, ``512.0 KB``, ``2.0 GB``."""
    if size < 1024:
        return f"{size} byte" + ("" if size == 1 else "s")
    for unit in "KMGT":
        size /= 1024
        if size < 1024 or unit == "T":
            return f"{size:.1f} {unit}B"
    raise AssertionError("unreachable")


def network_bytes(padded_shape: tuple[int, int], remove_background: bool = True) -> int:
    """Peak bytes of one image in a network batch: its padded input and the larger network's activations."""
    padded = padded_shape[0] * padded_shape[1]
    networks = max(NETWORK_BYTES_PER_PIXEL["unet"], NETWORK_BYTES_PER_PIXEL["isnet"] if remove_background else 0)
    return padded * (3 + networks)


def batch_capacity(padded_shape: tuple[int, int], budget: Budget, device_type: str = "cpu",
                   remove_background: bool = True) -> int:
    """How many images of ``padded_shape`` one network batch may hold within ``budget`` (at least 1; the
    budget caps what one batch of the networks may take, as it caps one image)."""
    limit = budget.device if device_type == "cuda" else budget.host
    if limit is None:
        return 2**31
    return max(1, limit // network_bytes(padded_shape, remove_background))


class MemoryBudgetError(ImageDecodeError):
    """An image would need more memory than the budget allows; refused before decoding."""


def check_image(image: Image.Image, budget: Budget, estimate: Callable[..., Estimate] = estimate) -> None:
    """``check`` for an opened, not yet decoded, Pillow image (a ``decode.load_rgb`` ``before_load`` hook)."""
    alpha = image.mode in _ALPHA or "transparency" in image.info
    check(image.width, image.height, image.mode, budget, alpha=alpha, estimate=estimate)


def check(width: int, height: int, mode: str, budget: Budget, *, alpha: bool = False,
          estimate: Callable[..., Estimate] = estimate) -> None:
    """Raise ``MemoryBudgetError`` (or ``ImageShapeError``) when this image cannot be processed within ``budget``.

    ``estimate`` is ``estimate`` with the run's settings bound (device, background, size, the kinds' terms).
    """
    check_shape(height, width)
    need = estimate(width, height, mode, alpha=alpha)
    for used, limit, where in ((need.host, budget.host, "of memory"), (need.device, budget.device, "on the GPU")):
        if limit is not None and used > limit:
            stage = max(need.stages, key=need.stages.get)
            raise MemoryBudgetError(
                f"image is {width}x{height} ({mode}) and would need about {format_bytes(used)} {where} "
                f"(most at the {stage} step), over the budget of {format_bytes(limit)} per image "
                f"({budget.origin})",
                setting="memory_budget",
            )
