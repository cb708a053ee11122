"""One network call per batch, halving the batch when an allocation fails (CUDA out of memory, or the
CPU allocator refused) until a single image is left, which then raises ``OutOfMemory``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from animeface_seg.engine.errors import OutOfMemory, SettingError
from animeface_seg.engine.results import Prepared

Result = TypeVar("Result")


def one_shape(batch: Sequence[Prepared]) -> Sequence[Prepared]:
    """``batch``, after checking its images share one padded shape (what one network call needs)."""
    if len({p.padded_shape for p in batch}) > 1:
        raise SettingError("run() needs images of one padded shape; __call__ groups them for you")
    return batch


def split_on_failure(batch: Sequence[Prepared], run: Callable[[Sequence[Prepared]], list[Result]],
                     release: Callable[[], None]) -> list[Result]:
    """``run(batch)``, halving the batch on an allocation failure until one image is left; ``release``
    gives back what the failed batch held before the halves run."""
    if not batch:
        return []
    try:
        return run(batch)
    except Exception as exc:  # noqa: BLE001 - each runtime words an allocation failure its own way
        if not out_of_memory(exc):
            raise
        if len(batch) == 1:
            raise OutOfMemory(f"out of memory in the networks ({_last_line(exc)})",
                              setting="memory_budget") from None
    release()  # outside the handler, so the failed batch's memory is free
    half = len(batch) // 2
    return split_on_failure(batch[:half], run, release) + split_on_failure(batch[half:], run, release)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (torch's CPU allocator and ONNX Runtime raise plain errors)."""
    text = str(exc)
    torch = sys.modules.get("torch")
    return isinstance(exc, MemoryError) or (torch is not None and isinstance(exc, torch.OutOfMemoryError)) or any(
        phrase in text for phrase in ("allocate memory", "bad_alloc", "bad allocation"))


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
