"""Where outputs are kept: what the shared stages ask of local folders or object storage.

The stages (``stages.py``) only check outputs, read their first bytes (the settings record of
``--skip-existing``) and write an input's set all or nothing; ``LocalStore`` does that on the
local file system, the Ray engine's ``Storage`` for object storage too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Protocol

from animeface_seg.batch.tempfiles import Writer, write_set

#: Bytes read from the start of an output to find its settings record (PNG text chunks come before the pixels).
HEAD_BYTES = 64 * 1024


class OutputStore(Protocol):
    """What the stages need of the place outputs go."""

    def is_file(self, location: PurePath) -> bool:
        """Whether a file (or object) is there."""

    def head(self, location: PurePath, size: int = HEAD_BYTES) -> bytes:
        """The first ``size`` bytes of a file (or object); raises ``OSError`` when it cannot be read."""

    def write_set(self, files: Mapping[PurePath, Writer]) -> None:
        """Write every file, all or nothing (on a failure, which is raised, none is left)."""


class LocalStore:
    """Outputs on the local file system (``tempfiles.write_set``: temporary names, then renames)."""

    def is_file(self, location: PurePath) -> bool:
        return Path(location).is_file()

    def head(self, location: PurePath, size: int = HEAD_BYTES) -> bytes:
        with open(location, "rb") as stream:
            return stream.read(size)

    def write_set(self, files: Mapping[PurePath, Writer]) -> None:
        write_set({Path(path): write for path, write in files.items()})


LOCAL = LocalStore()
