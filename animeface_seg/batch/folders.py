"""Creating output folders however deep the mirrored tree is (no recursion, unlike ``Path.mkdir``)."""

from __future__ import annotations

from pathlib import Path


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
