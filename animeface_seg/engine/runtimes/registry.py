"""The registered runtimes: one ``Runtime`` record per runtime module, looked up by name.

A runtime is one module under ``runtimes/`` holding a ``Runtime`` record: its name, the package it
needs, the devices and precisions it refuses (in words), its place in ``auto``'s order, how it builds
its networks (``builder``) and which array side it works on (``side``, see ``engine/sides.py``).
Adding one is that module plus one line in ``_MODULES`` (or ``register`` at run time). Importing
this module, and every runtime module, costs only the standard library: the command's ``--help``
reads the names from here; torch, numpy, ONNX Runtime and OpenVINO load when a runtime builds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from torch import nn

    from animeface_seg.engine.runtimes import Networks

#: Which array side prepares images, stacks batches and finishes results (``engine/sides.py``).
SideName = Literal["host", "device", "opencv"]
#: The runtime modules, in the order their names are listed (``--runtime``'s metavar, error messages).
_MODULES = ("torch_eager", "reference", "onnxruntime_session", "openvino_model")


@dataclass(frozen=True)
class Target:
    """Where a runtime's networks run: a device name (``cpu``, ``cuda:0``) and a precision name."""

    device_name: str
    precision: str

    @property
    def device_type(self) -> str:
        """``cpu`` or ``cuda``: what runtimes accept or refuse."""
        return self.device_name.partition(":")[0]


class Builder(Protocol):
    """How a runtime makes its networks: from modules, or from checkpoint files (``modules`` loads and
    folds them, called only when the runtime needs them)."""

    def from_modules(self, name: str, target: Target, unet: nn.Module, isnet: nn.Module | None,
                     place: bool) -> Networks: ...

    def from_files(self, name: str, target: Target, files: tuple[Path, Path | None],
                   modules: Callable[[], tuple[nn.Module, nn.Module | None]], place: bool) -> Networks: ...


#: (device type, precision, place, native bf16) -> why the runtime cannot run so, or None.
Refusal = Callable[[str, str, bool, bool], "str | None"]


def accepts_all(device_type: str, precision: str, place: bool, native_bf16: bool) -> str | None:
    """A runtime that runs on any device at any precision (torch)."""
    return None


@dataclass(frozen=True)
class Runtime:
    """One runtime: what the ``Segmentor``, ``select.choose`` and the command need to know about it."""

    name: str
    builder: Builder
    side: SideName
    #: One sentence for ``--runtime``'s help.
    summary: str = ""
    #: Whether its networks are folded: True always, False never, None as the caller asks.
    fold: bool | None = None
    #: Its place in ``auto``'s order, lowest first; None: only when asked for by name.
    auto_rank: int | None = None
    refuse: Refusal = accepts_all
    #: The module it imports (None: torch alone) and how to install it.
    package: str | None = None
    install: str = ""
    #: How a missing package is worded, with ``{install}`` (default: "runtime NAME is not installed").
    missing: str = "runtime {name} is not installed: {install}."


_REGISTRY: dict[str, Runtime] = {}


def register(runtime: Runtime) -> Runtime:
    """Add ``runtime`` under its name (a name already taken is an error)."""
    _load()
    if runtime.name in _REGISTRY or runtime.name == "auto":
        raise ValueError(f"the runtime name {runtime.name!r} is taken")
    _REGISTRY[runtime.name] = runtime
    return runtime


def unregister(name: str) -> None:
    """Remove a runtime registered by ``register`` (a plug-in's, a test's)."""
    _load()
    del _REGISTRY[name]


def runtimes() -> tuple[Runtime, ...]:
    """Every registered runtime, in registration order."""
    _load()
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """The names ``--runtime`` and ``Segmentor(runtime=...)`` accept: ``auto``, then every runtime."""
    return ("auto", *(runtime.name for runtime in runtimes()))


def auto_order() -> tuple[Runtime, ...]:
    """The runtimes ``auto`` considers, in the order it tries them (``select.choose``)."""
    return tuple(sorted((r for r in runtimes() if r.auto_rank is not None), key=lambda r: r.auto_rank))


def get(name: str) -> Runtime:
    """The runtime registered as ``name`` (``KeyError`` when none is)."""
    _load()
    return _REGISTRY[name]


def _load() -> None:
    """Import the built-in runtime modules once, each registering its record ``RUNTIME``."""
    if _REGISTRY:
        return
    for module in _MODULES:
        runtime = importlib.import_module(f"{__package__}.{module}").RUNTIME
        _REGISTRY[runtime.name] = runtime
