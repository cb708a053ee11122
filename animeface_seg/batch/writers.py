"""Turning segmentation results into PNG files, written atomically.

Every file is written under a hidden temporary name in its own folder and renamed into
place, so an interrupted run never leaves a partial file that ``--skip-existing`` would trust.
Temporary names say which process wrote them (``.<name>.animeface-seg-<pid>-<thread>.tmp``),
so a later run can remove those a killed run left behind (``remove_stale_temp_files``).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from animeface_seg.batch.folders import make_folders
from animeface_seg.batch.naming import CLASS_KINDS, OutputKind
from animeface_seg.engine import geometry
from animeface_seg.engine.segmentor import Segmentation

#: zlib level for every PNG: 1 is several times faster than Pillow's default 6 and the
#: flat-coloured maps stay small; the outputs are intermediate data, not archives.
PNG_COMPRESS_LEVEL = 1
#: Weight of the colour map in ``--overlay`` images (the rest is the source image).
OVERLAY_ALPHA = 0.5


#: Temporary files of this tool: ``.<name or digest>.animeface-seg-<pid>-<thread>.tmp``.
TEMP_PATTERN = re.compile(r"^\..*\.animeface-seg-(\d+)-\d+\.tmp$", re.DOTALL)
#: Longest file name most filesystems accept, in bytes.
_NAME_MAX = 255


class OutputDirError(Exception):
    """The output folder cannot be created or written; the message names it and says why."""


def temp_path(path: Path, tag: str = "") -> Path:
    """The temporary name ``path`` is written under (short enough for any name ``path`` may have)."""
    suffix = f".animeface-seg-{os.getpid()}-{tag or threading.get_ident()}.tmp"
    name = path.name
    if len(os.fsencode(f".{name}{suffix}")) > _NAME_MAX:
        name = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return path.with_name(f".{name}{suffix}")


def write_png_atomic(image: Image.Image, path: Path, info: PngInfo | None = None) -> None:
    """Save ``image`` as PNG at ``path`` (with text chunks ``info``) via a temporary file and an atomic rename."""
    make_folders(path.parent)
    tmp = temp_path(path)
    try:
        image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=info)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows has no signal 0: os.kill would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Delete this tool's temporary files under ``out_dir`` whose writing process is gone; return them.

    A process killed outright (SIGKILL, power loss) cannot clean up after itself; this does it
    on the next run. Files of live processes (another run writing here) are left alone.
    """
    removed: list[Path] = []
    folders = [out_dir]
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                    continue
            except OSError:
                continue
            match = TEMP_PATTERN.match(entry.name)
            if match and not _alive(int(match.group(1))):
                try:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
                except OSError:
                    pass
    return removed


def check_output_dir(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` and write and remove a probe file in it, or raise ``OutputDirError`` saying why.

    Returns the folders it created, outermost first, so a run that fails to start can take them back.
    """
    created = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()][::-1]
    try:
        make_folders(out_dir)
    except FileExistsError:
        raise OutputDirError(f"cannot create the output folder {out_dir}: a file of that name is in the way") from None
    except NotADirectoryError:
        raise OutputDirError(f"cannot create the output folder {out_dir}: part of that path is a file, "
                             "not a folder") from None
    except OSError as exc:
        raise OutputDirError(f"cannot create the output folder {out_dir}: {exc.strerror or exc}") from None
    probe = temp_path(out_dir / "probe", tag="0")
    try:
        probe.write_bytes(b"")
    except OSError as exc:
        raise OutputDirError(f"cannot write in the output folder {out_dir}: {exc.strerror or exc}") from None
    finally:
        probe.unlink(missing_ok=True)
    return created


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (outermost first, as ``check_output_dir`` returns them) where still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def _mask_at(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The uint8 mask at ``size`` on the engine's pixel grid (``geometry.resize_mask``)."""
    if mask.shape == tuple(size):
        return mask
    resized = geometry.resize_mask(torch.from_numpy(mask).float(), size)
    return resized.round_().clamp_(0, 255).to(torch.uint8).numpy()


def _source_at(source: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The source at ``size`` resized as the networks saw it (``geometry.resize_uint8``)."""
    if source.shape[:2] == tuple(size):
        return source
    resized = geometry.resize_uint8(torch.from_numpy(source).permute(2, 0, 1), size)
    return np.ascontiguousarray(resized.permute(1, 2, 0).numpy())


def render(result: Segmentation, kind: OutputKind, source: np.ndarray | None = None) -> Image.Image:
    """The image for one output kind: ``map``, ``mask``, ``cutout``, ``overlay`` or a class name.

    A class mask (``hair``, ...) is 255 where the class map has that class, on the map's own grid.
    ``cutout`` is the source at its original size with the mask as alpha; ``overlay`` blends
    the map over the source at the map's size. Both need the decoded ``source`` and use the
    engine's geometry, so map, mask, cutout and overlay share one pixel grid.
    """
    if kind == OutputKind.MAP:
        return Image.fromarray(result.colors, "RGB")
    if kind == OutputKind.MASK:
        return Image.fromarray(result.mask, "L")
    if kind in CLASS_KINDS:
        return Image.fromarray(result.class_mask(str(kind)), "L")
    if source is None:
        raise ValueError(f"the {kind} output needs the source image")
    if kind == OutputKind.CUTOUT:
        cutout = Image.fromarray(source, "RGB").convert("RGBA")
        cutout.putalpha(Image.fromarray(_mask_at(result.mask, result.original_size), "L"))
        return cutout
    if kind == OutputKind.OVERLAY:
        base = Image.fromarray(_source_at(source, result.colors.shape[:2]), "RGB")
        return Image.blend(base, Image.fromarray(result.colors, "RGB"), OVERLAY_ALPHA)
    raise ValueError(f"unknown output kind {kind!r}")


def write_outputs(result: Segmentation, paths: Mapping[OutputKind, Path], source: np.ndarray | None = None,
                  info: PngInfo | None = None) -> None:
    """Write each requested output kind to its path, each with the text chunks ``info`` (the run's signature)."""
    for kind, path in paths.items():
        write_png_atomic(render(result, kind, source), path, info)
