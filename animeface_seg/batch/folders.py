"""Output folders: created however deep the mirrored tree is, checked before a run starts, taken back
when a run cannot start."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputDirError(Exception):
    """The output folder cannot be created or written; the message names it and says why."""


def make_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parents, top down, without recursion (trees ~1000 deep work)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)


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
    try:
        handle, name = tempfile.mkstemp(prefix=".animeface-seg-probe-", suffix=".tmp", dir=out_dir)
    except OSError as exc:
        raise OutputDirError(f"cannot write in the output folder {out_dir}: {exc.strerror or exc}") from None
    os.close(handle)
    os.unlink(name)
    return created


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (outermost first, as ``check_output_dir`` returns them) where still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return
