"""Layouts and how each output kind's files are named: the one place naming is defined.

For an input mirrored at ``a/b`` under OUT, the ``mirror`` layout writes the map to
``OUT/a/b.png``, the mask to ``OUT/a/b_mask.png``, and so on; the ``by-kind`` layout gives each
kind its own tree with the input's own name (``OUT/maps/a/b.png``, ``OUT/masks/a/b.png``), the
layout ControlNet training scripts expect. Each face-part class can have its own mask too
(``--class-masks``): ``OUT/a/b_hair.png``, or ``OUT/hair/a/b.png`` by kind. Every output is a PNG.

A clip (a video, an animated image) mirrored at ``a/clip`` gets a folder instead: ``OUT/a/clip/``
holding ``000001.png``, ``000001_mask.png``, ... (``mirror``), or ``OUT/maps/a/clip/000001.png``,
``OUT/masks/a/clip/000001.png``, ... (``by-kind``). Frames are numbered by their place in the
source, from 1, with six digits (more only past 999,999 frames). On request a clip's results are
also (or only) encoded as videos beside the folders (``clip_video_paths``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from pathlib import Path, PurePath

from animeface_seg.batch.kinds import kind_named

#: The name of a registered output kind (``batch/kinds``): the string records and manifests store.
OutputKind = str


class Layout(str, Enum):
    """Where each kind of output goes under OUT."""

    MIRROR = "mirror"
    """``OUT/a/b.png``, ``OUT/a/b_mask.png``: one mirrored tree, kinds told apart by a suffix."""
    BY_KIND = "by-kind"
    """``OUT/maps/a/b.png``, ``OUT/masks/a/b.png``: one mirrored tree per kind, no suffixes."""

    def __str__(self) -> str:
        return self.value


def output_paths(out_dir: Path, relative: PurePath, kinds: Iterable[OutputKind],
                 layout: Layout = Layout.MIRROR) -> dict[OutputKind, Path]:
    """The output file of each kind for an input mirrored at ``relative`` (no extension) under ``out_dir``."""
    paths = {}
    for kind in map(kind_named, kinds):
        if Layout(layout) == Layout.BY_KIND:
            paths[kind.name] = out_dir / kind.folder / relative.parent / f"{relative.name}.png"
        else:
            paths[kind.name] = out_dir / relative.parent / f"{relative.name}{kind.suffix}.png"
    return paths


#: Digits of a frame number in its file name; numbers past 999,999 simply take more.
FRAME_DIGITS = 6


def frame_name(number: int) -> str:
    """The file stem of a clip's frame ``number`` (from 1): ``000001``."""
    if number < 1:
        raise ValueError(f"frame numbers start at 1, not {number}")
    return f"{number:0{FRAME_DIGITS}d}"


def frame_output_paths(out_dir: Path, relative: PurePath, kinds: Iterable[OutputKind], layout: Layout,
                       number: int) -> dict[OutputKind, Path]:
    """The output file of each kind for frame ``number`` of a clip mirrored at ``relative`` under ``out_dir``:
    ``OUT/a/clip/000001_mask.png`` (``mirror``), ``OUT/masks/a/clip/000001.png`` (``by-kind``)."""
    return output_paths(out_dir, relative / frame_name(number), kinds, layout)


def clip_video_paths(out_dir: Path, relative: PurePath, kinds: Iterable[OutputKind],
                     layout: Layout = Layout.MIRROR) -> dict[OutputKind, Path]:
    """The encoded video of each kind for a clip mirrored at ``relative``, beside its frame folders:
    ``OUT/a/clip.mkv``, ``OUT/a/clip_mask.mkv``, ``OUT/a/clip_cutout.webm`` (``mirror``),
    ``OUT/maps/a/clip.mkv``, ... (``by-kind``): each kind's container is its record's (``Kind.video``)."""
    return {kind: path.with_suffix(kind_named(kind).video.suffix)
            for kind, path in output_paths(out_dir, relative, kinds, layout).items()}


def clip_folders(out_dir: Path, relative: PurePath, kinds: Iterable[OutputKind],
                 layout: Layout = Layout.MIRROR) -> dict[OutputKind, Path]:
    """The folder holding each kind's frames of a clip mirrored at ``relative``: one shared folder
    (``OUT/a/clip``) in the ``mirror`` layout, one per kind (``OUT/masks/a/clip``) in ``by-kind``."""
    return {kind: path.parent for kind, path in frame_output_paths(out_dir, relative, kinds, layout, 1).items()}
