"""How the runtimes of the ONNX export build their networks, as their ``Runtime`` records say.

Kept apart from ``export.py`` so that a runtime module, and the registry listing it for ``--help``,
imports only the standard library: the export code and the cache load when a runtime builds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from animeface_seg.engine.runtimes import Networks
    from animeface_seg.engine.runtimes.cache_files import Cache
    from animeface_seg.engine.runtimes.export import Export, ExportKey
    from animeface_seg.engine.runtimes.registry import Target

Modules = Callable[[], "tuple[nn.Module, nn.Module | None]"]


def cpu_only(name: str, device_type: str, place: bool) -> str | None:
    """Why a runtime of the cached export cannot run on ``device_type`` or with ``place=False``, or None."""
    if device_type != "cpu":
        return f"runtime {name} runs on the CPU only; on {device_type} use torch."
    if not place:
        return (f"runtime {name} runs its own copy of the networks, so it cannot leave them where the caller "
                "put them (place=False); use torch.")
    return None


@dataclass(frozen=True)
class CachedExport:
    """How the runtimes of the ONNX export build: the export of the folded networks, from the cache
    (found by the files' or modules' digests, so cached checkpoints are never loaded), else made from
    the modules; then ``open(export, target, cache)`` makes the runtime's networks over it. Cache
    problems are ``CacheWarning``s, never errors (``cache_files.py``)."""

    open: Callable[[Export, Target, Cache], Networks]

    def from_modules(self, name: str, target: Target, unet: nn.Module, isnet: nn.Module | None,
                     place: bool) -> Networks:
        from animeface_seg.engine.runtimes.cache_files import Cache
        from animeface_seg.engine.runtimes.export import ExportKey, module_digest

        key = ExportKey(module_digest(unet), None if isnet is None else module_digest(isnet))
        return self._networks(key, lambda: (unet, isnet), target, Cache())

    def from_files(self, name: str, target: Target, files: tuple[Path, Path | None],
                   modules: Modules, place: bool) -> Networks:
        from animeface_seg.engine.runtimes.cache_files import Cache
        from animeface_seg.engine.runtimes.export import ExportKey, file_digest

        cache = Cache()
        unet, abg = files
        key = ExportKey(file_digest(unet, cache), None if abg is None else file_digest(abg, cache))
        return self._networks(key, modules, target, cache)

    def _networks(self, key: ExportKey, modules: Modules,
                  target: Target, cache: Cache) -> Networks:
        """The networks over the export for ``key``; ``modules()`` is called only when it is missing or damaged."""
        from animeface_seg.engine.runtimes.export import cached, export

        found = cached(key, cache)
        if found is None:
            from animeface_seg.engine.models.stacked import StackedNetworks
            from animeface_seg.engine.weights import weights_fingerprint

            unet, isnet = modules()
            fingerprints = {"unet": weights_fingerprint(unet),
                            "abg": None if isnet is None else weights_fingerprint(isnet)}
            found = export(key, lambda: StackedNetworks(unet, isnet), fingerprints, cache)
        return self.open(found, target, cache)
