"""The registry of output kinds: one ``Kind`` record each (``record.py``), looked up by name.

Writers, naming, the video encoder, the review page and the memory estimate ask a kind's record
for its behaviour; nothing else names a kind. The built-in families: ``maps.py`` (map, mask),
``source.py`` (cutout, overlay), ``classes.py`` (one mask per palette class). A new kind is a
record in a family module (or a module of its own) and one line in ``_BUILT_IN`` below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from animeface_seg.batch.kinds.classes import CLASS_KINDS
from animeface_seg.batch.kinds.maps import MAP, MASK
from animeface_seg.batch.kinds.record import LOSSLESS, WEB_ALPHA, Kind, VideoFormat, always, by_name, unless, when
from animeface_seg.batch.kinds.source import CUTOUT, OVERLAY

__all__ = ["KINDS", "LOSSLESS", "WEB_ALPHA", "Kind", "VideoFormat", "always", "by_name", "kind_named", "memory_terms",
           "needing_mask", "needs_source", "register", "select", "unless", "unregister", "when"]

#: The built-in kinds, in the order a run lists its outputs (those asked for by name in the order asked).
_BUILT_IN: tuple[Kind, ...] = (MAP, MASK, CUTOUT, OVERLAY, *CLASS_KINDS)

_registry: dict[str, Kind] = {kind.name: kind for kind in _BUILT_IN}
#: Every registered kind by name, read-only.
KINDS: Mapping[str, Kind] = MappingProxyType(_registry)


def register(kind: Kind) -> Kind:
    """Add ``kind`` after the kinds already registered (a run lists it in that order); its name must be new.
    It lives in this process only: Ray workers know the kinds of ``_BUILT_IN``."""
    if kind.name in _registry:
        raise ValueError(f"an output kind named {kind.name!r} is already registered")
    _registry[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove the kind ``name`` (a plug-in or test that registered it is done)."""
    del _registry[name]


def kind_named(name: str) -> Kind:
    """The record of the kind ``name``; ``ValueError`` listing the registered ones."""
    try:
        return _registry[str(name)]
    except KeyError:
        raise ValueError(f"unknown output kind {name!r}; the kinds are {', '.join(_registry)}") from None


def select(named: Iterable[str] = (), *, remove_background: bool = True, **options: bool) -> tuple[str, ...]:
    """The kinds a run writes, computed once per run: those the run's ``options`` ask for (``remove_background``,
    ``cutout``, ``overlay``: each record's ``wanted``) in registry order, then the ``named`` ones (class masks)."""
    options = {"remove_background": remove_background, **options}
    chosen = [kind.name for kind in _registry.values() if kind.wanted(options)]
    return tuple(dict.fromkeys([*chosen, *(kind_named(name).name for name in named)]))


def needing_mask(kinds: Iterable[str]) -> tuple[str, ...]:
    """Those of ``kinds`` that need the character mask, which a run keeping the background does not compute."""
    return tuple(kind for kind in kinds if kind_named(kind).needs_mask)


def needs_source(kinds: Iterable[str]) -> bool:
    """Whether writing ``kinds`` needs each input's decoded source image kept until its results are written."""
    return any(kind_named(kind).needs_source for kind in kinds)


def memory_terms(kinds: Iterable[str]) -> dict[str, bool | int]:
    """What writing ``kinds`` adds to ``engine.memory.estimate`` (its keywords): whether the source is kept, and
    the largest rendering cost per pixel (kinds are rendered one at a time, so the costliest sets the peak)."""
    records = [kind_named(kind) for kind in kinds]
    return {"keep_source": any(kind.needs_source for kind in records),
            "render_bytes_per_pixel": max((kind.render_bytes_per_pixel for kind in records), default=0)}
