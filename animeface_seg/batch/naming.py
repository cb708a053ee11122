"""Output kinds and how their files are named: the one place naming is defined.

For an input mirrored at ``a/b`` under OUT, the map is ``OUT/a/b.png``, the mask
``OUT/a/b_mask.png``, and so on; every output is a PNG.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from pathlib import Path, PurePath


class OutputKind(str, Enum):
    """What a run can write for each input."""

    MAP = "map"
    MASK = "mask"
    CUTOUT = "cutout"
    OVERLAY = "overlay"

    def __str__(self) -> str:
        return self.value

    # Hash as the plain string, so ``outputs["mask"]`` finds ``OutputKind.MASK``.
    __hash__ = str.__hash__


#: Output kind -> suffix added to the input's stem.
OUTPUT_SUFFIXES: dict[OutputKind, str] = {
    OutputKind.MAP: "",
    OutputKind.MASK: "_mask",
    OutputKind.CUTOUT: "_cutout",
    OutputKind.OVERLAY: "_overlay",
}

#: Kinds that need the decoded source image at writing time.
NEEDS_SOURCE: frozenset[OutputKind] = frozenset({OutputKind.CUTOUT, OutputKind.OVERLAY})


def output_paths(out_dir: Path, relative: PurePath, kinds: Iterable[OutputKind]) -> dict[OutputKind, Path]:
    """The output file of each kind for an input mirrored at ``relative`` (no extension) under ``out_dir``."""
    folder = out_dir / relative.parent
    return {OutputKind(kind): folder / f"{relative.name}{OUTPUT_SUFFIXES[OutputKind(kind)]}.png" for kind in kinds}
